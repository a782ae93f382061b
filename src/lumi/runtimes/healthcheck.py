"""A container's HEALTHCHECK: exit 0 if every endpoint this replica serves is ready.

``lumi serve`` writes its endpoints to ``LUMI_ENDPOINTS_FILE`` once it serves; this probes each
with its transport's readiness check (``GET /readyz`` for HTTP) and exits 1 naming the first
that is not ready (or 1 if the replica has not written the file yet). With mTLS on
(``$LUMI_TLS_DIR`` names the replica's bundle) it probes over TLS with the replica's own
certificate, expecting the name ``localhost`` that every replica certificate carries.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from lumi import transports
from lumi.runtimes.environment import ENDPOINTS_FILE
from lumi.security.setup import TLS_DIR_VARIABLE
from lumi.transports.base import ChannelSettings, transport_of
from lumi.transports.tls import Tls, TlsError, TlsFiles


async def check(
    endpoints: list[str], timeout: float = 3.0, settings: ChannelSettings | None = None
) -> str | None:
    """None if every endpoint is ready, else why the first one is not."""
    for endpoint in endpoints:
        try:
            await transports.get(transport_of(endpoint)).probe(
                endpoint, timeout=timeout, settings=settings
            )
        except ConnectionError as exc:
            return str(exc)
    return None


def main() -> None:
    path = Path(os.environ.get(ENDPOINTS_FILE, "/tmp/lumi-endpoints.json"))
    try:
        endpoints = json.loads(path.read_text())
    except (OSError, ValueError):
        sys.stderr.write(f"not serving yet (no {path})\n")
        sys.exit(1)
    settings = None
    folder = os.environ.get(TLS_DIR_VARIABLE)
    if folder:
        try:
            settings = ChannelSettings(tls=Tls(TlsFiles.in_folder(folder)), server_name="localhost")
        except TlsError as exc:
            sys.stderr.write(f"not ready: {exc}\n")
            sys.exit(1)
    problem = asyncio.run(check([str(e) for e in endpoints], settings=settings))
    if problem:
        sys.stderr.write(f"not ready: {problem}\n")
        sys.exit(1)


if __name__ == "__main__":
    main()
