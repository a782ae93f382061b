"""The container runtime: ``runtime = "container"`` runs each replica in its own container.

The image is the one ``lumi build image`` built for the service (``.lumi/images.json``). The
replica inside is ``lumi serve SERVICE``, exactly as in the process runtime: the supervisor's
listening sockets — one per RPC transport, every port of the replica — and the readiness pipe
are passed into the container (podman ``--preserve-fds``), so the container listens on the
same loopback ports a process would, is ready when it says so, and a restarted container
serves on the same ports. It shares the host's network namespace (``--network=host``), so its
calls to the other services' 127.0.0.1 endpoints need no rewriting and nothing is published
beyond loopback; the app's ``.lumi/`` state (embedded event log, logs, traces) is mounted in,
and the container runs as the invoking user so what it writes there stays the user's.

With mTLS on, the replica's certificate bundle (what ``lumi run`` issued into
``.lumi/ca/certs/<Service>.<n>/``) is mounted read-only at :data:`TLS_MOUNT`, the path its
spec names, and the app's CA folder is hidden under an empty folder: a container sees its own
certificate and the CA's certificate, never the CA's key. Renewals reach it through the bind
mount (a new generation and one rename of ``..data``, relative links inside the folder).

Logs stream from the attached container; stop is ``podman stop`` (SIGTERM, then SIGKILL after
the grace period), kill is ``podman rm --force``. Every container carries the supervisor's
pid as a label: ``aclose`` removes any left, and a new runtime removes those of supervisors
that died, so no container outlives ``lumi run``. The podman client gets SIGTERM from the
kernel if the supervisor dies, and forwards it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import itertools
import json
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from lumi.model.errors import AppError
from lumi.paths import AppPaths, private_dir
from lumi.runtimes import serve
from lumi.runtimes.base import FailedReplica, Output, Replica, ReplicaSpec, Runtime
from lumi.runtimes.engine import Engine, find_engine, image_of
from lumi.runtimes.process import ProcessReplica
from lumi.security.setup import TLS_DIR_VARIABLE

APP_DIR = "/app"  # where the image holds the app
TLS_MOUNT = "/var/run/lumi/tls"  # the replica's certificate bundle (as in a Kubernetes pod)
SUPERVISOR_LABEL = "io.lumi.supervisor"
APP_LABEL = "io.lumi.app"
_PASSED_ON = ("LUMI_LOG_LEVEL", "LUMI_LOG_JSON", "LUMI_EVENTS")
_PR_SET_PDEATHSIG = 1
_FIRST_FD = 3


class ContainerReplica(ProcessReplica):
    """A replica in a container; ``proc`` is the attached engine client."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ready_fd: int,
        output: Output,
        engine: Engine,
        name: str,
    ) -> None:
        super().__init__(proc, ready_fd, output)
        self.engine = engine
        self.name = name

    async def stop(self, grace: float) -> None:
        if self.proc.returncode is not None:
            return
        await _quiet(self.engine.command("stop", "--time", str(int(grace + 1)), self.name))
        try:
            async with asyncio.timeout(grace + 10):
                await self.proc.wait()
        except TimeoutError:
            self._output(f"did not stop within {grace + 10:g}s; killing it")
            await self.kill()

    async def kill(self) -> None:
        if self.proc.returncode is None:
            await _quiet(self.engine.command("rm", "--force", "--time", "0", self.name))
            try:
                async with asyncio.timeout(10):
                    await self.proc.wait()
            except TimeoutError:  # the client hung; the container is gone
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()


async def _quiet(command: list[str]) -> int:
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait()


@dataclasses.dataclass(frozen=True)
class _Launch:
    """The fds a container gets, in order from fd 3: each socket, then the readiness pipe."""

    sources: list[int]

    def preexec(self) -> Callable[[], None]:
        sources = self.sources

        def arrange() -> None:  # in the child, before exec: only syscalls
            for offset, fd in enumerate(sources):
                os.dup2(fd, _FIRST_FD + offset)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

        return arrange


