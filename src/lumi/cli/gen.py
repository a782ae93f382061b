"""``lumi gen TARGET``: write (or ``--check``) the files generated from the app's interfaces."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lumi.backends import GENERATORS
from lumi.cli.output import fail, stdout
from lumi.model.suggest import close_matches

if TYPE_CHECKING:
    from lumi.model.interface import ServiceInterface


def read_interfaces(files: list[Path], *, code: int = 1) -> dict[str, ServiceInterface]:
    """Interfaces from JSON files: one interface each, or a {name: interface} map (as served
    by GET /interface); a file that is not one exits with ``code``."""
    from lumi.model.interface import ServiceInterface

    found: dict[str, ServiceInterface] = {}
    for file in files:
        try:
            data: Any = json.loads(file.read_text())
        except OSError as exc:
            fail(f"{file}: cannot read: {exc.strerror or exc}", code=code)
        except ValueError as exc:
            fail(f"{file}: not JSON: {exc}", code=code)
        entries = [data] if isinstance(data, dict) and "methods" in data else list(data.values())
        for entry in entries:
            try:
                iface = ServiceInterface.from_dict(entry)
            except ValueError as exc:
                fail(f"{file}: not a Lumi interface: {str(exc).splitlines()[0]}", code=code)
            found[iface.name] = iface
    return found


def plan(
    target: str,
    interfaces: list[ServiceInterface],
    out: Path,
    package: str,
    events: dict[str, str] | None = None,
) -> dict[Path, str]:
    """Every file ``target`` generates, as absolute paths under ``out`` (targets under
    ``out/<target>`` for ``all``); ``events``: each service's events config value."""
    from lumi.brokers.asyncapi import describe as describe_broker
    from lumi.codegen import get_generator, targets
    from lumi.codegen.base import LOCK_FILE, GenerateRequest

    names = targets() if target == "all" else [target]
    files: dict[Path, str] = {}
    brokers = {}
    for service, url in (events or {}).items():
        view = describe_broker(url)
        if view is not None:
            brokers[service] = view
    for name in names:
        base = out / name if target == "all" else out
        lock_path = base / LOCK_FILE
        lock = json.loads(lock_path.read_text()) if lock_path.exists() else {}
        request = GenerateRequest(interfaces, lock=lock, package=package, brokers=brokers)
        for path, text in get_generator(name).generate(request).items():
            files[base / path] = text
    return files


def register(app: typer.Typer) -> None:
    @app.command("gen")
    def gen_cmd(
        target: Annotated[
            str,
            typer.Argument(
                help=f"One of: {', '.join(sorted(GENERATORS.builtins))}, a plugin's, or all."
            ),
        ],
        services: Annotated[list[str] | None, typer.Argument(help="Only these services.")] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="Where the files go.")] = Path("gen"),
        app_dir: Annotated[Path, typer.Option("--app", "-a", help="The app folder.")] = Path("."),
        env: Annotated[str | None, typer.Option("--env", "-e", help="A named environment.")] = None,
        interface_files: Annotated[
            list[Path] | None,
            typer.Option("--interface", "-i", help="Read interfaces from JSON files instead."),
        ] = None,
        check: Annotated[
            bool, typer.Option("--check", help="Write nothing; exit 1 if any file is stale.")
        ] = False,
        package: Annotated[str | None, typer.Option(help="Package/namespace prefix.")] = None,
    ) -> None:
        """Generate .proto, .thrift, OpenAPI, AsyncAPI, JSON Schema or clients from interfaces."""
        from lumi.cli.inspect import load_interfaces
        from lumi.codegen import get_generator
        from lumi.config import load_config

        if target != "all":
            try:
                get_generator(target)
            except ValueError as exc:
                fail(str(exc))
        events: dict[str, str] = {}
        if interface_files:
            interfaces = read_interfaces(interface_files)
            default_package = "lumi"
        else:
            config = load_config(app_dir, env)
            interfaces = load_interfaces(config)
            default_package = config.name.replace("-", "_")
            events = {name: config.binding(name).events or "embedded" for name in interfaces}
        chosen = _select(interfaces, services or [])
        files = plan(target, chosen, out, package or default_package, events)
        stale = [path for path, text in files.items() if _read(path) != text]
        if check:
            if stale:
                for path in stale:
                    state = "missing" if not path.exists() else "differs"
                    stdout.print(f"stale: {path} ({state})", highlight=False)
                again = _command(
                    target, services or [], out, app_dir, env, interface_files, package
                )
                fail(f"{len(stale)} generated file(s) out of date; run: {again}")
            stdout.print(f"{len(files)} generated file(s) up to date", highlight=False)
            return
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(files[path])
        stdout.print(
            f"wrote {len(stale)} file(s) to {out} ({len(files) - len(stale)} unchanged)",
            highlight=False,
        )


def _command(
    target: str,
    services: list[str],
    out: Path,
    app_dir: Path,
    env: str | None,
    interface_files: list[Path] | None,
    package: str | None,
) -> str:
    """The ``lumi gen`` command that rewrites what ``--check`` found stale, as typed."""
    words = ["lumi", "gen", target, *services, "--out", str(out)]
    if interface_files:
        for file in interface_files:
            words += ["--interface", str(file)]
    else:
        if app_dir != Path("."):
            words += ["--app", str(app_dir)]
        if env is not None:
            words += ["--env", env]
    if package is not None:
        words += ["--package", package]
    return shlex.join(words)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _select(interfaces: dict[str, ServiceInterface], names: list[str]) -> list[ServiceInterface]:
    if not names:
        return [interfaces[name] for name in sorted(interfaces)]
    chosen = []
    for name in names:
        if name not in interfaces:
            match = close_matches(name, list(interfaces), n=1)
            hint = f"; did you mean {match[0]!r}?" if match else ""
            fail(f"no service {name!r}{hint} (services: {', '.join(sorted(interfaces))})")
        chosen.append(interfaces[name])
    return chosen
