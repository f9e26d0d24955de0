"""What a round trip costs the parent, and what batching buys CPU-bound items.

The cpu (400 x 4 ms) and skew (2,000 x 1 ms, every 100th 50 ms) workloads of the suite on
2 workers, at ``batch="auto"`` and at fixed batch sizes: parallel efficiency (serial CPU
time / (wall x 2)) and the parent's CPU time (all its threads) for the whole run. With
``batch=1`` the parent's CPU divided by the item count is the cost of one round trip.
Medians of ``--runs``, every configuration measured in the same run.

    python benchmarks/batch_cost.py [--runs 3] [--batches auto,1,4,16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

import inorder

sys.path.insert(0, str(Path(__file__).parent))

from workloads import WORKLOADS, Workload


async def once(batch: Any, fn: Callable[[int], int], count: int) -> tuple[float, float]:
    """(wall seconds, parent CPU seconds) of one run on a warm pool."""
    async with inorder.OrderedPipeline(workers=2, batch=batch) as pipe:
        started, cpu = time.perf_counter(), time.process_time()
        index = 0
        async for result in pipe.map(fn, range(count)):
            assert result == index
            index += 1
        return time.perf_counter() - started, time.process_time() - cpu


async def main(batches: list[Any], runs: int) -> None:
    print(f"2 workers, median of {runs} runs")
    print("| workload | batch | efficiency | parent CPU | parent CPU per batch-1 item |")
    print("| --- | --- | --- | --- | --- |")
    workloads: list[Workload] = [WORKLOADS["cpu"], WORKLOADS["skew"]]
    for w in workloads:
        for batch in batches:
            measured = [await once(batch, w.fn, w.count) for _ in range(runs)]
            wall = statistics.median(m[0] for m in measured)
            cpu = statistics.median(m[1] for m in measured)
            per_item = f"{cpu / w.count * 1e6:.0f} us" if batch == 1 else ""
            efficiency = w.serial_seconds / (wall * 2)
            print(f"| {w.name} | {batch} | {efficiency:.2f} | {cpu * 1e3:.0f} ms | {per_item} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="auto,1,4,16")
    args = parser.parse_args()
    chosen = [b if b == "auto" else int(b) for b in args.batches.split(",")]
    anyio.run(main, chosen, args.runs)
