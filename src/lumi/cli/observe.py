"""``lumi logs`` and ``lumi trace``: an app's merged logs and one request's waterfall."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from lumi.cli.output import fail, stdout
from lumi.model.suggest import close_matches

AppDir = Annotated[Path, typer.Option("--app", "-a", help="The app folder (holding lumi.toml).")]


def _service_names(app_dir: Path) -> list[str]:
    """Service names from the config (class names) and from the log files themselves."""
    from lumi.config import load_config
    from lumi.runtime_services.observability import logfiles

    names: set[str] = set()
    try:
        config = load_config(app_dir)
        names.update(ref.rsplit(":", 1)[-1] for ref in config.app.services)
    except Exception:  # logs can outlive a config; the files still name their services
        pass
    for path in logfiles.log_files(app_dir):
        names.add(path.stem.rsplit("-", 1)[0] if path.stem[-1:].isdigit() else path.stem)
    return sorted(names)


def _check_services(app_dir: Path, services: list[str]) -> None:
    known = _service_names(app_dir)
    for name in services:
        if known and name not in known:
            match = close_matches(name, known, n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            fail(f"no service {name!r} in this app{hint} (services: {', '.join(known)})")


def _resolve_correlation(files: list[Path], given: str, *, required: bool) -> str:
    """The correlation id ``given`` names (itself, or the one id it is a prefix of); exit
    with one line when it names none (unless ``required`` is False: a followed request may
    come later) or several."""
    from lumi.runtime_services.observability import logfiles

    ids = {r["correlation_id"] for p in files for r in logfiles.read(p) if r.get("correlation_id")}
    if given in ids:
        return given
    matches = sorted(i for i in ids if isinstance(i, str) and i.startswith(given))
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
        fail(f"{given!r} starts {len(matches)} correlation ids ({shown}); give more of it")
    if required:
        fail(
            f"no log line has correlation id {given!r} ({len(files)} log file(s) read; "
            f"`lumi trace` lists recent requests with their correlation ids)"
        )
    return given


def register(app: typer.Typer) -> None:
    @app.command("logs")
    def logs_cmd(
        app_dir: AppDir = Path("."),
        service: Annotated[
            list[str] | None,
            typer.Option("--service", "-s", help="Only this service (repeatable)."),
        ] = None,
        correlation: Annotated[
            str | None, typer.Option("--correlation", "-c", help="Only this correlation id.")
        ] = None,
        follow: Annotated[
            bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
        ] = False,
        raw: Annotated[
            bool, typer.Option("--json", help="Print the JSON lines as stored.")
        ] = False,
    ) -> None:
        """Merge the app's logs (every service, every replica) by time, filtered."""
        from lumi.runtime_services.observability import logfiles
        from lumi.runtime_services.observability.spanquery import clean_id

        services = service or []
        _check_services(app_dir, services)
        files = logfiles.log_files(app_dir)
        if not files and not follow:
            fail(f"no logs in {logfiles.log_dir(app_dir)} (has the app run with `lumi run`?)")
        if correlation is not None:
            correlation = _resolve_correlation(files, clean_id(correlation), required=not follow)
        keep = logfiles.matcher(services, correlation)
        records = (
            logfiles.follow(app_dir, keep, from_start=True)
            if follow
            else logfiles.merged(files, keep)
        )
        try:
            for record in records:
                if raw:
                    sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")
                    sys.stdout.flush()
                else:
                    stdout.print(logfiles.render(record), highlight=False, soft_wrap=True)
        except KeyboardInterrupt:
            return

    @app.command("trace")
    def trace_cmd(
        ident: Annotated[
            str | None,
            typer.Argument(help="A trace id or a correlation id; none lists recent traces."),
        ] = None,
        app_dir: AppDir = Path("."),
        limit: Annotated[int, typer.Option(help="How many recent traces to list.")] = 20,
    ) -> None:
        """Print one request's spans as a waterfall tree, from the app's local span store."""
        from lumi.paths import AppPaths
        from lumi.runtime_services.observability.spanquery import (
            AmbiguousId,
            clean_id,
            read_trace,
            recent_traces,
        )
        from lumi.runtime_services.observability.waterfall import summary, waterfall

        store = AppPaths(app_dir).traces
        if not store.is_file():
            fail(f"no span store at {store} (has the app run with tracing on?)")
        if ident is None:
            roots = recent_traces(store, limit)
            if not roots:
                fail(f"no traces in {store} yet")
            stdout.print(summary(roots))
            return
        try:
            spans = read_trace(store, ident)
        except AmbiguousId as exc:
            fail(str(exc))
        if not spans:
            recent = [r.trace_id for r in recent_traces(store, 200)]
            match = close_matches(clean_id(ident), recent, n=1, cutoff=0.8)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            fail(
                f"no trace or correlation id {ident!r} in {store}{hint} "
                f"(only sampled requests are stored; `lumi trace` lists recent ones)"
            )
        # The bar takes what the terminal has left after the other columns (at least 10).
        stdout.print(waterfall(spans, width=max(10, min(60, stdout.width - 64))))
