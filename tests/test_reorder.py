"""The reorder buffer as pure code: every item once, in order, whatever the arrival order."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inorder._reorder import ReorderBuffer


@st.composite
def runs_in_arrival_order(draw: st.DrawFn) -> list[tuple[int, list[int]]]:
    """0..n-1 cut into runs of consecutive numbers, shuffled: how batches complete."""
    n = draw(st.integers(0, 200))
    cuts = sorted(draw(st.sets(st.integers(1, max(n - 1, 1)), max_size=n)) - {n}) if n else []
    bounds = [0, *cuts, n] if n else [0]
    runs = [(a, list(range(a, b))) for a, b in itertools.pairwise(bounds) if b > a]
    return draw(st.permutations(runs))


@given(runs_in_arrival_order(), st.data())
def test_ordered_pops_every_item_once_in_sequence(
    runs: list[tuple[int, list[int]]], data: st.DataObject
) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer()
    popped: list[int] = []
    total = sum(len(items) for _, items in runs)
    for start, items in runs:
        buffer.add(start, items)
        # The consumer drains a random number of ready items between arrivals.
        for _ in range(data.draw(st.integers(0, 5))):
            got = buffer.pop()
            if got is None:
                break
            seq, item = got
            assert seq == item
            popped.append(item)
        assert len(buffer) == sum(len(i) for _, i in runs[: runs.index((start, items)) + 1]) - len(
            popped
        )
    while (got := buffer.pop()) is not None:
        popped.append(got[1])
    assert popped == list(range(total))
    assert len(buffer) == 0
    assert not buffer.ready()


@given(runs_in_arrival_order())
def test_ready_only_when_the_next_number_is_there(runs: list[tuple[int, list[int]]]) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer()
    arrived: set[int] = set()
    for start, items in runs:
        buffer.add(start, items)
        arrived.update(items)
        assert buffer.ready() == (buffer.next_seq in arrived)
        while buffer.ready():
            got = buffer.pop()
            assert got is not None
            arrived.discard(got[0])


@given(runs_in_arrival_order())
def test_unordered_pops_in_arrival_order(runs: list[tuple[int, list[int]]]) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(ordered=False)
    for start, items in runs:
        buffer.add(start, items)
    popped = []
    while (got := buffer.pop()) is not None:
        assert got[0] == got[1]
        popped.append(got[1])
    assert popped == [x for _, items in runs for x in items]


def test_adding_an_already_popped_number_is_refused() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    buffer.add(0, ["a"])
    assert buffer.pop() == (0, "a")
    with pytest.raises(ValueError, match="already popped"):
        buffer.add(0, ["again"])


def test_clear_drops_everything() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    buffer.add(1, ["b", "c"])
    buffer.add(0, ["a"])
    assert buffer.pop() == (0, "a")
    assert buffer.clear() == 2
    assert buffer.pop() is None
    assert len(buffer) == 0


@given(runs_in_arrival_order(), st.data())
def test_unordered_barriers_wait_for_everything_before_them(
    runs: list[tuple[int, list[int]]], data: st.DataObject
) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(ordered=False)
    single = [start for start, items in runs if len(items) == 1]
    barriers = set(data.draw(st.lists(st.sampled_from(single), unique=True))) if single else set()
    popped: list[int] = []
    for start, items in runs:
        buffer.add(start, items, barrier=start in barriers)
        for _ in range(data.draw(st.integers(0, 5))):
            got = buffer.pop()
            if got is None:
                break
            popped.append(got[0])
    while (got := buffer.pop()) is not None:
        popped.append(got[0])
    total = sum(len(items) for _, items in runs)
    assert sorted(popped) == list(range(total))
    for barrier in barriers:
        assert set(popped[: popped.index(barrier)]) >= set(range(barrier))
    assert buffer.next_seq == total


@given(runs_in_arrival_order(), st.data(), st.booleans())
def test_pop_run_and_pop_mixed_give_every_item_once(
    runs: list[tuple[int, list[int]]], data: st.DataObject, ordered: bool
) -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer(ordered=ordered)
    popped: list[int] = []

    def drain_some() -> None:
        for _ in range(data.draw(st.integers(0, 4))):
            if data.draw(st.booleans()):
                got = buffer.pop()
                if got is None:
                    return
                popped.append(got[1])
            else:
                run = buffer.pop_run()
                if run is None:
                    return
                start, items = run
                assert list(items) == list(range(start, start + len(items)))
                popped.extend(items)

    for start, items in runs:
        buffer.add(start, items)
        drain_some()
    while (run := buffer.pop_run()) is not None:
        popped.extend(run[1])
    total = sum(len(items) for _, items in runs)
    assert sorted(popped) == list(range(total))
    if ordered:
        assert popped == list(range(total))
    assert len(buffer) == 0
