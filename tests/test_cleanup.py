"""Nothing outlives the pipeline: not on break, not on error, not on cancellation.

Items here sleep for ten minutes, far past the per-test timeout: if leaving the pipeline
waited for them, the test would fail by timing out, not by a timing assertion.
"""

from __future__ import annotations

import functools
import gc
import time
from typing import Any

import anyio
import pytest

import inorder
from inorder import OrderedPipeline, PipelineClosedError

from . import workloads
from .helpers import alive, wait_until, worker_processes, worker_threads

pytestmark = pytest.mark.anyio

LONG = 600.0  # seconds an item would run if nobody stopped it


async def start_long_items(pipe: OrderedPipeline, before: set[int], count: int = 4) -> set[int]:
    """Fill the workers with long items; return the pids of the pipeline's workers.

    ``before``: the worker processes that existed before the pipeline was entered.
    """
    await pipe.put(workloads.square, 3)
    for i in range(count):
        await pipe.put(workloads.sleep_then_return, i, LONG)
    await wait_until(lambda: pipe.statistics().in_flight == count)
    workers = worker_processes() - before
    assert len(workers) == pipe.statistics().workers
    return workers


async def test_break_out_of_the_consumer_stops_running_items(anyio_backend: Any) -> None:
    before = worker_processes()
    async with OrderedPipeline(workers=2) as pipe:
        assert len(worker_processes() - before) == 2  # started before the first item
        workers = await start_long_items(pipe, before)
        async for result in pipe:
            assert result == 9
            break
    assert alive(workers) == set()


async def test_exception_in_the_body_stops_workers(anyio_backend: Any) -> None:
    before = worker_processes()
    with pytest.raises(KeyError, match="from the body"):  # noqa: PT012 - the block is the test
        async with OrderedPipeline(workers=2) as pipe:
            workers = await start_long_items(pipe, before)
            raise KeyError("from the body")
    assert alive(workers) == set()


async def test_cancelling_the_consuming_task_stops_workers(anyio_backend: Any) -> None:
    workers: set[int] = set()
    before = worker_processes()

    async def consume() -> None:
        nonlocal workers
        async with OrderedPipeline(workers=2) as pipe:
            workers = await start_long_items(pipe, before)
            async for _ in pipe:
                pass  # the second item never finishes: we wait here until cancelled

    async with anyio.create_task_group() as tg:
        tg.start_soon(consume)
        await wait_until(lambda: len(workers) == 2)
        tg.cancel_scope.cancel()
    assert alive(workers) == set()


async def test_timeout_around_the_block_stops_workers(anyio_backend: Any) -> None:
    before = worker_processes()
    workers: set[int] = set()
    with anyio.move_on_after(3.0) as scope:
        async with OrderedPipeline(workers=2) as pipe:
            workers = await start_long_items(pipe, before)
            await collect_all(pipe)
    assert scope.cancelled_caught
    assert len(workers) == 2
    assert alive(workers) == set()


async def collect_all(pipe: OrderedPipeline) -> list[Any]:
    return [r async for r in pipe]


async def test_map_stream_closed_after_break_stops_workers(anyio_backend: Any) -> None:
    before = worker_processes()
    stream = inorder.map(workloads.sleep_then_return, range(10), [0.0, LONG] * 5, workers=2)
    async for result in stream:
        assert result == 0
        workers = worker_processes() - before
        break
    await stream.aclose()
    assert len(workers) == 2
    assert alive(workers) == set()


def nothing_in_flight(stream: inorder.MapStream[Any]) -> bool:
    return stream.statistics().in_flight == 0


async def test_dropped_map_stream_has_its_workers_killed(anyio_backend: Any) -> None:
    before = worker_processes()
    stream = inorder.map(workloads.square, range(3), workers=2)
    assert await anext(stream) == 0
    workers = worker_processes() - before
    assert len(workers) == 2
    await wait_until(functools.partial(nothing_in_flight, stream))
    del stream
    gc.collect()
    await wait_until(lambda: not alive(workers))


