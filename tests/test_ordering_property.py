"""Property: whatever the durations, window, workers and failures, the output is the input
order, with exactly one outcome per item."""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from inorder import OrderedPipeline

from . import workloads

pytestmark = pytest.mark.anyio


def job(index: int, seconds: float, fail: bool) -> int:
    if fail:
        raise ValueError(index)
    if seconds:
        time.sleep(seconds)
    return index


items_strategy = st.lists(
    st.tuples(st.sampled_from([0.0, 0.0, 0.0005, 0.002, 0.004]), st.booleans()),
    max_size=40,
)


async def run_stream(
    items: list[tuple[float, bool]],
    *,
    workers: int,
    window: int,
    executor: Any,
    ordered: bool,
    producers: int,
    markers: bool,
) -> tuple[list[Any], list[Any]]:
    """Put ``items`` from ``producers`` tasks and take every outcome. Returns the outcomes
    and what was put (item indices, and markers) in the order of the sequence numbers
    ``put()`` returned: for each producer, the order its calls returned in."""
    accepted: dict[int, int | str] = {}  # sequence number -> item index, or the marker
    async with OrderedPipeline(
        workers=workers, window=window, executor=executor, ordered=ordered, on_error="return"
    ) as pipe:

        async def produce(share: list[tuple[int, tuple[float, bool]]]) -> None:
            for index, (seconds, fail) in share:
                accepted[await pipe.put(job, index, seconds, fail)] = index
                if markers and index % 7 == 6:
                    accepted[await pipe.put(f"marker-{index}")] = f"marker-{index}"

        async def several() -> None:
            async with anyio.create_task_group() as inner:
                for k in range(producers):
                    inner.start_soon(produce, list(enumerate(items))[k::producers])
            pipe.close()

        outcomes: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(several)
            async for outcome in pipe:
                outcomes.append(outcome)
    return outcomes, [accepted[seq] for seq in sorted(accepted)]


def check(
    outcomes: list[Any], items: list[tuple[float, bool]], ordered: bool, accepted: list[Any]
) -> None:
    """Every item and marker comes out once, each item with its own outcome; in the order
    put() accepted them if ``ordered``, else each marker after everything put before it."""
    keys: list[Any] = []  # an item's index, or a marker as it is
    for outcome in outcomes:
        if isinstance(outcome, str):
            keys.append(outcome)
            continue
        if isinstance(outcome, ValueError):
            index = outcome.args[0]
            assert items[index][1], f"item {index} failed but should not have"
        else:
            index = outcome
            assert not items[index][1], f"item {index} succeeded but should have failed"
        keys.append(index)
    assert sorted(keys, key=str) == sorted(accepted, key=str), "lost or duplicated outcomes"
    assert sorted(k for k in keys if isinstance(k, int)) == list(range(len(items)))
    if ordered:
        assert keys == accepted
    for position, key in enumerate(keys):
        if isinstance(key, str):
            before = set(accepted[: accepted.index(key)])
            assert before <= set(keys[:position]), f"{key} came before an earlier item"


@settings(max_examples=40)
@given(
    items=items_strategy,
    workers=st.integers(1, 4),
    window=st.integers(1, 12),
    ordered=st.booleans(),
    markers=st.booleans(),
)
async def test_threads_order_and_exactly_once(
    anyio_backend: Any,
    items: list[tuple[float, bool]],
    workers: int,
    window: int,
    ordered: bool,
    markers: bool,
) -> None:
    outcomes, accepted = await run_stream(
        items,
        workers=workers,
        window=window,
        executor="thread",
        ordered=ordered,
        producers=1,
        markers=markers,
    )
    assert [k for k in accepted if isinstance(k, int)] == list(range(len(items)))
    check(outcomes, items, ordered, accepted)


@settings(max_examples=10)
@given(
    items=items_strategy,
    workers=st.integers(1, 3),
    window=st.integers(1, 12),
    ordered=st.booleans(),
    producers=st.integers(1, 3),
)
async def test_processes_order_and_exactly_once(
    anyio_backend: Any,
    items: list[tuple[float, bool]],
    workers: int,
    window: int,
    ordered: bool,
    producers: int,
) -> None:
    outcomes, accepted = await run_stream(
        items,
        workers=workers,
        window=window,
        executor="process",
        ordered=ordered,
        producers=producers,
        markers=True,
    )
    check(outcomes, items, ordered, accepted)


