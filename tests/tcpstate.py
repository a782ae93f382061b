"""Counting TCP connections the way the kernel sees them (Linux ``/proc/net/tcp``), so a test
can check how many connections a server really has, whoever opened them."""

from __future__ import annotations

from pathlib import Path

_ESTABLISHED = "01"


def _endpoints() -> list[tuple[int, int]]:
    """(local port, remote port) of every established IPv4 connection."""
    pairs = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == _ESTABLISHED:
            pairs.append(
                (int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16))
            )
    return pairs


def established(port: int) -> int:
    """Established connections accepted on ``port``: sockets whose local end is ``port`` and
    whose peer is a socket connected to ``port`` (on loopback the kernel lists both ends; a
    stray socket that merely reuses the port number as its own ephemeral port is not
    counted)."""
    pairs = _endpoints()
    clients = {local for local, remote in pairs if remote == port}
    return sum(1 for local, remote in pairs if local == port and remote in clients)
