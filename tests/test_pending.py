"""Pending segments, items taken apart, and the fate of a lost batch's items (pure)."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from inorder._pending import Item, items_of, segments_of
from inorder._recovery import plan_loss
from inorder._serialize import Part

KEYS = ["f", "g"]  # codec keys are compared by identity: these two strings are distinct


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[tuple[int, int]], list[Part]]:
    """A batch as the pipeline cuts one: parts of (key, shape, payloads) and the
    sequence runs they cover, with gaps where markers were."""
    seq = draw(st.integers(0, 1000))
    runs: list[tuple[int, int]] = []
    parts: list[Part] = []
    for _ in range(draw(st.integers(1, 4))):
        count = draw(st.integers(1, 5))
        key = KEYS[draw(st.integers(0, 1))]
        parts.append(Part(key, draw(st.integers(0, 1)), [f"x{seq + i}" for i in range(count)]))
        runs.append((seq, count))
        seq += count + draw(st.integers(0, 2))  # a gap: markers took those numbers
    return runs, parts


@given(batches())
def test_items_of_numbers_each_payload_by_its_run(
    batch: tuple[list[tuple[int, int]], list[Part]],
) -> None:
    runs, parts = batch
    items = items_of(runs, parts)
    assert [item.payload for item in items] == [p for part in parts for p in part.payloads]
    assert [item.payload for item in items] == [f"x{item.seq}" for item in items]


@given(batches(), st.booleans(), st.integers(0, 3))
def test_segments_of_keep_every_item_once_in_order(
    batch: tuple[list[tuple[int, int]], list[Part]], isolated: bool, attempts: int
) -> None:
    items = items_of(*batch)
    segments = segments_of(items, isolated=isolated, attempts=attempts)
    again = [
        Item(segment.start + i, segment.key, segment.shape, payload)
        for segment in segments
        for i, payload in enumerate(segment.payloads)
    ]
    assert again == items
    for segment in segments:
        assert segment.end == segment.start + len(segment.payloads)
        assert (segment.isolated, segment.attempts) == (isolated, attempts)
        if isolated:
            assert len(segment.payloads) == 1
    if not isolated:  # merged where consecutive, same key and shape
        for a, b in itertools.pairwise(segments):
            assert not (a.end == b.start and a.key is b.key and a.shape == b.shape)


@given(
    batches(),
    st.booleans(),
    st.one_of(st.none(), st.integers(-2, 25)),
)
def test_every_item_of_a_lost_batch_has_exactly_one_fate(
    batch: tuple[list[tuple[int, int]], list[Part]], started: bool, running: int | None
) -> None:
    items = items_of(*batch)
    plan = plan_loss(items, started=started, running=running)
    fates = plan.rerun + plan.alone + ([plan.culprit] if plan.culprit else [])
    assert sorted(fates) == sorted(items)  # none lost, none doubled
    if not started:
        assert plan.rerun == items
    elif running is not None and 0 <= running < len(items):
        assert plan.culprit == items[running]
    elif len(items) > 1:
        assert plan.alone == items  # between items: each a suspect, run alone
    else:
        assert plan.culprit == items[0]
