"""``lumi``: the entry point. Each command group lives in its own module with a
``register(app)`` function; this module only assembles them and turns errors into one line.

Starting is kept cheap (``bench/cli_bench.py``): a command module imports only typer and the
standard library at the top and everything else inside its command function, and help is
click's plain text rather than typer's rich panels (which cost more than the rest of a
``lumi --help``); ``tests/unit/test_cli_startup.py`` checks what loads."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import typer

from lumi.cli import _coerce
from lumi.cli.output import fail
from lumi.model.errors import AppError, ConfigError, DefinitionError, LumiError

COMMAND_MODULES = (
    "lumi.cli.run",
    "lumi.cli.call",
    "lumi.cli.inspect",
    "lumi.cli.gen",
    "lumi.cli.observe",
    "lumi.cli.events",
    "lumi.cli.api",
    "lumi.cli.build",
    "lumi.cli.version",
    "lumi.cli.repo",
    "lumi.cli.deps",
    "lumi.cli.ci",
    "lumi.cli.deploy",
    "lumi.cli.dashboard",
    "lumi.cli.new",
    "lumi.cli.serve",
    "lumi.cli.images",
    "lumi.cli.deploy",
)

_coerce.install()  # plain parameters without pydantic (typer 0.2x would load it)

SETTINGS: dict[str, Any] = {
    "name": "lumi",
    "help": "Lumi: run systems made of typed Python services.",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}
app = typer.Typer(**SETTINGS)

for module_name in COMMAND_MODULES:
    importlib.import_module(module_name).register(app)


def _plain_help(typer_app: typer.Typer) -> None:
    """Plain help and usage errors in every group: rich's would load rich on every start."""
    typer_app.rich_markup_mode = None
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)


_plain_help(app)


def only(name: str) -> typer.Typer | None:
    """``app`` with only the commands and groups called ``name`` (None if there are none).

    typer builds the click command of every command of an app, reading each signature, on
    every start: ~0.1 s for Lumi's forty. Running ``lumi ls`` needs only ``ls``'s."""
    commands = [c for c in app.registered_commands if c.name == name]
    groups = [g for g in app.registered_groups if g.name == name]
    if not commands and not groups:
        return None
    sub = typer.Typer(**SETTINGS)
    sub.rich_markup_mode = None
    sub.registered_commands, sub.registered_groups = commands, groups

    @sub.callback()
    def group() -> None:  # a group, as the whole app is (one command alone would be the app)
        pass

    return sub


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; library errors become one line on stderr and a non-zero exit."""
    args = list(argv) if argv is not None else sys.argv[1:]
    runs = (only(args[0]) if args else None) or app
    try:
        code = runs(args=args, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
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
    except Exception as exc:
        # Usage errors of the (vendored) click: show them the way click does.
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        raise


if __name__ == "__main__":
    main()
