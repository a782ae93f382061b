"""The runtime contract: where a replica runs. One :class:`Runtime` per backend module.

The supervisor (``lumi run``'s control plane) uses nothing else: it binds each replica's
sockets (one per RPC transport, :meth:`lumi.transports.base.Transport.bind`), asks the
service's runtime to :meth:`~Runtime.start` a replica with a :class:`ReplicaSpec` and those
sockets, waits for :meth:`~Replica.ready`, restarts it when :meth:`~Replica.wait` returns, and
at the end :meth:`~Replica.stop`\\ s it gracefully (or :meth:`~Replica.kill`\\ s it).

Backends: ``process`` (a local OS process, the default), ``inproc`` (a task in the supervisor's
own event loop); third-party runtimes register a ``lumi.runtimes`` entry point. Whatever the
runtime, the replica itself is :class:`lumi.runtimes.replica.ReplicaRunner`: it hosts the
service, serves its transports on the given sockets and calls its capabilities.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import socket
from collections.abc import Callable, Mapping
from typing import ClassVar

Output = Callable[[str], None]
"""Where a replica's output lines go (the supervisor prefixes them with the replica's name)."""


class StartError(Exception):
    """A replica that could not start; the message names it and the cause."""


@dataclasses.dataclass(frozen=True)
class ReplicaSpec:
    """What one replica needs to know: its app, service and index, and every endpoint."""

    app_dir: str
    env: str | None
    service: str
    replica: int
    endpoints: dict[str, list[str]]  # service → endpoint URLs of all its replicas, all transports
    environment: dict[str, str] = dataclasses.field(default_factory=dict)  # services.X.environment
    node: str | None = None  # the node it runs on (lumi run --nodes, per-node placement)
    placement: dict[str, str] = dataclasses.field(default_factory=dict)  # endpoint → its node
    # mTLS: the folder of its certificate bundle (tls.crt, tls.key, ca.crt), kept current by
    # whoever issued it; None: $LUMI_TLS_DIR (a mounted Secret), when the app's mTLS is on
    tls_dir: str | None = None
    # The interpreter to run it with (a deployed artifact's environment); None: the
    # supervisor's own. Runtimes that cannot honour it refuse to start the replica.
    python: str | None = None

    @property
    def name(self) -> str:
        return f"{self.service}[{self.replica}]"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReplicaSpec:
        return cls(**json.loads(text))


class Replica(abc.ABC):
    """One started replica."""

    pid: int | None = None

    @abc.abstractmethod
    async def ready(self, timeout: float) -> None:
        """Return once the replica serves; :class:`StartError` with the cause otherwise (the
        replica is then stopped)."""

    @abc.abstractmethod
    async def wait(self) -> int:
        """Wait until the replica has ended; its exit status (negative: killed by a signal)."""

    @abc.abstractmethod
    async def stop(self, grace: float) -> None:
        """Ask it to drain and stop; kill it if it has not ended after ``grace`` (+ margin)."""

    @abc.abstractmethod
    async def kill(self) -> None:
        """End it now."""


class Runtime(abc.ABC):
    """Starts replicas somewhere."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        """Start one replica serving ``sockets`` (transport name → socket from
        :meth:`~lumi.transports.base.Transport.bind`); returns once it was launched."""

    def keep_warm(self, count: int) -> None:  # noqa: B027 - optional hook
        """A hint that replicas will be restarted often (hot reload): keep what makes a start
        fast ready for ``count`` of them. Runtimes with nothing to keep ignore it."""

    async def warm(self) -> None:  # noqa: B027 - optional hook
        """Wait until what :meth:`keep_warm` asked for is ready."""

    def prestart(self, count: int) -> None:  # noqa: B027 - optional hook
        """A hint that ``count`` replicas are about to start (``lumi run``): prepare what makes
        their start fast, meanwhile."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release what the runtime holds (after every replica stopped)."""


class FailedReplica(Replica):
    """A replica that could not even be launched: ready() raises StartError with the cause."""

    def __init__(self, cause: str) -> None:
        self.cause = cause

    async def ready(self, timeout: float) -> None:
        raise StartError(self.cause)

    async def wait(self) -> int:
        return 1

    async def stop(self, grace: float) -> None:
        return None

    async def kill(self) -> None:
        return None
