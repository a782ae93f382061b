"""In-process call overhead: a Lumi client call (client encode → middleware pipeline →
dispatcher → validation → method → result check → client decode) against calling the method
directly. Run: ``python bench/inproc_overhead.py [--calls N]``.

Target (issue 2): under 25 µs per call for a method with two scalar arguments. The runtime
services (logs, tracing, metrics, retries) are left out here; ``bench/pipeline_bench.py``
measures what they add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import lumi
from lumi.pipeline import Call, Handler


class Calc(lumi.Service):
    @lumi.api
    async def add(self, a: int, b: int) -> int:
        return a + b


async def passthrough(call: Call, next_handler: Handler) -> bytes:
    return await next_handler(call)


async def per_call_us(fn: object, calls: int, repeats: int) -> float:
    best = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(calls):
            await fn(i, 2)  # type: ignore[operator]
        best.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(best)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    service = Calc()
    direct = await per_call_us(lambda a, b: service.add(a, b), args.calls, args.repeats)
    async with lumi.App([Calc], observe=False) as app:
        client = app.client(Calc)
        lumi_us = await per_call_us(lambda a, b: client.add(a=a, b=b), args.calls, args.repeats)
    async with lumi.App([Calc], observe=False, middlewares=[passthrough] * 3) as app:
        client = app.client(Calc)
        mw_us = await per_call_us(lambda a, b: client.add(a=a, b=b), args.calls, args.repeats)
    result = {
        "direct_us": round(direct, 3),
        "lumi_us": round(lumi_us, 3),
        "lumi_3_middlewares_us": round(mw_us, 3),
        "overhead_us": round(lumi_us - direct, 3),
        "target_us": 25,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"direct method call        {direct:8.2f} µs/call")
    print(f"lumi in-process call      {lumi_us:8.2f} µs/call  (overhead {lumi_us - direct:.2f} µs)")
    print(f"  + 3 no-op middlewares   {mw_us:8.2f} µs/call")
    print(f"target                    {25:8.2f} µs/call  -> {'OK' if lumi_us < 25 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
