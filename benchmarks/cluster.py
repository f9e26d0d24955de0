"""inorder on a Dask cluster against inorder's own pool, side by side in one run.

A ``distributed.LocalCluster`` of ``--workers`` worker processes of one thread each, on
127.0.0.1, and an ``inorder.WorkerPool`` of as many processes; each run is a fresh
``OrderedPipeline`` on one of them, the two alternating, medians of ``--runs``:

* tiny: ``x + 1`` on 200k items. The per-item cost at steady state is the time from the
  50,000th result to the last, over the items in between (the ramp from one-item batches
  left out);
* cpu: 2,000 items of 5 ms of CPU each (``--cpu-items``). Efficiency: the CPU work over
  (elapsed time x the cluster's threads): 1.0 would be every thread busy with items all
  the time;
* one item per call (``batch=1``), 2,000 tiny items: calls a second, which on the cluster
  is the scheduler's task rate (a task per call).

    python -m benchmarks cluster [--runs 5] [--workers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import distributed

import inorder
from workloads import burn, inc

TINY = 200_000
STEADY_FROM = 50_000
CPU_ITEMS = 2_000
CPU_SECONDS = 0.005


def burn_5ms(index: int) -> int:
    return burn(index, CPU_SECONDS)


SINGLES = 2_000


async def run(
    executor: Any, fn: Callable[[int], int], items: Iterable[int], **options: Any
) -> list[float]:
    """The times at which results 0, STEADY_FROM and the last arrived, from the start."""
    marks = []
    started = time.perf_counter()
    async with inorder.OrderedPipeline(executor=executor, **options) as pipe:
        position = 0
        async for results in pipe.map(fn, items).chunks():
            for result in results:
                if position in (0, STEADY_FROM):
                    marks.append(time.perf_counter() - started)
                assert result == (position + 1 if fn is inc else position)
                position += 1
    marks.append(time.perf_counter() - started)
    return marks


async def main(runs: int, workers: int) -> None:
    cluster = distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        asynchronous=True,
    )
    async with (
        cluster,
        distributed.Client(cluster, asynchronous=True) as client,
        inorder.WorkerPool(workers=workers) as pool,
    ):
        targets = {"Dask LocalCluster": client, "inorder.WorkerPool": pool}
        tiny: dict[str, list[float]] = {name: [] for name in targets}
        tiny_all: dict[str, list[float]] = {name: [] for name in targets}
        cpu: dict[str, list[float]] = {name: [] for name in targets}
        singles: dict[str, list[float]] = {name: [] for name in targets}
        for target in targets.values():  # warm-up: imports, first connections
            await run(target, inc, range(20_000))
            await run(target, burn_5ms, range(4 * workers))
        for _ in range(runs):
            for name, target in targets.items():
                _, steady, last = await run(target, inc, range(TINY))
                tiny[name].append((last - steady) / (TINY - STEADY_FROM - 1))
                tiny_all[name].append(last / TINY)
                *_, elapsed = await run(target, burn_5ms, range(CPU_ITEMS))
                cpu[name].append(CPU_ITEMS * CPU_SECONDS / (elapsed * workers))
                *_, elapsed = await run(target, inc, range(SINGLES), batch=1)
                singles[name].append(SINGLES / elapsed)
    print(f"{workers} worker processes of one thread each, medians of {runs} alternating runs")
    print(
        "| where | tiny items, steady state | tiny items, whole run "
        "| 5 ms CPU items: efficiency | one item per call |"
    )
    print("| --- | --- | --- | --- | --- |")
    for name in targets:
        print(
            f"| {name} | {statistics.median(tiny[name]) * 1e6:.1f} µs/item "
            f"| {statistics.median(tiny_all[name]) * 1e6:.1f} µs/item "
            f"| {statistics.median(cpu[name]):.2f} "
            f"| {statistics.median(singles[name]):,.0f} calls/s |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpu-items", type=int, default=CPU_ITEMS)
    args = parser.parse_args()
    CPU_ITEMS = args.cpu_items
    anyio.run(main, args.runs, args.workers)
