"""Where the time to the first result goes, in the latency workload's burst.

    python benchmarks/first_result.py [--rounds 15] [--feed put|map]

On a warm pipeline of 2 worker processes, each round feeds 200 items of 1 ms CPU (with
``put()`` from a producer task, or ``pipe.map``) and times the first result's trip:
from the start to the first executor call, from that call to the item starting in its
worker, the item itself, from its end to the completion callback on the event loop, and
from there to the consumer. The executor call is timed by wrapping the pipeline's
LoopBridge.submit (a private hook: this is a diagnostic). Medians and maxima in ms.
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
from inorder import _eventloop

sys.path.insert(0, str(Path(__file__).parent))

from workloads import inc, timed_burn_1ms

ITEMS = 200
STAGES = (
    "start -> first executor call",
    "executor call -> item starts",
    "item runs",
    "item ends -> completion on the loop",
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


async def one_round(feed: str) -> tuple[float, ...]:
    async with inorder.OrderedPipeline(workers=2) as pipe:
        await pipe.put(inc, 0)  # the workers import the workloads module now
        assert await anext(pipe) == 1
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
        submitted, done = _marks["submit"], _marks["done"]
        return (
            submitted - started,
            item_started - submitted,
            item_ended - item_started,
            done - item_ended,
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
        print(f"  {stage:38s} median {statistics.median(values):6.2f}  max {max(values):6.2f}")


if __name__ == "__main__":
    main()
