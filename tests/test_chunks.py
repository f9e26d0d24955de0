"""``pipe.chunks()``, ``pipe.put_many()`` and ``inorder.sequence_number()``: the public
API a throughput-minded consumer, a producer whose input comes in pieces, and a
consumer of results out of order use (the command line among them)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import inorder
from inorder import OrderedPipeline, PipelineClosedError

from . import workloads
from .helpers import wait_until

pytestmark = pytest.mark.anyio


async def test_chunks_hand_out_every_result_in_order_in_bounded_lists(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        pipe.map(workloads.square, range(3000))
        lists = [chunk async for chunk in pipe.chunks(max_items=100)]
    assert [r for chunk in lists for r in chunk] == [i * i for i in range(3000)]
    assert all(0 < len(chunk) <= 100 for chunk in lists)
    assert len(lists) < 3000  # lists, not one result at a time


async def test_chunks_raise_an_error_after_the_results_before_it_then_go_on(
    executor: Any,
) -> None:
    async with OrderedPipeline(workers=1, batch=10, executor=executor) as pipe:
        pipe.map(workloads.fail_if, range(10), [frozenset({4})] * 10)
        iterator = aiter(pipe.chunks())
        first = await anext(iterator)
        assert first[-1] == 3  # the list ends before the failed item
        assert first == list(range(first[0], 4))
        with pytest.raises(ValueError, match="item 4 is bad"):
            await anext(iterator)
        rest = [r async for chunk in iterator for r in chunk]
        stats = pipe.statistics()
    assert rest == [5, 6, 7, 8, 9]
    assert (stats.yielded, stats.failed) == (10, 1)


@pytest.mark.parametrize("on_error", ["raise", "return", "skip"])
async def test_a_list_takes_every_result_ready_across_batches_up_to_its_bound(
    executor: Any, on_error: str
) -> None:
    options: dict[str, Any] = {"on_error": on_error}
    async with OrderedPipeline(workers=2, batch=4, executor=executor, **options) as pipe:
        pipe.map(workloads.fail_if, range(40), [frozenset({28})] * 40)
        # Every batch done before the consumer comes: ten runs of four wait, ready.
        await wait_until(lambda: pipe.statistics().buffered == 40)
        iterator = aiter(pipe.chunks(max_items=25))
        assert await anext(iterator) == list(range(25))  # seven batches, cut at the bound
        if on_error == "raise":
            # The rest of the seventh; the eighth begins with the failed item: it ends.
            assert await anext(iterator) == [25, 26, 27]
            with pytest.raises(ValueError, match="item 28 is bad"):
                await anext(iterator)
            assert await anext(iterator) == list(range(29, 40))
        else:  # the failure is taken in its place, and the list goes on past it
            rest = await anext(iterator)
            kept = [type(r) if isinstance(r, Exception) else r for r in rest]
            failed = [ValueError] if on_error == "return" else []
            assert kept == [25, 26, 27, *failed, *range(29, 40)]
        assert [r async for chunk in iterator for r in chunk] == []


@pytest.mark.parametrize("on_error", ["return", "skip"])
async def test_chunks_follow_on_error_and_keep_markers_in_place(
    executor: Any, on_error: str
) -> None:
    async with OrderedPipeline(workers=2, on_error=on_error, executor=executor) as pipe:
        for i in range(6):
            await pipe.put(workloads.fail_if, i, {2})
            if i == 3:
                await pipe.put("marker")
        pipe.close()
        flat = [r async for chunk in pipe.chunks() for r in chunk]
    expected: list[Any] = [0, 1, ValueError, 3, "marker", 4, 5]
    if on_error == "skip":
        expected.remove(ValueError)
    assert [type(r) if isinstance(r, Exception) else r for r in flat] == expected


async def test_chunks_and_async_for_take_turns_without_a_result_twice(executor: Any) -> None:
    async with OrderedPipeline(workers=2, batch=50, executor=executor) as pipe:
        pipe.map(workloads.square, range(500))
        taken: list[int] = []
        async for result in pipe:  # leaves a run part way through its iterator
            taken.append(result)
            if len(taken) == 7:
                break
        taken += await anext(aiter(pipe.chunks(max_items=20)))
        async for result in pipe:
            taken.append(result)
            if len(taken) == 60:
                break
        taken += [r async for chunk in pipe.chunks() for r in chunk]
    assert taken == [i * i for i in range(500)]


async def test_chunks_refuse_a_bound_below_one(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=1, executor="thread") as pipe:
        with pytest.raises(ValueError, match="max_items must be at least 1, got 0"):
            pipe.chunks(max_items=0)


async def test_put_many_accepts_pieces_as_the_window_makes_room(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=8, executor=executor) as pipe:

        async def produce() -> None:
            for piece in range(10):
                await pipe.put_many(workloads.square, list(range(piece * 7, piece * 7 + 7)))
            pipe.close()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(produce)
            results = [r async for chunk in pipe.chunks() for r in chunk]
    assert results == [i * i for i in range(70)]


async def test_put_many_leaves_the_callers_list_as_it_was(anyio_backend: Any) -> None:
    """The queue cuts batches off the lists it holds in place: put_many() queues a copy
    of the caller's list, which stays as it was (here cut into batches of 7)."""
    items = list(range(100))
    async with OrderedPipeline(workers=2, batch=7) as pipe:
        await pipe.put_many(workloads.square, items)
        pipe.close()
        results = [r async for chunk in pipe.chunks() for r in chunk]
    assert results == [i * i for i in range(100)]
    assert items == list(range(100))


async def test_put_many_fails_an_unpicklable_item_in_place_and_refuses_after_close(
    anyio_backend: Any,
) -> None:
    async with OrderedPipeline(workers=2, on_error="return") as pipe:
        await pipe.put_many(workloads.identity, [1, workloads.Unpicklable(), 3])
        with pytest.raises(TypeError, match=r"put_many\(\) needs a callable first, got int"):
            await pipe.put_many(42, [1])  # type: ignore[arg-type]
        pipe.close()
        with pytest.raises(PipelineClosedError, match="put_many"):
            await pipe.put_many(workloads.identity, [4])
        outcomes = [o async for o in pipe]
    assert outcomes[0] == 1
    assert isinstance(outcomes[1], TypeError)
    assert outcomes[2] == 3


async def test_sequence_number_names_the_item_of_an_error_out_of_order(executor: Any) -> None:
    async with OrderedPipeline(
        workers=2, ordered=False, on_error="return", executor=executor
    ) as pipe:
        seqs = {}
        for i in range(20):
            seqs[await pipe.put(workloads.fail_if, i, {3, 11})] = i
        pipe.close()
        errors = [o async for o in pipe if isinstance(o, Exception)]
    assert sorted(seqs[inorder.sequence_number(e)] for e in errors) == [3, 11]  # type: ignore[index]
    assert inorder.sequence_number(ValueError("raised by no item")) is None
