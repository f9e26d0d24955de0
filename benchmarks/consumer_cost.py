"""The consumer's own cost per item: ``async for`` over a run of ready results.

Fills the pipeline's current run by hand (no workers involved) and times ``async for``
over it, next to a bare class-based async iterator (the floor of a per-item
``__anext__``) and a plain ``for`` over a generator (what the consumer loop of
``Pool.imap`` pays per item: it flattens chunks with a generator).

    python benchmarks/consumer_cost.py

Without inorder importable (another Python, say ``python3.13
benchmarks/consumer_cost.py``), the pipeline's row is left out and an async generator's
is shown instead: what ``async for`` costs on that Python.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

try:
    import inorder
except ImportError:  # another Python: the bare rows only
    inorder = None  # type: ignore[assignment]

N = 1_000_000


class Bare:
    def __init__(self, items: list[int]) -> None:
        self.items = items
        self.index = 0

    def __aiter__(self) -> Bare:
        return self

    async def __anext__(self) -> int:
        index = self.index
        if index < len(self.items):
            self.index = index + 1
            return self.items[index]
        raise StopAsyncIteration


async def async_generator(items: list[int]) -> AsyncIterator[int]:
    for item in items:
        yield item


async def through(iterator: Any, n: int) -> float:
    started = time.perf_counter()
    total = 0
    count = 0
    async for result in iterator:
        total += result
        count += 1
        if count == n:
            break
    return (time.perf_counter() - started) / n * 1e9


def through_sync(n: int) -> float:
    items = (item for chunk in [list(range(n))] for item in chunk)
    started = time.perf_counter()
    total = 0
    count = 0
    for result in items:
        total += result
        count += 1  # noqa: SIM113 - the same loop body as the async consumer's
        if count == n:
            break
    return (time.perf_counter() - started) / n * 1e9


async def main() -> None:
    pipe_ns, agen_ns, bare_ns, sync_ns = [], [], [], []
    for _ in range(5):
        if inorder is not None:
            async with inorder.OrderedPipeline(workers=1, executor="thread") as pipe:
                run = list(range(N + 1))
                # A failure-free run, as the pipeline holds one after unpickling a batch.
                pipe._run, pipe._run_length, pipe._run_iter = run, len(run), iter(run)
                pipe_ns.append(await through(pipe, N))
                pipe._run, pipe._run_length, pipe._run_iter = [], 0, None
                pipe._run_index = pipe._settled = 0
        agen_ns.append(await through(async_generator(list(range(N + 1))), N))
        bare_ns.append(await through(Bare(list(range(N))), N))
        sync_ns.append(through_sync(N))
    print(f"Python {sys.version.split()[0]}")
    if pipe_ns:
        print(f"async for over an OrderedPipeline:  {statistics.median(pipe_ns):.0f} ns/item")
    print(f"async for over an async generator:  {statistics.median(agen_ns):.0f} ns/item")
    print(f"bare class-based async iterator:    {statistics.median(bare_ns):.0f} ns/item")
    print(f"sync for over a generator:          {statistics.median(sync_ns):.0f} ns/item")


if __name__ == "__main__":
    asyncio.run(main())
