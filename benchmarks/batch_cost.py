"""What a round trip costs the parent, and what batching buys CPU-bound items.

The cpu (400 x 4 ms) and skew (2,000 x 1 ms, every 100th 50 ms) workloads of the suite on
2 workers, at ``batch="auto"`` (at each ``--targets`` batch duration) and at fixed batch
sizes: parallel efficiency (serial CPU time / (wall x 2)) and the parent's CPU time (all
its threads) for the run. With ``batch=1`` the parent's CPU divided by the item count is
the cost of one round trip. The first row of each workload is the machine's ceiling, as in
the suite: each worker of a warm pool runs an equal share of the items in one call, with
no IPC per item. Medians of ``--runs``; every configuration is measured once per round,
rounds side by side.

    python benchmarks/batch_cost.py [--runs 3] [--batches auto,1,4,16] [--targets 0.05]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import inorder
from inorder import _batching

sys.path.insert(0, str(Path(__file__).parent))

from workloads import WORKLOADS, Workload, inc, no_ipc_ceiling

WORKERS = 2


def context_switches() -> int:
    """Context switches of all this process's threads so far (0 where /proc is missing)."""
    total = 0
    for task in Path("/proc/self/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[1])
    return total


def ceiling(w: Workload) -> tuple[float, float, int]:
    """(wall seconds, 0, 0): the suite's no-IPC ceiling."""
    started: list[float] = []
    no_ipc_ceiling(w, WORKERS, lambda _: None, lambda: started.append(time.perf_counter()))
    return time.perf_counter() - started[0], 0.0, 0


async def once(batch: Any, w: Workload) -> tuple[float, float, int]:
    """(wall seconds, parent CPU seconds, parent context switches) of one run on a warm
    pool. Switches count the threads alive at both ends of the run: the event loop's and
    the pool's manager thread, which is all the pipeline runs on."""
    async with inorder.OrderedPipeline(workers=WORKERS, batch=batch) as pipe:
        await pipe.put(inc, 0)  # the workers import the workloads module now
        assert await anext(pipe) == 1
        started, cpu, switches = time.perf_counter(), time.process_time(), context_switches()
        index = 0
        async for result in pipe.map(w.fn, range(w.count)):
            assert result == index
            index += 1
        return (
            time.perf_counter() - started,
            time.process_time() - cpu,
            context_switches() - switches,
        )


async def measure(label: str, w: Workload) -> tuple[float, float, int]:
    if label == "no IPC":
        return ceiling(w)
    batch, _, target = label.partition(" @ ")
    if target:
        _batching.TARGET_BATCH_SECONDS = float(target.removesuffix(" s"))
    return await once(batch if batch == "auto" else int(batch), w)


async def main(batches: list[str], targets: list[str], runs: int) -> None:
    print(f"{WORKERS} workers, median of {runs} runs")
    print(
        "| workload | batch | efficiency | parent CPU | parent context switches "
        "| parent CPU per batch-1 item |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    labels = ["no IPC"]
    for batch in batches:
        labels += [f"auto @ {t} s" for t in targets] if batch == "auto" else [batch]
    for w in [WORKLOADS["cpu"], WORKLOADS["skew"]]:
        measured: dict[str, list[tuple[float, float, int]]] = {label: [] for label in labels}
        for _ in range(runs):
            for label in labels:
                measured[label].append(await measure(label, w))
        for label, values in measured.items():
            wall = statistics.median(m[0] for m in values)
            cpu = statistics.median(m[1] for m in values)
            switches = statistics.median(m[2] for m in values)
            per_item = f"{cpu / w.count * 1e6:.0f} us" if label == "1" else ""
            efficiency = w.serial_seconds / (wall * WORKERS)
            print(
                f"| {w.name} | {label} | {efficiency:.3f} | {cpu * 1e3:.0f} ms "
                f"| {switches:.0f} | {per_item} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", default="auto,1,4,16")
    parser.add_argument(
        "--targets",
        default=str(_batching.TARGET_BATCH_SECONDS),
        help="batch durations (seconds) to measure batch='auto' at",
    )
    args = parser.parse_args()
    anyio.run(main, args.batches.split(","), args.targets.split(","), args.runs)
