"""How many batches a stream of tiny items takes, and how fast it goes, on a warm pipeline.

    python benchmarks/ramp.py [--count 20000] [--runs 7] [--awaiting]

Each run starts a pipeline of 2 worker processes, warms every worker, then streams
``--count`` items of ``x + 1`` through ``pipe.map`` at the defaults. Prints the median
items/s and how many executor calls (batches) the stream took, counted by wrapping the
pipeline's batch cutter (a private method: this is a diagnostic). A short stream is
mostly ramp: batches start at one item. ``--awaiting``: the consumer awaits a
checkpoint after each result, as one that writes each result to a socket would. To
compare two versions, run it alternately with ``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

import inorder
from inorder import _pipeline

sys.path.insert(0, str(Path(__file__).parent))

from workloads import inc, warm_up_every_worker

WORKERS = 2
_batches: list[int] = []
_cut_batch = _pipeline.OrderedPipeline._cut_batch


def _counting_cut_batch(self: Any, size: int) -> Any:
    cut = _cut_batch(self, size)
    _batches.append(sum(len(part.payloads) for part in cut[0]))
    return cut


_pipeline.OrderedPipeline._cut_batch = _counting_cut_batch  # type: ignore[method-assign]


async def one_run(count: int, awaiting: bool) -> tuple[float, int]:
    async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
        await warm_up_every_worker(pipe, WORKERS)
        _batches.clear()
        started = time.perf_counter()
        expected = 1
        async for result in pipe.map(inc, range(count)):
            assert result == expected
            expected += 1
            if awaiting:
                await anyio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - started
    return count / elapsed, len(_batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--awaiting", action="store_true")
    options = parser.parse_args()
    rates, batches = [], []
    for _ in range(options.runs):
        rate, cuts = anyio.run(one_run, options.count, options.awaiting)
        rates.append(rate)
        batches.append(cuts)
    consumer = ", the consumer awaiting after each result" if options.awaiting else ""
    print(
        f"{options.count} items{consumer}, {options.runs} runs: median "
        f"{statistics.median(rates):,.0f} items/s (range {min(rates):,.0f}-{max(rates):,.0f}), "
        f"{min(batches)}-{max(batches)} batches"
    )


if __name__ == "__main__":
    main()
