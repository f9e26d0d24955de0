"""Every way of iterating goes on after an item's error until the stream really ends.

docs/errors.md promises that a failed item's exception can be caught and the iteration
continued. A consumer may iterate by re-entering ``async for``, by hand (``it =
aiter(pipe)`` then ``await anext(it)``), or with ``anext(pipe)`` on the pipeline itself;
``inorder.map``'s stream offers the same three. Each must hand out every outcome once, in
order, whether the item raised or its worker process died.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import inorder
from inorder import OrderedPipeline, WorkerCrashedError

from . import workloads

pytestmark = pytest.mark.anyio

ITEMS = 6
BAD = 3
EXPECTED = [x for x in range(ITEMS) if x != BAD]

# How the item at BAD fails: (kind for workloads.fault, the exception the consumer gets).
FAULTS = {"exception": ("raise", ValueError), "crash": ("os_exit", WorkerCrashedError)}


async def _by_async_for(source: Any) -> list[Any]:
    """Re-enter ``async for`` after each error."""
    seen: list[Any] = []
    while True:
        try:
            async for value in source:
                seen.append(value)
        except Exception as error:  # noqa: BLE001 - recorded and compared below
            seen.append(error)
        else:
            return seen


async def _by_hand(step: Callable[[], Awaitable[Any]]) -> list[Any]:
    seen: list[Any] = []
    while True:
        try:
            seen.append(await step())
        except StopAsyncIteration:
            return seen
        except Exception as error:  # noqa: BLE001 - recorded and compared below
            seen.append(error)


async def _by_chunks(source: Any) -> list[Any]:
    """``pipe.chunks()`` held by hand, flattened; an error is the step's, after the list."""
    seen: list[Any] = []
    iterator = aiter(source.chunks(max_items=2))
    while True:
        try:
            seen.extend(await anext(iterator))
        except StopAsyncIteration:
            return seen
        except Exception as error:  # noqa: BLE001 - recorded and compared below
            seen.append(error)


async def _iterate(way: str, source: Any) -> list[Any]:
    if way == "async for":
        return await _by_async_for(source)
    if way == "chunks()":
        return await _by_chunks(source)
    if way == "aiter() then anext()":
        iterator: AsyncIterator[Any] = aiter(source)
        return await _by_hand(lambda: anext(iterator))
    assert way == "anext() on the object"
    return await _by_hand(lambda: anext(source))


WAYS = ["async for", "aiter() then anext()", "anext() on the object", "chunks()"]
# A crash needs a worker process of its own: os._exit in a thread would end the test.
CASES = [("exception", "process"), ("exception", "thread"), ("crash", "process")]


def _check(seen: list[Any], fault: str) -> None:
    error_type = FAULTS[fault][1]
    values = [v for v in seen if not isinstance(v, BaseException)]
    errors = [v for v in seen if isinstance(v, BaseException)]
    assert values == EXPECTED
    assert [type(e) for e in errors] == [error_type], errors
    assert seen.index(errors[0]) == BAD  # raised at the failed item's position


@pytest.mark.parametrize(("fault", "executor"), CASES)
@pytest.mark.parametrize("way", WAYS)
async def test_a_pipeline_goes_on_after_an_items_error(
    way: str, fault: str, executor: Any
) -> None:
    kinds = ["ok"] * ITEMS
    kinds[BAD] = FAULTS[fault][0]
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        pipe.map(workloads.fault, range(ITEMS), kinds)
        seen = await _iterate(way, pipe)
        stats = pipe.statistics()
    _check(seen, fault)
    assert (stats.accepted, stats.yielded, stats.failed, stats.in_flight) == (ITEMS, ITEMS, 1, 0)


@pytest.mark.parametrize(("fault", "executor"), CASES)
@pytest.mark.parametrize("way", WAYS[:3])  # a map stream offers no chunks()
async def test_a_map_stream_goes_on_after_an_items_error(
    way: str, fault: str, executor: Any
) -> None:
    kinds = ["ok"] * ITEMS
    kinds[BAD] = FAULTS[fault][0]
    stream = inorder.map(workloads.fault, range(ITEMS), kinds, workers=2, executor=executor)
    async with stream:
        seen = await _iterate(way, stream)
    _check(seen, fault)
    assert stream.statistics().yielded == ITEMS


async def test_a_step_given_up_by_a_timeout_leaves_the_iterator_usable(
    executor: Any, tmp_path: Path
) -> None:
    """A consumer may wait for the next result with a timeout and try again."""
    gate = tmp_path / "gate"
    async with OrderedPipeline(workers=1, executor=executor) as pipe:
        await pipe.put(workloads.wait_for_file, 7, str(gate))
        pipe.close()
        iterator = aiter(pipe)
        with anyio.move_on_after(0.05) as scope:
            await anext(iterator)  # the item waits for the gate: this step times out
        assert scope.cancelled_caught
        gate.touch()
        assert await anext(iterator) == 7
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)


async def test_map_stream_takes_turns_between_anext_and_async_for(anyio_backend: Any) -> None:
    # async for hands out a list at a time (a batch of 100 here); anext() goes on from
    # inside that list.
    seen: list[int] = []
    async with inorder.map(workloads.square, range(2000), workers=2, batch=100) as stream:
        seen.append(await anext(stream))
        async for result in stream:
            seen.append(result)
            if len(seen) == 10:
                break
        seen.extend([await anext(stream) for _ in range(5)])
        seen.extend([result async for result in stream])
    assert seen == [i * i for i in range(2000)]
