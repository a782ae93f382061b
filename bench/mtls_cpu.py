"""CPU per two-hop call with mTLS and without, in one process: the cost of mTLS per hop as a
figure that a loaded machine moves less than calls per second (best of a few rounds, the two
alternating).

bench/hop_instructions.py's path (a driver → Front's HTTP server and stack → Front.relay → the
client stack → Back's HTTP server and stack → Back.echo), run plaintext and then with every
hop mTLS as ``lumi run`` makes it: certificates from one CA, Front calling Back with its own
certificate, each server reading the caller from the peer certificate and the guard checking
it against the service's policy. The connections are opened (their handshakes done) in the
warm-up, so the measured calls pay what keep-alive connections pay: the records. The driver's
own TLS is in the figure too (4 TLS ends per call: driver, Front server, Front client, Back).

Run: ``python bench/mtls_cpu.py [--calls 3200] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hop_instructions import CONCURRENCY, HERE, drive

APP = "hop"


async def two_hops(calls: int, mtls: bool, meter: Callable[[str], None]) -> None:
    sys.path.insert(0, str(HERE / "hop"))
    sys.path.insert(0, str(HERE.parent))
    from hop_services import Back, Front
    from tests.tlskit import TlsKit

    from lumi.brokers import create_broker
    from lumi.model.reflect import reflect
    from lumi.pipeline import compose
    from lumi.runtime_services.observability.tracing import setup_tracing
    from lumi.runtime_services.resilience.balancer import Balancer
    from lumi.runtimes import stack
    from lumi.runtimes.host import Host
    from lumi.security.guard import Guard
    from lumi.security.policy import Policy
    from lumi.transports._http_client import ConnectionPool
    from lumi.transports.base import ChannelSettings, ServerSettings
    from lumi.transports.http import HttpChannel, HttpServer

    tracing = setup_tracing(service="hop", store=None, sample_ratio=1.0, max_per_second=100.0)
    runtime = stack.RuntimeServices(tracing=tracing)
    servers: dict[str, HttpServer] = {}

    with tempfile.TemporaryDirectory() as tmp:
        kit = TlsKit(Path(tmp) / "certs", app=APP)

        def channel_for(name: str) -> object:
            settings = (
                ChannelSettings(tls=kit.tls("Front"), server_name=kit.server_name(name))
                if mtls
                else None
            )
            balancer = Balancer(
                name,
                [HttpChannel(servers[name].endpoint, settings)],
                breakers=runtime.breakers("Front"),
            )
            return compose(balancer, stack.client_middlewares("Front", runtime))

        for cls in (Back, Front):
            name = cls.__name__
            policies = {name: Policy(APP, reflect(cls).interface, None)}
            guard = Guard(APP, policies, mtls=mtls, hosted=lambda _: None)
            host = Host(
                [cls],
                broker=create_broker("memory", app_dir=Path(tmp)),
                channel_for=channel_for,  # type: ignore[arg-type]
                app=APP,
                middlewares=stack.server_middlewares(name, runtime, guard=guard),
                guards=stack.server_guards(name, runtime),
                external=["Back"] if name == "Front" else [],
            )
            await host.start()
            settings = ServerSettings(interfaces={}, tls=kit.tls(name) if mtls else None)
            servers[name] = HttpServer(host.dispatcher.handle, settings)
            await servers[name].start()
        url = servers["Front"].endpoint
        host_, port = url.split("://", 1)[1].split(":")
        driver = kit.tls("Driver")  # a service of the app: any may call Front
        pool = ConnectionPool(
            host_,
            int(port),
            size=CONCURRENCY,
            ssl=driver.client_context() if mtls else None,
            server_hostname=kit.server_name("Front") if mtls else None,
        )
        await drive(pool, host_, calls, meter)


class Meter:
    """CPU time of this process (all of the path runs in it) over the measured calls."""

    def __init__(self) -> None:
        self.started = 0.0
        self.seconds = 0.0

    def __call__(self, state: str) -> None:
        if state == "on":
            self.started = time.process_time()
        else:
            self.seconds = time.process_time() - self.started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=3200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    import uvloop

    calls = args.calls // CONCURRENCY * CONCURRENCY
    cost: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for mtls in (False, True):
            meter = Meter()
            uvloop.run(two_hops(calls, mtls, meter))
            gc.unfreeze()
            cost[mtls].append(meter.seconds / calls * 1e6)
    plain, secure = min(cost[False]), min(cost[True])
    print(
        f"CPU per two-hop call, {calls} calls, best of {args.rounds}: plaintext {plain:.1f} us, "
        f"mTLS {secure:.1f} us (+{(secure - plain) / 2:.1f} us per hop, {plain / secure:.3f}x)"
    )


if __name__ == "__main__":
    main()
