"""Hot reload for ``lumi run --reload``: restart only the services whose code changed.

The app folder is watched with watchfiles. After a change, each service's *code* is its module
and the app's own modules it imports, found statically from the import statements (nothing is
executed to find out). A shared ``models.py`` belongs to every service importing it; the module
of another service does not (it is imported to name a capability, and a change to it reaches
this service through that service's interface). Then:

* a changed file that does not compile gets one line naming the file, line and error, and
  nothing restarts: the old replicas keep serving;
* otherwise the services whose code changed are restarted in dependency order through
  :meth:`Supervisor.restart_service` (new replicas ready first, then the old ones drain), and
  the others, with the event log, are left alone;
* a restarted service's new interface is compared with the old one by the ``lumi api diff``
  engine (:mod:`lumi.packaging.compat`); breaking changes to a service that others call or
  subscribe to are reported with their verdict.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import aiohttp

from lumi.model.interface import ServiceInterface
from lumi.packaging.compat import diff_interfaces
from lumi.runtimes.base import StartError
from lumi.runtimes.supervisor import Supervisor
from lumi.security.issuer import operator_tls

log = logging.getLogger("lumi.reload")

Emit = Callable[[str, str], None]
_IGNORED_DIRS = {".lumi", "__pycache__", ".git", ".venv", "venv", "node_modules", ".mypy_cache"}


def module_file(root: Path, module: str) -> Path | None:
    """The file of the app-local module ``module`` (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``)."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(root: Path, path: Path) -> set[str]:
    """App-local modules that ``path`` imports (absolute and relative imports; packages too).
    Raises SyntaxError if the file does not parse."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = _module_name(root, path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                keep = len(parts) - (node.level - 1)
                base = ".".join(parts[: max(keep, 0)])
                origin = f"{base}.{node.module}" if node.module and base else node.module or base
            else:
                origin = node.module or ""
            if origin:
                names.add(origin)
                names.update(f"{origin}.{alias.name}" for alias in node.names)
    found: set[str] = set()
    for name in names:
        parts = name.split(".")
        for end in range(1, len(parts) + 1):  # importing a.b.c imports a and a.b first
            prefix = ".".join(parts[:end])
            if module_file(root, prefix) is not None:
                found.add(prefix)
    return found


def code_of(root: Path, module: str, others: Iterable[str] = ()) -> set[Path]:
    """The app-local files that are ``module``'s code: it and what it imports, transitively,
    except the modules of ``others`` (other services, imported only to name them as
    capabilities: their changes reach this service through their interfaces, not its code)."""
    stop = set(others) - {module}
    seen: set[Path] = set()
    todo = [module]
    while todo:
        current = todo.pop()
        parts = current.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            path = module_file(root, prefix)
            if path is None or path in seen or (prefix in stop and prefix == current):
                continue
            seen.add(path)
            todo.extend(imported_modules(root, path))
    return seen


def first_syntax_error(paths: Iterable[Path]) -> str | None:
    """``file:line: message`` of the first file that does not compile, or None."""
    for path in sorted(paths):
        try:
            compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"{path}:{exc.lineno}: {exc.msg}"
        except (OSError, ValueError):
            continue  # deleted while we looked, or not text: the restart will say
    return None


def _watched(path: Path) -> bool:
    return path.suffix in (".py", ".toml") and not _IGNORED_DIRS.intersection(path.parts)


class Reloader:
    """Watches an app's source and restarts the services whose code changed."""

    def __init__(self, supervisor: Supervisor, *, emit: Emit) -> None:
        self.sup = supervisor
        self.emit = emit
        self.root = supervisor.config.root
        # service name → the module defining it (imported already: the supervisor reflected it)
        self.refs = {cls.name: cls.__module__ for cls in supervisor.config.load_services()}

    async def run(self) -> None:
        """Watch until cancelled (start it alongside :meth:`Supervisor.run`)."""
        import watchfiles

        await self.sup.running.wait()
        # Warm starts, enough to restart the largest service's replicas all at once, ready
        # before the first edit.
        size = max((len(slots) for slots in self.sup.slots.values()), default=1)
        await self.sup.keep_warm(size)
        before = self._mtimes()
        watching = False
        # The watcher starts with the first iteration; its first (timed-out) yield says it is
        # up, and files that changed before that are found by comparing modification times.
        async for changes in watchfiles.awatch(
            self.root,
            watch_filter=lambda _change, path: _watched(Path(path)),
            step=30,
            rust_timeout=300,
            yield_on_timeout=True,
        ):
            paths = {Path(path) for _change, path in changes}
            if not watching:
                watching = True
                now = self._mtimes()
                paths |= {p for p in before.keys() | now.keys() if before.get(p) != now.get(p)}
                self.emit("lumi", f"reload: watching {self.root} for changes")
            if not paths:
                continue
            try:
                await self.apply(paths)
            except Exception as exc:  # a failed reload must never stop `lumi run`
                log.exception("reload failed")
                self.emit("lumi", f"reload failed: {type(exc).__name__}: {exc}")

    def _mtimes(self) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for path in self.root.rglob("*"):
            if _watched(path) and path.is_file():
                with contextlib.suppress(OSError):
                    found[path] = path.stat().st_mtime_ns
        return found

    def affected(self, paths: set[Path]) -> list[str]:
        """The services (in start order) whose code includes one of ``paths``."""
        hit: list[str] = []
        for name in self.sup.order:
            module = self.refs.get(name)
            if module is None:
                continue
            try:
                files = code_of(self.root, module, self.refs.values())
            except (SyntaxError, OSError, UnicodeDecodeError):
                files = {f for f in paths if f.suffix == ".py"}  # unknown: assume it is ours
            if files & paths:
                hit.append(name)
        return hit

    async def apply(self, paths: set[Path]) -> list[str]:
        """React to changed ``paths``; returns the services that were restarted."""
        if any(p.name in ("lumi.toml", "pyproject.toml") for p in paths):
            self.emit("lumi", "reload: the config changed; restart lumi run to apply it")
        sources = {p for p in paths if p.suffix == ".py"}
        if not sources:
            return []
        error = first_syntax_error(p for p in sources if p.exists())
        if error is not None:
            self.emit("lumi", f"reload: {error} (the old code keeps serving)")
            return []
        services = self.affected(sources)
        if not services:
            return []
        self.emit("lumi", f"reload: restarting {', '.join(services)}")
        restarted: list[str] = []
        for name in services:
            started = time.monotonic()
            try:
                await self.sup.restart_service(name)
            except StartError as exc:
                self.emit("lumi", f"reload: {exc} (the old replica keeps serving)")
                return restarted
            restarted.append(name)
            self.emit("lumi", f"reload: {name} restarted in {time.monotonic() - started:.2f}s")
            await self._check_interface(name)
        return restarted

    async def _check_interface(self, name: str) -> None:
        """Compare the restarted service's interface with the one it had; report breaks."""
        old = self.sup.interfaces.get(name)
        # Only the running replica knows its new interface; HTTP serves it at /interface.
        http = [url for url in self.sup.endpoints[name] if url.startswith("http://")]
        tls = operator_tls(self.root).client_context() if self.sup.issuer else None
        new = await fetch_interface(http[0], name, tls) if http else None
        if new is None or old is None:
            return
        self.sup.interfaces[name] = new
        self.sup.publish({name: new})
        self.sup.save()
        users = sorted(
            other.name
            for other in self.sup.interfaces.values()
            if name in other.requires or any(s.service == name for s in other.subscriptions)
        )
        breaking = [c for c in diff_interfaces(old, new) if c.breaking]
        if not breaking or not users:
            return
        self.emit(
            "lumi",
            f"reload: {name} changed its interface in {len(breaking)} breaking way(s); "
            f"used by {', '.join(users)} (lumi api diff verdict):",
        )
        for change in breaking:
            self.emit(
                "lumi", f"  ✗ {change.level.label}  {change.path}  {change.kind}: {change.message}"
            )


async def fetch_interface(
    endpoint: str, name: str, tls: ssl.SSLContext | None = None
) -> ServiceInterface | None:
    """The interface a running replica serves at ``GET /interface`` (None if unreadable);
    ``tls``: the app speaks mTLS, connect with this context."""
    timeout = aiohttp.ClientTimeout(total=5)
    if tls is not None:
        endpoint = endpoint.replace("http://", "https://", 1)
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{endpoint}/interface", ssl=tls or False) as resp,
        ):
            data = await resp.json()
        return ServiceInterface.from_dict(data[name])
    return None


async def run_with_reload(supervisor: Supervisor, emit: Emit) -> int:
    """:meth:`Supervisor.run` with a :class:`Reloader` beside it; the supervisor's exit code."""
    reloader = asyncio.create_task(Reloader(supervisor, emit=emit).run())
    try:
        return await supervisor.run()
    finally:
        reloader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloader
