"""Plain asyncio code (pytest-asyncio, asyncio.TaskGroup, asyncio.timeout) works as is."""

from __future__ import annotations

import asyncio

import pytest

import inorder

from . import workloads


@pytest.mark.asyncio
async def test_asyncio_task_group_producer_and_consumer() -> None:
    async with inorder.OrderedPipeline(workers=2, window=4) as pipe:

        async def produce() -> None:
            for i in range(20):
                await pipe.put(workloads.square, i)
            pipe.close()

        async with asyncio.TaskGroup() as tg:
            tg.create_task(produce())
            results = [r async for r in pipe]
    assert results == [i * i for i in range(20)]


@pytest.mark.asyncio
async def test_asyncio_timeout_cancels_cleanly() -> None:
    with pytest.raises(TimeoutError):  # noqa: PT012 - the whole block is under test
        async with asyncio.timeout(0.5), inorder.OrderedPipeline(workers=1) as pipe:
            await pipe.put(workloads.sleep_then_return, 1, 600.0)
            await anext(pipe)
    assert pipe.closed


@pytest.mark.asyncio
async def test_gather_of_many_puts_admits_them_in_call_order() -> None:
    async with inorder.OrderedPipeline(workers=2, window=3, executor="thread") as pipe:

        async def consume() -> list[int]:
            return [r async for r in pipe]

        consumer = asyncio.create_task(consume())
        # gather starts the puts in order; with the window full most of them queue, and
        # fairness admits them in that same order.
        seqs = await asyncio.gather(*(pipe.put(workloads.square, i) for i in range(10)))
        pipe.close()
        results = await consumer
    assert seqs == list(range(10))
    assert results == [i * i for i in range(10)]
