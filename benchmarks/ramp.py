"""How many batches a stream of tiny items takes, and how fast it goes, on a warm pipeline.

    python benchmarks/ramp.py [--count 20000] [--runs 7] [--awaiting] [--async-input | --put]

Each run starts a pipeline of 2 worker processes, warms every worker, then streams
``--count`` items of ``x + 1`` through ``pipe.map`` at the defaults. Prints the median
items/s and how many executor calls (batches) the stream took, counted by wrapping the
pipeline's batch cutter (a private method: this is a diagnostic). A short stream is
mostly ramp: batches start at one item. ``--awaiting``: the consumer awaits a
checkpoint after each result, as one that writes each result to a socket would.
``--async-input``: the items come from an async generator (that has them at hand), which
``map()`` reads an item at a time. ``--put``: a producer task puts the items one
``await pipe.put()`` at a time instead. To compare two versions, run it alternately with
``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import AsyncIterator
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


async def _async_range(count: int) -> AsyncIterator[int]:
    for i in range(count):
        yield i


async def one_run(count: int, awaiting: bool, feed: str) -> tuple[float, int]:
    async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
        await warm_up_every_worker(pipe, WORKERS)
        _batches.clear()

        async def put_all() -> None:
            for i in range(count):
                await pipe.put(inc, i)
            pipe.close()

        async with anyio.create_task_group() as tasks:
            started = time.perf_counter()
            if feed == "put":
                tasks.start_soon(put_all)
                results: Any = pipe
            else:
                items = _async_range(count) if feed == "async" else range(count)
                results = pipe.map(inc, items)
            expected = 1
            async for result in results:
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
    feeds = parser.add_mutually_exclusive_group()
    feeds.add_argument("--async-input", action="store_true")
    feeds.add_argument("--put", action="store_true")
    options = parser.parse_args()
    feed = "async" if options.async_input else "put" if options.put else "map"
    rates, batches = [], []
    for _ in range(options.runs):
        rate, cuts = anyio.run(one_run, options.count, options.awaiting, feed)
        rates.append(rate)
        batches.append(cuts)
    source = {"map": "", "async": " from an async generator", "put": " put one by one"}[feed]
    consumer = ", the consumer awaiting after each result" if options.awaiting else ""
    print(
        f"{options.count} items{source}{consumer}, {options.runs} runs: median "
        f"{statistics.median(rates):,.0f} items/s (range {min(rates):,.0f}-{max(rates):,.0f}), "
        f"{min(batches)}-{max(batches)} batches"
    )


if __name__ == "__main__":
    main()
