"""Instructions per TLS round trip through ``transports/tls_server.py``, counted by valgrind
(callgrind) and split by library: what a keep-alive mTLS call pays for its records, as a
figure the machine's other load does not move.

One process, no sockets: a :class:`TlsClientConnection` and a :class:`TlsConnection` (certificates
of one CA, as ``lumi run`` issues them) joined by transports that hand the records across. A
round trip is one request written by the client, read by the server, one response written by
the server and read by the client — both ends of one hop, with a small HTTP request and answer.
Counting starts after the handshake and a warm-up.

Run: ``python bench/mtls_records.py [--trips 2000] [--src DIR]`` (needs valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hop_instructions import HERE, callgrind, instrument

REQUEST = (
    b"POST /Front/echo HTTP/1.1\r\nhost: front\r\ncontent-type: application/json\r\n"
    b'content-length: 32\r\n\r\n{"text": "hello world", "n": 42}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 31\r\n\r\n"
    b'{"text":"hello world","n":42}  '
)


class _Wire(asyncio.Transport):
    """The raw side of one end: keeps what is written for the other end to read."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def write(self, data: Any) -> None:
        self.sent.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _App(asyncio.Protocol):
    """An end's plain protocol; the server's answers each request."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.answer is not None:
            self.transport.write(self.answer)


async def trips(count: int) -> None:
    sys.path.insert(0, str(HERE.parent))
    from tests.tlskit import TlsKit

    from lumi.transports.tls_server import TlsClientConnection, TlsConnection

    with tempfile.TemporaryDirectory() as tmp:
        kit = TlsKit(Path(tmp))
        server = TlsConnection(kit.tls("Back").server_context(), _App(RESPONSE))
        client = TlsClientConnection(
            kit.tls("Front").client_context(), _App(None), kit.server_name("Back")
        )
        to_server, to_client = _Wire(), _Wire()
        server.connection_made(to_client)
        client.connection_made(to_server)
        for _ in range(4):  # the handshake, then what follows it (the client's Finished)
            for wire, end in ((to_server, server), (to_client, client)):
                while wire.sent:
                    end.data_received(wire.sent.pop(0))
        await client.handshake
        send = client.app.transport.write  # type: ignore[attr-defined]

        def run(n: int) -> None:
            for _ in range(n):
                send(REQUEST)
                (record,) = to_server.sent  # one request, one record
                to_server.sent.clear()
                server.data_received(record)
                (record,) = to_client.sent
                to_client.sent.clear()
                client.data_received(record)

        run(200)
        instrument("on")
        run(count)
        instrument("off")


def by_library(out: Path) -> collections.Counter[str]:
    """Instructions (self cost) by shared object, from callgrind_annotate."""
    report = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(out)], capture_output=True, text=True
    ).stdout
    counts: collections.Counter[str] = collections.Counter()
    for line in report.splitlines():
        found = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)", line)
        if not found or "PROGRAM TOTALS" in line:
            continue
        where = re.search(r"\[([^\]]+)\]\s*$", found.group(2))
        name = where.group(1).rsplit("/", 1)[-1] if where else "python"
        if "python" in name:
            name = "python (interpreter, _ssl, the glue)"
        counts[name] += int(found.group(1).replace(",", ""))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trips", type=int, default=2000)
    parser.add_argument("--src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(trips(args.trips))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = callgrind(Path(__file__), ["--trips", str(args.trips)], args.src, Path(tmp))
        counts = by_library(out)
    total = sum(counts.values())
    print(f"{total / args.trips:,.0f} instructions per TLS round trip, both ends ({args.src})")
    for name, n in counts.most_common(4):
        print(f"  {n / args.trips:>9,.0f}  {name}")


if __name__ == "__main__":
    main()