async def test_thread_workers_end_with_the_block(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=3, executor="thread") as pipe:
        for i in range(10):
            await pipe.put(workloads.sleep_then_return, i, 0.01)
        assert worker_threads()
        assert await anext(pipe) == 0
    assert worker_threads() == []


async def test_aclose_from_another_task_wakes_the_consumer(anyio_backend: Any) -> None:
    before = worker_processes()
    async with OrderedPipeline(workers=2) as pipe:
        workers = await start_long_items(pipe, before, count=2)
        assert await anext(pipe) == 9
        async with anyio.create_task_group() as tg:

            async def consumer() -> None:
                with pytest.raises(PipelineClosedError, match="shut down"):
                    await anext(pipe)

            tg.start_soon(consumer)
            await wait_until(lambda: pipe.statistics().consumer_waiting)
            await pipe.aclose()
        assert alive(workers) == set()


async def test_producer_waiting_for_room_is_released_when_the_pipeline_exits(
    anyio_backend: Any,
) -> None:
    refused = anyio.Event()

    async def producer(pipe: OrderedPipeline) -> None:
        with pytest.raises(PipelineClosedError):  # noqa: PT012 - one of these puts is refused
            for i in range(10):
                await pipe.put(workloads.square, i)
        refused.set()

    async with anyio.create_task_group() as tg:
        async with OrderedPipeline(workers=1, window=2) as pipe:
            tg.start_soon(producer, pipe)
            await wait_until(lambda: pipe.statistics().producers_waiting == 1)
        await refused.wait()


async def test_pipeline_that_is_never_entered_holds_nothing(anyio_backend: Any) -> None:
    before = worker_processes()
    pipe = OrderedPipeline(workers=2)
    await pipe.aclose()
    assert worker_processes() == before
    with pytest.raises(RuntimeError, match="already entered"):
        await pipe.__aenter__()


async def test_concurrent_aclose_calls_all_return_after_the_workers_stopped(
    anyio_backend: Any,
) -> None:
    before = worker_processes()
    pipe = OrderedPipeline(workers=2)
    await pipe.__aenter__()
    workers = await start_long_items(pipe, before)
    returned: list[set[int]] = []

    async def close_and_look() -> None:
        await pipe.aclose()
        returned.append(alive(workers))

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(close_and_look)
    assert returned == [set(), set(), set()]


# -- threads: running items cannot be stopped, so leaving waits for them ---------------


class _Recorder:
    """A thread item that records when it starts and ends, and runs ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started: list[int] = []
        self.ended: list[int] = []

    def __call__(self, i: int) -> int:
        self.started.append(i)
        time.sleep(self.seconds)
        self.ended.append(i)
        return i


@pytest.mark.parametrize("how", ["break", "exception", "cancel"])
async def test_leaving_with_threads_waits_for_running_items_and_drops_the_rest(
    anyio_backend: Any, how: str
) -> None:
    items = _Recorder(0.2)

    async def use_the_pipeline() -> None:
        async with OrderedPipeline(workers=2, executor="thread", batch=1) as pipe:
            for i in range(40):
                await pipe.put(items, i)
            await wait_until(lambda: len(items.started) == 2)
            if how == "break":
                async for _ in pipe:
                    break
            elif how == "exception":
                raise KeyError("from the body")
            else:
                await anyio.sleep_forever()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(use_the_pipeline)
            if how == "cancel":
                await wait_until(lambda: len(items.started) == 2)
                tg.cancel_scope.cancel()
    except* KeyError:
        assert how == "exception"
    assert worker_threads() == []  # no thread outlives the block
    assert sorted(items.ended) == sorted(items.started)  # what ran, ended before it
    # Four calls were in flight (two per worker), two of them waiting in the executor's
    # queue: they are cancelled, and nothing after them runs. Before a break, the first
    # result ends item 0 and lets a thread take the next call from that queue, and
    # item 1 ends at about the same time.
    if how == "break":
        assert len(items.started) <= 4, items.started
    else:
        assert sorted(items.started) == [0, 1]
