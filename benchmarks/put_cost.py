"""What one ``await pipe.put(fn, x)`` costs the producer, measured alone.

A window of ``--window`` slots is filled by ``put()`` calls that never wait (the
consumer does not run meanwhile, so nothing completes), and only those calls are timed;
then the results are drained, untimed. Per-call cost in ns, median of ``--rounds``, for
each executor. ``--bound-method`` puts ``offset.add`` (a new bound method object per
call, as ``put(obj.method, x)`` makes) instead of a function. The trivial workload's
put() throughput in the suite is the producer's cost plus the consumer's
(``benchmarks/consumer_cost.py``) plus the batches' round trips.

    python benchmarks/put_cost.py [--rounds 20] [--window 16384] [--bound-method]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio

import inorder

sys.path.insert(0, str(Path(__file__).parent))

from workloads import Offset, inc

OFFSET = Offset(1)


async def put_round(pipe: inorder.OrderedPipeline, window: int, bound_method: bool) -> float:
    """Seconds per put() of ``window`` puts that find room; then drain the results."""
    started = time.perf_counter()
    if bound_method:
        for i in range(window):
            await pipe.put(OFFSET.add, i)
    else:
        for i in range(window):
            await pipe.put(inc, i)
    elapsed = time.perf_counter() - started
    for i in range(window):
        assert await anext(pipe) == i + 1
    return elapsed / window


async def main(executors: list[str], rounds: int, window: int, bound_method: bool) -> None:
    print(f"window {window}, median of {rounds} rounds")
    for executor in executors:
        async with inorder.OrderedPipeline(workers=2, window=window, executor=executor) as pipe:
            await put_round(pipe, 64, bound_method)  # workers up, the function cached
            costs = [await put_round(pipe, window, bound_method) for _ in range(rounds)]
        print(f"executor={executor}: {statistics.median(costs) * 1e9:.0f} ns per put()")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--window", type=int, default=16384)
    parser.add_argument("--executors", default="process,thread")
    parser.add_argument("--bound-method", action="store_true")
    args = parser.parse_args()
    anyio.run(main, args.executors.split(","), args.rounds, args.window, args.bound_method)
