"""Prompt cross-process wake-ups for the embedded log: one datagram per commit per process.

Every process that has the log open binds a UNIX datagram socket and registers it as a file in
a directory next to the database (``events.wake/<token>``). After a commit that added events,
the writer sends the names of the topics it touched to every registered socket except its own;
a consumer of one of those topics claims at once instead of waiting for its fallback poll.

On Linux the sockets live in the abstract namespace (no path-length limit, gone when the
process dies) and the registry files are empty markers; elsewhere the socket file itself is the
marker, when its path is short enough to bind. A send that finds nobody listening removes the
stale marker. Datagrams are hints: losing one (a full buffer) only delays a consumer until its
next poll, so nothing here is needed for correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from lumi.paths import private_dir

log = logging.getLogger("lumi.brokers.embedded")

_ABSTRACT = sys.platform.startswith("linux")
_MAX_PATH = 100  # sun_path is 104-108 bytes depending on the platform
_MAX_PAYLOAD = 8192  # larger wake-ups are sent empty, meaning "every topic"


class Wakeup:
    """This process's end of the wake-up channel of one event log."""

    def __init__(self, directory: Path, *, token: str) -> None:
        self.directory = directory
        self.token = token
        self._namespace = hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]
        self._listener: socket.socket | None = None
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)
        self._peers: list[str] = []
        self._peers_stamp = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listening(self) -> bool:
        return self._listener is not None

    def _address(self, token: str) -> str:
        if _ABSTRACT:
            return f"\0lumi-{self._namespace}-{token}"
        return str(self.directory / token)

    def listen(self, on_wake: Callable[[set[str] | None], None]) -> None:
        """Receive wake-ups in the running loop; ``on_wake(topics or None for all)``."""
        private_dir(self.directory)
        address = self._address(self.token)
        if not _ABSTRACT and len(address.encode()) > _MAX_PATH:
            log.info("event log wake-ups are off (path too long): consumers poll instead")
            return
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.setblocking(False)
        listener.bind(address)
        if _ABSTRACT:
            (self.directory / self.token).touch(mode=0o600)
        self._listener = listener
        self._loop = asyncio.get_running_loop()

        def readable() -> None:
            topics: set[str] | None = set()
            while True:
                try:
                    data = listener.recv(_MAX_PAYLOAD)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data or topics is None:
                    topics = None
                else:
                    topics.update(data.decode("utf-8", "replace").split("\n"))
            on_wake(topics)

        self._loop.add_reader(listener.fileno(), readable)

    def notify(self, topics: Iterable[str]) -> None:
        """Tell every other process that ``topics`` changed (safe from any thread)."""
        payload = "\n".join(sorted(set(topics))).encode()
        if len(payload) > _MAX_PAYLOAD:
            payload = b""
        for token in self._current_peers():
            if token == self.token:
                continue
            try:
                self._sender.sendto(payload, self._address(token))
            except (BlockingIOError, InterruptedError):
                pass  # its queue is full: it already has wake-ups to read
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    (self.directory / token).unlink()  # that process is gone
            except OSError as exc:
                log.debug("wake-up to %s failed: %s", token, exc)

    def _current_peers(self) -> list[str]:
        try:
            stamp = self.directory.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if stamp != self._peers_stamp:
            self._peers_stamp = stamp
            with contextlib.suppress(FileNotFoundError):
                self._peers = os.listdir(self.directory)
        return self._peers

    def close(self) -> None:
        if self._listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                (self.directory / self.token).unlink()
        self._sender.close()
