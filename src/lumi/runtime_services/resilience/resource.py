"""Resource connections: a database or cache connection that opens with retry and heals itself.

Declare one on a service; the runtime opens it (waiting with backoff until the server answers)
before ``startup`` and closes it at stop::

    class Counter(lumi.Service):
        db = lumi.resource(
            lambda: psycopg.AsyncConnection.connect(os.environ["DATABASE_URL"]),
            check=lambda conn: conn.execute("SELECT 1"),
            close=lambda conn: conn.close(),
            errors=(psycopg.OperationalError,),
        )

        @lumi.api
        async def total(self) -> int:
            return await self.db.run(lambda conn: fetch_total(conn))

``run`` hands the live connection to an operation. When the operation fails with one of
``errors`` (a connection failure), the connection is marked broken, the caller gets
UNAVAILABLE (which its client retries with backoff), and the connection is re-opened — by the next
call, and by a background loop so that health recovers without traffic. ``health()`` is what
``/readyz`` reports. Outside a service, ``await lumi.connect(factory, ...)`` returns an open
:class:`Resource`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

from lumi import retrying
from lumi.model.errors import Unavailable
from lumi.model.hints import Retry
from lumi.retrying import wait_ready

log = logging.getLogger("lumi.resource")

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_RETRY = Retry(attempts=100, backoff=0.05, max_backoff=2.0)


async def _maybe(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class Resource(Generic[T]):
    """One connection (or client, or pool) to an external resource."""

    def __init__(
        self,
        factory: Callable[[], T | Awaitable[T]],
        *,
        name: str = "resource",
        check: Callable[[T], object] | None = None,
        close: Callable[[T], object] | None = None,
        errors: tuple[type[BaseException], ...] = (OSError,),
        retry: Retry = DEFAULT_RETRY,
        startup_timeout: float | None = 60.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self._factory = factory
        self._check = check
        self._close = close
        self.errors = errors
        self.retry = retry
        self.startup_timeout = startup_timeout
        self.connect_timeout = connect_timeout
        self._conn: T | None = None
        self._error: str | None = "not opened yet"
        self._since = time.time()
        self._lock = asyncio.Lock()
        self._healer: asyncio.Task[None] | None = None
        self._closed = False
        self.reconnects = 0

    @property
    def ok(self) -> bool:
        return self._conn is not None and self._error is None

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "error": str | None, "since": epoch seconds}`` for ``/readyz``."""
        return {"ok": self.ok, "error": self._error, "since": self._since}

    async def open(self) -> T:
        """Connect, waiting with backoff (up to ``startup_timeout``) until it succeeds."""
        self._closed = False
        await wait_ready(self._try_open, self.name, timeout=self.startup_timeout, logger=log)
        return self._live()

    async def _try_open(self) -> None:
        async with asyncio.timeout(self.connect_timeout):
            conn = await _maybe(self._factory())
            try:
                if self._check is not None:
                    await _maybe(self._check(conn))
            except BaseException:
                await self._dispose(conn)
                raise
        old, self._conn = self._conn, conn
        if old is not None:
            await self._dispose(old)
        self._set_error(None)

    async def get(self) -> T:
        """The live connection; re-opens a broken one first (UNAVAILABLE if it cannot)."""
        conn = self._conn
        if conn is not None and self._error is None:
            return conn
        async with self._lock:
            if self._conn is None or self._error is not None:
                if self._closed:
                    raise Unavailable(f"{self.name} is closed")
                try:
                    await self._try_open()
                except Exception as exc:
                    self._set_error(f"{type(exc).__name__}: {exc}")
                    self._heal()
                    raise Unavailable(f"{self.name} is unavailable: {exc}") from None
                self.reconnects += 1
                log.info("%s: reconnected", self.name)
            return self._live()

    def _live(self) -> T:
        if self._conn is None:
            raise Unavailable(f"{self.name} is not connected")
        return self._conn

    async def run(self, operation: Callable[[T], Awaitable[R]]) -> R:
        """Run ``operation`` with the connection; a connection failure becomes UNAVAILABLE."""
        conn = await self.get()
        try:
            return await operation(conn)
        except self.errors as exc:
            self.broken(exc)
            raise Unavailable(f"{self.name} is unavailable: {exc}") from None

    def broken(self, exc: BaseException) -> None:
        """Mark the connection broken (the next call and a background loop re-open it)."""
        if self._error is None:
            log.warning("%s: connection lost: %s: %s", self.name, type(exc).__name__, exc)
        self._set_error(f"{type(exc).__name__}: {exc}")
        self._heal()

    def _set_error(self, error: str | None) -> None:
        if (error is None) != (self._error is None):
            self._since = time.time()
        self._error = error

    def _heal(self) -> None:
        if self._closed or (self._healer is not None and not self._healer.done()):
            return
        try:
            self._healer = asyncio.get_running_loop().create_task(self._heal_loop())
        except RuntimeError:  # no loop: the next call re-opens
            self._healer = None

    def _needs_healing(self) -> bool:
        return not self._closed and not self.ok

    async def _heal_loop(self) -> None:
        retry = 0
        while self._needs_healing():
            ceiling = retrying.ceiling(self.retry, retry)
            await asyncio.sleep(max(ceiling / 10, retrying.delay(self.retry, retry)))
            retry += 1
            async with self._lock:
                if not self._needs_healing():
                    return
                try:
                    await self._try_open()
                except Exception as exc:
                    self._set_error(f"{type(exc).__name__}: {exc}")
                    continue
                self.reconnects += 1
                log.info("%s: reconnected after %d attempts", self.name, retry)

    async def aclose(self) -> None:
        self._closed = True
        if self._healer is not None:
            self._healer.cancel()
            try:
                await self._healer
            except (asyncio.CancelledError, Exception):
                pass
        conn, self._conn = self._conn, None
        self._set_error("closed")
        if conn is not None:
            await self._dispose(conn)

    async def _dispose(self, conn: T) -> None:
        if self._close is None:
            return
        try:
            await _maybe(self._close(conn))
        except Exception as exc:
            log.debug("%s: closing a connection failed: %s", self.name, exc)


class ResourceSpec(Generic[T]):
    """``lumi.resource(...)`` on a service class: each instance gets its own :class:`Resource`."""

    def __init__(self, factory: Callable[[], T | Awaitable[T]], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name

    @overload
    def __get__(self, obj: None, objtype: type | None = None) -> ResourceSpec[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type | None = None) -> Resource[T]: ...
    def __get__(
        self, obj: object | None, objtype: type | None = None
    ) -> ResourceSpec[T] | Resource[T]:
        if obj is None:
            return self
        found = obj.__dict__.get(self.attr)
        if found is None:
            options = {"name": f"{type(obj).__name__}.{self.attr}", **self.options}
            found = obj.__dict__[self.attr] = Resource(self.factory, **options)
        return found


def resource(
    factory: Callable[[], T | Awaitable[T]],
    *,
    name: str | None = None,
    check: Callable[[T], object] | None = None,
    close: Callable[[T], object] | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
    retry: Retry = DEFAULT_RETRY,
    startup_timeout: float | None = 60.0,
) -> ResourceSpec[T]:
    """Declare a resource connection on a service class (see the module docs)."""
    options: dict[str, Any] = {
        "check": check,
        "close": close,
        "errors": errors,
        "retry": retry,
        "startup_timeout": startup_timeout,
    }
    if name is not None:
        options["name"] = name
    return ResourceSpec(factory, options)


async def connect(
    factory: Callable[[], T | Awaitable[T]],
    *,
    name: str = "resource",
    check: Callable[[T], object] | None = None,
    close: Callable[[T], object] | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
    retry: Retry = DEFAULT_RETRY,
    startup_timeout: float | None = 60.0,
) -> Resource[T]:
    """Open a :class:`Resource` now, with retry and backoff until it answers."""
    res = Resource(
        factory,
        name=name,
        check=check,
        close=close,
        errors=errors,
        retry=retry,
        startup_timeout=startup_timeout,
    )
    await res.open()
    return res


def resources_of(instance: object) -> dict[str, Resource[Any]]:
    """The resources declared on a service instance's class, by attribute."""
    found: dict[str, Resource[Any]] = {}
    for klass in reversed(type(instance).__mro__):
        for attr, value in vars(klass).items():
            if isinstance(value, ResourceSpec):
                found[attr] = getattr(instance, attr)
    return found
