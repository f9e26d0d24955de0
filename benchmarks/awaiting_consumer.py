"""A consumer that awaits between results: tiny items through ``pipe.map``.

    python benchmarks/awaiting_consumer.py [--count 200000] [--runs 5]

Each run starts a pipeline of 2 worker processes, warms every worker, then streams
``--count`` items of ``x + 1`` through ``pipe.map`` at the defaults, with a consumer
that awaits ``anyio.lowlevel.checkpoint()`` after each result (as one that writes each result to a
socket would). Prints the median items/s and how many executor calls (batches) the
stream took, counted by wrapping the pipeline's batch cutter (a private method: this
is a diagnostic). To compare two versions, run it alternately with
``PYTHONPATH=<other checkout>/src``.
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
_batches = [0]
_cut_batch = _pipeline.OrderedPipeline._cut_batch


def _counting_cut_batch(self: Any, size: int) -> Any:
    _batches[0] += 1
    return _cut_batch(self, size)


_pipeline.OrderedPipeline._cut_batch = _counting_cut_batch  # type: ignore[method-assign]


async def one_run(count: int) -> tuple[float, int]:
    async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
        await warm_up_every_worker(pipe, WORKERS)
        _batches[0] = 0
        started = time.perf_counter()
        expected = 1
        async for result in pipe.map(inc, range(count)):
            assert result == expected
            expected += 1
            await anyio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - started
    return count / elapsed, _batches[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    runs = [anyio.run(one_run, options.count) for _ in range(options.runs)]
    rates = sorted(rate for rate, _ in runs)
    batches = sorted(cuts for _, cuts in runs)
    print(
        f"{options.count} items, {options.runs} runs: median {statistics.median(rates):,.0f} "
        f"items/s (range {rates[0]:,.0f}-{rates[-1]:,.0f}), {batches[0]}-{batches[-1]} batches"
    )


if __name__ == "__main__":
    main()
