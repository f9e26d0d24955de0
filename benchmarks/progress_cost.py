"""Per-item cost of the progress marks inorder's workers keep (docs/reliability.md).

A worker records the index of the item it runs in shared memory (so the parent knows
which item a dead worker was running), and with a timeout also the item's start time.
This times the worker's own item loops (``inorder._worker``) on a trivial function:
the unmarked loop (threads, borrowed executors), the marked loop, and the marked loop
with start times, on the kind of shared array the pool uses; medians of 7 runs.

    python benchmarks/progress_cost.py [--items 1000000]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import statistics
import time
from typing import Any

from inorder import _worker


def increment(x: int) -> int:
    return x + 1


def unmarked(payloads: list[int]) -> None:
    _worker._call_all(increment, _worker.ONE, payloads, [], os.getpid())


def marked(payloads: list[int]) -> None:
    _worker._call_tracked(increment, _worker.ONE, payloads, [], os.getpid())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    shared = multiprocessing.get_context().RawArray(ctypes.c_double, _worker.PROGRESS_FIELDS)
    _worker._progress = memoryview(shared).cast("B").cast("d")
    payloads = list(range(args.items))
    loops: list[tuple[str, Any, bool]] = [
        ("unmarked (threads, borrowed executors)", unmarked, False),
        ("index marked (inorder's workers)", marked, False),
        ("index and start time marked (timeout= set)", marked, True),
    ]
    timings: dict[str, list[float]] = {name: [] for name, _, _ in loops}
    for _ in range(7):  # interleaved, so a change of CPU speed hits every loop alike
        for name, loop, timed in loops:
            _worker._timed = timed
            started = time.perf_counter()
            loop(payloads)
            timings[name].append((time.perf_counter() - started) / args.items * 1e9)
    base = statistics.median(timings[loops[0][0]])
    print("| worker loop | ns per item | added |")
    print("| --- | --- | --- |")
    for name, _, _ in loops:
        median = statistics.median(timings[name])
        print(f"| {name} | {median:.0f} | {median - base:+.0f} |")


if __name__ == "__main__":
    main()
