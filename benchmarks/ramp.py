"""How fast the adaptive batch size ramps up: a short stream on a warm pipeline.

    python benchmarks/ramp.py [--count 20000] [--runs 7]

Each run starts a pipeline of 2 worker processes, sends one call to warm it, then
streams ``--count`` items of ``x + 1`` through ``pipe.map`` at the defaults. Prints the
median items/s and how many executor calls (batches) the stream took, counted by
wrapping the pipeline's batch cutter (a private method: this is a diagnostic). A
stream this short is mostly ramp: batches start at one item. To compare two versions,
run it alternately with ``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

import inorder
from inorder import _pipeline

sys.path.insert(0, str(Path(__file__).parent))

from workloads import inc

_batches: list[int] = []
_cut_batch = _pipeline.OrderedPipeline._cut_batch


def _counting_cut_batch(self: Any, size: int) -> Any:
    cut = _cut_batch(self, size)
    _batches.append(sum(len(part.payloads) for part in cut[0]))
    return cut


_pipeline.OrderedPipeline._cut_batch = _counting_cut_batch  # type: ignore[method-assign]


async def one_run(count: int) -> tuple[float, int]:
    async with inorder.OrderedPipeline(workers=2) as pipe:
        await pipe.put(inc, 0)
        assert await anext(pipe) == 1
        _batches.clear()
        started = time.perf_counter()
        expected = 1
        async for result in pipe.map(inc, range(count)):
            assert result == expected
            expected += 1
        elapsed = time.perf_counter() - started
    return count / elapsed, len(_batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=7)
    options = parser.parse_args()
    rates, batches = [], []
    for _ in range(options.runs):
        rate, cuts = anyio.run(one_run, options.count)
        rates.append(rate)
        batches.append(cuts)
    print(
        f"{options.count} items, {options.runs} runs: median {statistics.median(rates):,.0f} "
        f"items/s (range {min(rates):,.0f}-{max(rates):,.0f}), {min(batches)}-{max(batches)} "
        "batches"
    )


if __name__ == "__main__":
    main()
