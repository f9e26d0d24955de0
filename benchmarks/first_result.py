"""Where the time to the first result goes, in the latency workload's burst.

    python benchmarks/first_result.py [--rounds 15] [--feed put|map]

On a warm pipeline of 2 worker processes, each round feeds 200 items of 1 ms CPU (with
``put()`` from a producer task, or ``pipe.map``) and times the first result's trip:
from the start to the first executor call, from that call to the item starting in its
worker, the item itself, from its end to the pool's manager thread reading its result,
from there to the completion callback on the event loop, and from there to the consumer.
The executor call and the read are timed by wrapping the pipeline's LoopBridge.submit and
the pool's message handler (private hooks: this is a diagnostic). Every worker has run a
call from the workloads module first, so none imports it during the burst. Medians and
maxima in ms.
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
from inorder import _eventloop, _pool

sys.path.insert(0, str(Path(__file__).parent))

from workloads import timed_burn_1ms, warm_up_every_worker

ITEMS = 200
WORKERS = 2
STAGES = (
    "start -> first executor call",
    "executor call -> item starts",
    "item runs",
    "item ends -> the pool reads its result",
    "the pool reads it -> completion on the loop",
    "completion -> consumer",
    "total",
)

_marks: dict[str, float] = {}
_submit = _eventloop.LoopBridge.submit


def _timed_submit(self: Any, executor: Any, fn: Any, args: Any, on_done: Any) -> Any:
    _marks.setdefault("submit", time.perf_counter())

    def done(future: Any) -> None:
        _marks.setdefault("done", time.perf_counter())
        on_done(future)

    return _submit(self, executor, fn, args, done)


_eventloop.LoopBridge.submit = _timed_submit  # type: ignore[method-assign]

_handle = _pool.WorkerPool._handle


def _timed_handle(self: Any, worker: Any, message: tuple[Any, ...]) -> None:
    if message[0] == _pool.DONE and "submit" in _marks:
        _marks.setdefault("read", time.perf_counter())
    _handle(self, worker, message)


_pool.WorkerPool._handle = _timed_handle  # type: ignore[method-assign]


async def one_round(feed: str) -> tuple[float, ...]:
    async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
        await warm_up_every_worker(pipe, WORKERS)
        _marks.clear()
        started = time.perf_counter()
        if feed == "map":
            pipe.map(timed_burn_1ms, range(ITEMS))
            item_started, item_ended = await anext(pipe)
            first = time.perf_counter()
        else:
            async with anyio.create_task_group() as tasks:

                async def produce() -> None:
                    for i in range(ITEMS):
                        await pipe.put(timed_burn_1ms, i)

                tasks.start_soon(produce)
                item_started, item_ended = await anext(pipe)
                first = time.perf_counter()
        submitted, read, done = _marks["submit"], _marks["read"], _marks["done"]
        return (
            submitted - started,
            item_started - submitted,
            item_ended - item_started,
            read - item_ended,
            done - read,
            first - done,
            first - started,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--feed", choices=("put", "map"), default="map")
    options = parser.parse_args()
    rows = [anyio.run(one_round, options.feed) for _ in range(options.rounds)]
    print(f"feed={options.feed}, {options.rounds} rounds of {ITEMS} x 1 ms items: ms")
    for index, stage in enumerate(STAGES):
        values = [row[index] * 1e3 for row in rows]
        print(f"  {stage:44s} median {statistics.median(values):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