@settings(max_examples=25)
@given(
    items=items_strategy,
    window=st.integers(1, 6),
    producers=st.integers(2, 4),
    ordered=st.booleans(),
    markers=st.booleans(),
)
async def test_many_producers_each_get_the_order_their_puts_returned_in(
    anyio_backend: Any,
    items: list[tuple[float, bool]],
    window: int,
    producers: int,
    ordered: bool,
    markers: bool,
) -> None:
    outcomes, accepted = await run_stream(
        items,
        workers=2,
        window=window,
        executor="thread",
        ordered=ordered,
        producers=producers,
        markers=markers,
    )
    check(outcomes, items, ordered, accepted)


@settings(max_examples=25)
@given(
    values=st.lists(st.integers(-1000, 1000), max_size=60),
    window=st.integers(1, 10),
    ordered=st.booleans(),
)
async def test_map_equals_builtin_map(
    anyio_backend: Any, values: list[int], window: int, ordered: bool
) -> None:
    async with OrderedPipeline(workers=3, window=window, executor="thread", ordered=ordered) as p:
        results = [r async for r in p.map(workloads.square, values)]
    expected = [v * v for v in values]
    assert results == expected if ordered else sorted(results) == sorted(expected)


# put() of single plain arguments takes a fast path (the lane) while the same function
# repeats; these streams mix it with everything that must close it: other functions,
# other call shapes, markers, fresh bound methods, and completions in between.
PAUSES = (0.0, 0.0005, 0.002)


def tagged(code: int | tuple[int], offset: int = 0) -> tuple[str, int]:
    """``code`` is ``index * 10 + pause``: the item's number and how long it takes (in a
    tuple, it is an argument put() must check, which the fast path does not take)."""
    number = code[0] if isinstance(code, tuple) else code
    time.sleep(PAUSES[number % 10])
    return ("f", number + offset)


def other(code: int) -> tuple[str, int]:
    return ("g", tagged(code)[1])


SCALE = workloads.Scale(1)

lane_ops = st.lists(
    st.tuples(
        st.sampled_from(["f", "f", "f", "f", "g", "kwargs", "tuple", "marker", "bound", "pause"]),
        st.integers(0, len(PAUSES) - 1),
    ),
    max_size=60,
)


async def run_lane_stream(
    ops: list[tuple[str, int]], *, workers: int, window: int | str, executor: Any
) -> tuple[list[Any], list[Any]]:
    expected: list[Any] = []
    outcomes: list[Any] = []
    with anyio.fail_after(30):  # a lost item would hang the stream
        async with OrderedPipeline(workers=workers, window=window, executor=executor) as pipe:

            async def produce() -> None:
                for index, (kind, pause) in enumerate(ops):
                    code = index * 10 + pause
                    if kind == "f":
                        await pipe.put(tagged, code)
                        expected.append(("f", code))
                    elif kind == "g":
                        await pipe.put(other, code)
                        expected.append(("g", code))
                    elif kind == "kwargs":
                        await pipe.put(tagged, code, offset=0)
                        expected.append(("f", code))
                    elif kind == "tuple":
                        await pipe.put(tagged, (code,))
                        expected.append(("f", code))
                    elif kind == "marker":
                        await pipe.put(f"marker-{index}")
                        expected.append(f"marker-{index}")
                    elif kind == "bound":
                        await pipe.put(SCALE.apply, code)
                        expected.append(code)
                    else:  # let completions and the consumer run
                        await anyio.sleep(PAUSES[pause])
                pipe.close()

            async with anyio.create_task_group() as tg:
                tg.start_soon(produce)
                async for outcome in pipe:
                    outcomes.append(outcome)
    return outcomes, expected


@settings(max_examples=40)
# The queued items of the fast path are all dispatched, then the same function again;
# a marker, or the same function called another way, comes in between.
@example(ops=[("f", 2)] * 3 + [("pause", 2)] * 3 + [("f", 0)] * 2, workers=1, window=4)
@example(ops=[("f", 2)] * 3 + [("marker", 0)] + [("f", 0)] * 2, workers=1, window=8)
@example(ops=[("f", 2)] * 3 + [("kwargs", 0)] + [("f", 0)] * 2, workers=1, window=8)
@given(
    ops=lane_ops,
    workers=st.integers(1, 3),
    window=st.one_of(st.just("auto"), st.integers(1, 12)),
)
async def test_threads_put_fast_path_keeps_order(
    anyio_backend: Any, ops: list[tuple[str, int]], workers: int, window: int | str
) -> None:
    outcomes, expected = await run_lane_stream(
        ops, workers=workers, window=window, executor="thread"
    )
    assert outcomes == expected


@settings(max_examples=6)
@given(ops=lane_ops, window=st.one_of(st.just("auto"), st.integers(1, 12)))
async def test_processes_put_fast_path_keeps_order(
    anyio_backend: Any, ops: list[tuple[str, int]], window: int | str
) -> None:
    outcomes, expected = await run_lane_stream(ops, workers=2, window=window, executor="process")
    assert outcomes == expected
