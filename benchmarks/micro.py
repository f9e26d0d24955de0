"""Per-item costs, each measured alone: the producer's ``put()`` and the consumer's step.

``put``: a window of ``--window`` slots is filled by ``put()`` calls that never wait (the
consumer does not run meanwhile) and only those calls are timed; the results are then
drained, untimed. ``--bound-method`` puts ``offset.add`` (a new bound method object per
call) instead of a function.

``consume``: ``--items`` results of a thread executor are left to arrive while nothing
iterates (the window holds them all), then one pass over them is timed: ``async for``,
``chunks()`` with a plain ``for`` over each list, and, for scale, an ``async for`` over
an async generator and a plain ``for`` over a generator (what ``Pool.imap``'s consumer
pays per item: it flattens chunks with a generator). Medians of ``--rounds``, in ns::

    python -m benchmarks micro [put|consume] [--rounds 9] [--window 16384] [--items 500000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

import inorder

sys.path.insert(0, str(Path(__file__).parent))

from workloads import Offset, inc

OFFSET = Offset(1)


async def put_costs(executors: list[str], rounds: int, window: int, bound_method: bool) -> None:
    print(f"put(): window {window}, median of {rounds} rounds")
    for executor in executors:
        async with inorder.OrderedPipeline(workers=2, window=window, executor=executor) as pipe:
            for i in range(64):  # workers up, the function cached
                await pipe.put(inc, i)
            for _ in range(64):
                await anext(pipe)
            costs = []
            for _ in range(rounds):
                started = time.perf_counter()
                if bound_method:
                    for i in range(window):
                        await pipe.put(OFFSET.add, i)
                else:
                    for i in range(window):
                        await pipe.put(inc, i)
                costs.append((time.perf_counter() - started) / window)
                for _ in range(window):
                    await anext(pipe)
        print(f"  executor={executor}: {statistics.median(costs) * 1e9:.0f} ns per put()")


async def ready_pipeline(items: int) -> inorder.OrderedPipeline:
    pipe = inorder.OrderedPipeline(workers=2, window=items, executor="thread")
    await pipe.__aenter__()
    for i in range(items):
        await pipe.put(inc, i)
    pipe.close()
    # Wait, without iterating, until every result has arrived (nothing to wake us).
    while (stats := pipe.statistics()).queued or stats.in_flight:  # noqa: ASYNC110
        await anyio.sleep(0.01)
    return pipe


async def by_async_for(pipe: inorder.OrderedPipeline, items: int) -> float:
    started = time.perf_counter()
    total = 0
    async for result in pipe:
        total += result
    assert total == items * (items + 1) // 2
    return time.perf_counter() - started


async def by_chunks(pipe: inorder.OrderedPipeline, items: int) -> float:
    started = time.perf_counter()
    total = 0
    async for results in pipe.chunks():
        for result in results:
            total += result
    assert total == items * (items + 1) // 2
    return time.perf_counter() - started


async def async_generator(values: list[int]) -> AsyncIterator[int]:
    for value in values:
        yield value


async def by_async_generator(values: list[int]) -> float:
    started = time.perf_counter()
    total = 0
    async for result in async_generator(values):
        total += result
    return time.perf_counter() - started


def by_generator(values: list[int]) -> float:
    flattened: Iterator[int] = (value for chunk in [values] for value in chunk)
    started = time.perf_counter()
    total = 0
    for result in flattened:
        total += result
    return time.perf_counter() - started


async def consume_costs(rounds: int, items: int) -> None:
    print(f"consumer: {items} ready results, median of {rounds} rounds")
    rows: dict[str, list[float]] = {
        "async for over an OrderedPipeline": [],
        "chunks() and a plain for": [],
        "async for over an async generator": [],
        "plain for over a generator": [],
    }
    values = list(range(1, items + 1))
    for _ in range(rounds):
        for name, way in (
            ("async for over an OrderedPipeline", by_async_for),
            ("chunks() and a plain for", by_chunks),
        ):
            pipe = await ready_pipeline(items)
            try:
                rows[name].append(await way(pipe, items))
            finally:
                await pipe.aclose()
        rows["async for over an async generator"].append(await by_async_generator(values))
        rows["plain for over a generator"].append(by_generator(values))
    for name, seconds in rows.items():
        print(f"  {name:36} {statistics.median(seconds) / items * 1e9:5.0f} ns per item")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", help="put, consume (default: both)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--window", type=int, default=16384)
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--executors", default="process,thread")
    parser.add_argument("--bound-method", action="store_true")
    args = parser.parse_args(argv)
    what = args.what or ["put", "consume"]
    if set(what) - {"put", "consume"}:
        parser.error(f"choose from put, consume; got {' '.join(what)}")
    print(f"Python {sys.version.split()[0]}")
    if "put" in what:
        anyio.run(
            put_costs, args.executors.split(","), args.rounds, args.window, args.bound_method
        )
    if "consume" in what:
        anyio.run(consume_costs, args.rounds, args.items)


if __name__ == "__main__":
    main()
