"""Throughput and first-result latency of the core on tiny items.

Tiny items (``x + 1``) through 2 worker processes: ``await put()`` per item,
``pipe.map`` over a range, and, side by side in the same run, naive
``run_in_executor`` per item (semaphore of 64) and ``multiprocessing.Pool.imap`` at
chunksize 1024. Medians of 3 runs. The full peer suite is issue 3's ``make bench``.

    python benchmarks/baseline.py [--items N] [--window auto|N] [--loop asyncio|uvloop|trio]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio

import inorder


def inc(x: int) -> int:
    return x + 1


WINDOW: int | str = "auto"  # the pipeline's default


async def via_put(n: int) -> float:
    async with inorder.OrderedPipeline(workers=2, window=WINDOW) as pipe:

        async def produce() -> None:
            for i in range(n):
                await pipe.put(inc, i)
            pipe.close()

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            total = 0
            async for result in pipe:
                total += result
        elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2
    return elapsed


async def via_pipe_map(n: int) -> float:
    async with inorder.OrderedPipeline(workers=2, window=WINDOW) as pipe:
        started = time.perf_counter()
        results = [r async for r in pipe.map(inc, range(n))]
        elapsed = time.perf_counter() - started
    assert results == list(range(1, n + 1))
    return elapsed


async def first_result(_: int) -> float:
    async with inorder.OrderedPipeline(workers=2, window=WINDOW) as pipe:
        started = time.perf_counter()
        await pipe.put(inc, 1)
        await anext(pipe)
        return time.perf_counter() - started


async def naive_run_in_executor(n: int) -> float:
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, inc, i) for i in range(4)))
        window = asyncio.Semaphore(64)
        started = time.perf_counter()

        async def one(i: int) -> int:
            async with window:
                return await loop.run_in_executor(pool, inc, i)

        results = await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
    assert results == list(range(1, n + 1))
    return elapsed


async def pool_imap(n: int) -> float:
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        list(pool.imap(inc, range(1000), chunksize=16))
        started = time.perf_counter()
        total = 0
        for result in pool.imap(inc, range(n), chunksize=1024):  # the same loop as inorder's
            total += result
        elapsed = time.perf_counter() - started
    assert total == n * (n + 1) // 2
    return elapsed


def median_of(runs: int, fn: Callable[[int], Awaitable[float]], n: int, loop: str) -> float:
    backend = "trio" if loop == "trio" else "asyncio"
    options = {"use_uvloop": True} if loop == "uvloop" else {}
    return statistics.median(
        anyio.run(fn, n, backend=backend, backend_options=options) for _ in range(runs)
    )


def main() -> None:
    global WINDOW
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument(
        "--window", type=lambda text: text if text == "auto" else int(text), default=WINDOW
    )
    parser.add_argument("--loop", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    args = parser.parse_args()
    WINDOW = args.window
    n = args.items
    print(f"{n} tiny items, 2 worker processes, window {WINDOW}, loop {args.loop}, median of 3")
    print("| path | items/s | µs per item |\n| --- | --- | --- |")
    cases = [("await put() per item", via_put), ("pipe.map(range)", via_pipe_map)]
    if args.loop != "trio":
        cases.append(("naive run_in_executor + semaphore", naive_run_in_executor))
    cases.append(("Pool.imap, chunksize 1024 (sync)", pool_imap))
    for name, fn in cases:
        seconds = median_of(3, fn, n, args.loop)
        print(f"| {name} | {n / seconds:,.0f} | {seconds / n * 1e6:.1f} |")
    latency = median_of(3, first_result, 1, args.loop)
    print(f"\nfirst result on a warm pool: {latency * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