class ContainerRuntime(Runtime):
    """Runs replicas as containers of the images ``lumi build image`` built (podman)."""

    name: ClassVar[str] = "container"

    def __init__(
        self,
        engine: Engine | None = None,
        *,
        pass_environment: Sequence[str] = (),
        volumes: Mapping[str, str] | None = None,
    ) -> None:
        self._engine = engine
        self.pass_environment = (*_PASSED_ON, *pass_environment)
        self.volumes = dict(volumes or {})  # host path → path in the container
        self._names = itertools.count()
        self._swept = False

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            engine = find_engine("run")
            if engine.name != "podman":
                raise AppError(
                    "the container runtime passes each replica's listening sockets into its "
                    f"container, which needs podman ({engine.name} cannot): apt install podman"
                )
            self._engine = engine
        return self._engine

    async def start(
        self, spec: ReplicaSpec, sockets: Mapping[str, socket.socket], output: Output
    ) -> Replica:
        engine = self.engine
        if not self._swept:
            self._swept = True
            await self._remove_orphans()
        app_dir = Path(spec.app_dir)
        try:
            image = image_of(app_dir, spec.service)
        except AppError as exc:
            return FailedReplica(str(exc))
        state = private_dir(AppPaths(app_dir).state)
        read_fd, write_fd = os.pipe()
        names = list(sockets)
        # High duplicates, so arranging them at 3, 4, ... never overwrites a source.
        sources = [fcntl.fcntl(s.fileno(), fcntl.F_DUPFD_CLOEXEC, 1000) for s in sockets.values()]
        sources.append(fcntl.fcntl(write_fd, fcntl.F_DUPFD_CLOEXEC, 1000))
        os.close(write_fd)
        inner = dataclasses.replace(
            spec, app_dir=APP_DIR, tls_dir=TLS_MOUNT if spec.tls_dir else None
        )
        environ = {
            **{k: os.environ[k] for k in self.pass_environment if k in os.environ},
            **spec.environment,
            serve.SPEC: inner.to_json(),
            serve.LISTEN_FDS: json.dumps({n: _FIRST_FD + i for i, n in enumerate(names)}),
            serve.READY_FD: str(_FIRST_FD + len(names)),
            "PYTHONUNBUFFERED": "1",
            # the image's HEALTHCHECK probes over TLS with it
            **({TLS_DIR_VARIABLE: TLS_MOUNT} if spec.tls_dir else {}),
        }
        name = _container_name(spec, next(self._names))
        command = engine.command(
            "run",
            "--rm",
            "--name",
            name,
            "--network=host",
            "--pull=never",
            "--no-healthcheck",  # the supervisor watches readiness itself
            f"--preserve-fds={len(sources)}",
            f"--user={os.getuid()}:{os.getgid()}",
            f"--volume={state}:{APP_DIR}/.lumi",
            *_tls_mounts(spec, state),
            *(f"--volume={host}:{inside}" for host, inside in self.volumes.items()),
            f"--label={SUPERVISOR_LABEL}={os.getpid()}",
            f"--label={APP_LABEL}={spec.app_dir}",
            *(f"--env={key}" for key in environ),
            image.id,
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Only what preexec places at 3, 4, ... is inheritable (PEP 446), so nothing
                # else leaks into the container.
                close_fds=False,
                preexec_fn=_Launch(sources).preexec(),
                env={**os.environ, **environ},  # --env=KEY takes the value from here
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            for fd in sources:
                os.close(fd)
        return ContainerReplica(proc, read_fd, output, engine, name)

    async def _remove_orphans(self) -> None:
        """Remove containers of supervisors that are no longer alive."""
        listing = await asyncio.create_subprocess_exec(
            *self.engine.command(
                "ps", "--all", "--filter", f"label={SUPERVISOR_LABEL}", "--format", "json"
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await listing.communicate()
        try:
            found = json.loads(out or b"[]")
        except ValueError:
            return
        for item in found:
            owner = str((item.get("Labels") or {}).get(SUPERVISOR_LABEL, ""))
            if owner.isdigit() and not _alive(int(owner)):
                await _quiet(self.engine.command("rm", "--force", "--time", "0", item["Id"]))

    async def aclose(self) -> None:
        if self._engine is None:
            return
        listing = await asyncio.create_subprocess_exec(
            *self._engine.command(
                "ps", "--all", "--quiet", "--filter", f"label={SUPERVISOR_LABEL}={os.getpid()}"
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        out, _ = await listing.communicate()
        for container in out.decode().split():
            await _quiet(self._engine.command("rm", "--force", "--time", "0", container))


def _tls_mounts(spec: ReplicaSpec, state: Path) -> list[str]:
    """The replica's bundle, read-only; the CA folder (its key) masked by an empty folder (a
    tmpfs over a bind mount is not applied by podman 4.3 with runc)."""
    mounts = []
    if (state / "ca").is_dir():
        empty = private_dir(state / "masked")
        mounts.append(f"--volume={empty}:{APP_DIR}/.lumi/ca:ro")
    if spec.tls_dir:
        mounts.append(f"--volume={spec.tls_dir}:{TLS_MOUNT}:ro")
    return mounts


def _container_name(spec: ReplicaSpec, number: int) -> str:
    app = _label(Path(spec.app_dir).name)
    return f"lumi-{app}-{spec.service.lower()}-{spec.replica}-{os.getpid()}-{number}"


def _label(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
