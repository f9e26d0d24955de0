"""Property: at every step, each accepted item is in exactly one place.

``statistics()`` reads its counts from the parts that own them (the pending queue, the
in-flight count, the reorder buffer and the result cursor), so the accounting holds by
construction: ``accepted == queued + in_flight + buffered + yielded + skipped`` whenever
a producer or the consumer looks, whatever fails, is retried, skipped or marked.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inorder import OrderedPipeline, PipelineStatistics

pytestmark = pytest.mark.anyio

FLAKY: dict[int, int] = {}  # item -> failures left: a retried item fails this many times


def job(index: int, seconds: float, fails: int) -> int:
    if FLAKY.get(index, 0) > 0:
        FLAKY[index] -= 1
        raise ValueError(index)
    if fails == 2:  # fails every time
        raise ValueError(index)
    if seconds:
        time.sleep(seconds)
    return index


def balanced(stats: PipelineStatistics) -> bool:
    return stats.accepted == (
        stats.queued + stats.in_flight + stats.buffered + stats.yielded + stats.skipped
    )


@settings(max_examples=30, deadline=None)
@given(
    items=st.lists(
        st.tuples(st.sampled_from([0.0, 0.0, 0.0005, 0.002]), st.sampled_from([0, 0, 1, 2])),
        max_size=40,
    ),
    on_error=st.sampled_from(["return", "skip"]),
    retries=st.integers(0, 1),
    window=st.integers(1, 12),
    chunks=st.sampled_from([None, 1, 3]),
    markers=st.booleans(),
)
async def test_every_accepted_item_is_counted_in_exactly_one_place(
    items: list[tuple[float, int]],
    on_error: Any,
    retries: int,
    window: int,
    chunks: int | None,
    markers: bool,
) -> None:
    FLAKY.clear()
    FLAKY.update({index: 1 for index, (_, fails) in enumerate(items) if fails == 1})
    snapshots: list[PipelineStatistics] = []
    taken = 0
    async with OrderedPipeline(
        workers=2,
        window=window,
        executor="thread",
        on_error=on_error,
        retries=retries,
        retry_on=ValueError,
    ) as pipe:

        async def produce() -> None:
            for index, (seconds, fails) in enumerate(items):
                await pipe.put(job, index, seconds, fails)
                snapshots.append(pipe.statistics())
                if markers and index % 5 == 4:
                    await pipe.put(f"marker-{index}")
                    snapshots.append(pipe.statistics())
            pipe.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            if chunks is None:
                async for _ in pipe:
                    taken += 1
                    snapshots.append(pipe.statistics())
            else:
                async for chunk in pipe.chunks(chunks):
                    assert 1 <= len(chunk) <= chunks
                    taken += len(chunk)
                    snapshots.append(pipe.statistics())
        final = pipe.statistics()

    unbalanced = [s for s in snapshots if not balanced(s)]
    assert not unbalanced, unbalanced[0]
    marked = len(items) // 5 if markers else 0
    always = sum(1 for _, fails in items if fails == 2)
    flaky = 0 if retries else sum(1 for _, fails in items if fails == 1)
    assert balanced(final)
    assert final.accepted == len(items) + marked
    assert (final.queued, final.in_flight, final.buffered) == (0, 0, 0)
    assert final.failed == always + flaky
    assert final.skipped == (always + flaky if on_error == "skip" else 0)
    assert final.yielded == taken == final.accepted - final.skipped
