"""``lumi ci``: run the release pipeline locally with live progress; ``lumi ci init github``
writes a GitHub Actions workflow that runs the same stages."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lumi.cli.constants import CI_STAGES as STAGES
from lumi.cli.constants import CI_WORKFLOW as WORKFLOW
from lumi.cli.output import stdout
from lumi.model.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]
_MARKS = {"ok": "[green]✓[/]", "skipped": "[dim]-[/]", "failed": "[red]✗[/]",
          "pending": "[dim]·[/]"}  # fmt: skip


class _Board:
    """The stages as a live table: state, time taken, detail."""

    def __init__(self, stages: list[str]) -> None:
        self.rows = {name: ["pending", "", 0.0] for name in stages}
        self.started: dict[str, float] = {}

    def event(self, name: str, state: str, detail: str) -> None:
        if state == "running":
            self.started[name] = time.perf_counter()
        row = self.rows[name]
        row[0], row[1] = state, detail
        row[2] = time.perf_counter() - self.started.get(name, time.perf_counter())

    def __rich__(self) -> Table:
        from rich.markup import escape
        from rich.spinner import Spinner
        from rich.table import Table

        table = Table.grid(padding=(0, 1))
        for name, (state, detail, seconds) in self.rows.items():
            mark = Spinner("dots") if state == "running" else _MARKS[str(state)]
            took = f"{seconds:.1f}s" if state not in ("pending", "running") else ""
            table.add_row(mark, f"[bold]{name}[/]", f"[dim]{took}[/]", escape(str(detail)))
        return table


def register(app: typer.Typer) -> None:
    ci = typer.Typer(
        help="Check, test, build and publish, as CI does.", invoke_without_command=True
    )
    app.add_typer(ci, name="ci")

    @ci.callback()
    def ci_cmd(
        ctx: typer.Context,
        app_dir: AppDir = Path("."),
        only: Annotated[
            list[str] | None,
            typer.Option("--only", help=f"Only these stages: {', '.join(STAGES)}."),
        ] = None,
        publish: Annotated[bool, typer.Option(help="Run the publish stage.")] = True,
        repo: Annotated[str | None, typer.Option("--repo", "-r", help="Repository URL.")] = None,
    ) -> None:
        """Run gen --check → api diff against the last release → tests → build → publish."""
        if ctx.invoked_subcommand is not None:
            return
        import asyncio

        from lumi.config import load_config
        from lumi.packaging.ci import Pipeline
        from lumi.packaging.settings import repository_for

        unknown = [s for s in only or [] if s not in STAGES]
        if unknown:
            raise ConfigError(f"no stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
        config = load_config(app_dir)
        pipeline = Pipeline(config, repository_for(config, url=repo))
        chosen = [s for s in STAGES if (s in only if only else publish or s != "publish")]
        board = _Board(chosen)

        async def run() -> None:
            async with pipeline.repository:
                await pipeline.run(only=only or chosen, publish=publish, on_event=board.event)

        if stdout.is_terminal:
            from rich.live import Live

            with Live(board, console=stdout, refresh_per_second=10):
                asyncio.run(run())
        else:
            _print_lines(board)
            asyncio.run(run())
        stdout.print(f"ci passed: {', '.join(chosen)}", highlight=False)

    @ci.command("init")
    def init_cmd(
        provider: Annotated[str, typer.Argument(help="The CI service: github.")],
        app_dir: AppDir = Path("."),
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help=f"Default: <git root>/{WORKFLOW}.")
        ] = None,
        force: Annotated[bool, typer.Option(help="Overwrite an existing workflow.")] = False,
    ) -> None:
        """Write a CI workflow that runs lumi ci's stages (GitHub Actions)."""
        from lumi.config import load_config
        from lumi.packaging.github import workflow

        if provider != "github":
            raise ConfigError(f"no CI provider {provider!r} (providers: github)")
        config = load_config(app_dir)
        root = _git_root(config.root) or config.root
        target = out or root / WORKFLOW
        if target.exists() and not force:
            raise ConfigError(f"{target} exists; pass --force to overwrite it")
        relative = (
            config.root.relative_to(root).as_posix()
            if root in (config.root, *config.root.parents)
            else "."
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(workflow(relative or "."))
        stdout.print(f"wrote {target}", highlight=False)


def _print_lines(board: _Board) -> None:
    """Without a terminal: one line per finished stage."""
    from rich.markup import escape

    original = board.event

    def event(name: str, state: str, detail: str) -> None:
        original(name, state, detail)
        if state != "running":
            seconds = board.rows[name][2]
            line = f"{state:7} {name:8} {seconds:5.1f}s  {detail}"
            stdout.print(escape(line), highlight=False)

    board.event = event  # type: ignore[method-assign]


def _git_root(folder: Path) -> Path | None:
    out = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    return Path(out.stdout.strip()).resolve() if out.returncode == 0 else None
