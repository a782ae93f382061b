"""``lumi``: the entry point. Each command group lives in its own module with a
``register(app)`` function; this module only assembles them and turns errors into one line."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from lumi.cli.output import fail
from lumi.errors import AppError, ConfigError, DefinitionError, LumiError

COMMAND_MODULES = ("lumi.cli.inspect",)

app = typer.Typer(
    name="lumi",
    help="Lumi: run systems made of typed Python services.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).register(app)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; library errors become one line on stderr and a non-zero exit."""
    try:
        app(args=list(argv) if argv is not None else None, standalone_mode=False)
    except (ConfigError, AppError, DefinitionError) as exc:
        fail(str(exc), code=2)
    except LumiError as exc:
        fail(f"{exc.code.value}: {exc.message}", code=1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        fail("aborted", code=130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
