"""The result cursor (pure): runs handed out one at a time or as lists, ``on_error``
applied at each failure's position, and the counts the pipeline's statistics read."""

from __future__ import annotations

import copyreg
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inorder._cursor import NEXT_RUN, SKIPPED, ResultCursor, as_exception, sequence_number
from inorder._worker import Failure


class Boom(Exception):
    pass


@st.composite
def runs(draw: st.DrawFn) -> list[list[Any]]:
    """Runs of outcomes as the reorder buffer hands them over: results (the sequence
    number) and failures."""
    out: list[list[Any]] = []
    seq = 0
    for _ in range(draw(st.integers(0, 5))):
        run: list[Any] = []
        for _ in range(draw(st.integers(1, 6))):
            run.append(Failure(Boom(seq), "fn") if draw(st.booleans()) else seq)
            seq += 1
        out.append(run)
    return out


# A step of the consumer: None for next(), an int for next_chunk(limit); and whether
# the pipeline settles after it.
steps = st.lists(st.tuples(st.none() | st.integers(1, 4), st.booleans()), min_size=1)


@given(runs(), st.sampled_from(["raise", "return", "skip"]), steps, st.booleans())
def test_outcomes_come_out_in_order_with_each_failure_handled_in_place(
    given_runs: list[list[Any]],
    on_error: Any,
    plan: list[tuple[int | None, bool]],
    by_iterator: bool,
) -> None:
    cursor = ResultCursor(on_error)
    pending = list(given_runs)
    start = 0
    got: list[Any] = []

    def named(outcome: Any) -> Any:
        return ("returned", sequence_number(outcome)) if isinstance(outcome, Boom) else outcome

    for step in itertools.count():
        limit, settle = plan[step % len(plan)]
        try:
            out = cursor.next() if limit is None else cursor.next_chunk(limit)
        except Boom as error:
            got.append(("raised", sequence_number(error)))
        else:
            if out is NEXT_RUN or out is None:  # the run is handed out: load the next
                if not pending:
                    break
                cursor.settle()
                run = pending.pop(0)
                clean = not any(type(o) is Failure for o in run)
                cursor.load(start, list(run), clean, by_iterator=by_iterator)
                start += len(run)
            elif limit is None:
                if out is not SKIPPED:
                    got.append(named(out))
            else:
                assert len(out) <= limit
                got.extend(named(o) for o in out)
        if settle:
            cursor.settle()
    cursor.settle()

    flat = [o for run in given_runs for o in run]
    failures = [i for i, o in enumerate(flat) if type(o) is Failure]
    expected: list[Any] = []
    for seq, outcome in enumerate(flat):
        if type(outcome) is not Failure:
            expected.append(seq)
        elif on_error != "skip":
            expected.append(("raised" if on_error == "raise" else "returned", seq))
    assert got == expected
    assert cursor.handed == len(flat)
    assert cursor.failed == len(failures)
    assert cursor.skipped == (len(failures) if on_error == "skip" else 0)
    assert cursor.taken == cursor.yielded == len(flat) - cursor.skipped
    assert cursor.waiting == 0


@given(st.integers(1, 10), st.integers(0, 10), st.booleans())
def test_what_was_handed_out_counts_once_settled(
    length: int, steps: int, by_iterator: bool
) -> None:
    cursor = ResultCursor("raise")
    cursor.load(0, list(range(length)), True, by_iterator=by_iterator)
    taken = [cursor.next() for _ in range(min(steps, length))]
    assert taken == list(range(len(taken)))
    assert cursor.taken == len(taken)  # counted as taken before it settles
    assert cursor.waiting == length - len(taken)
    assert cursor.handed == 0
    assert cursor.settle() == len(taken)
    assert cursor.handed == len(taken)
    assert cursor.settle() == 0  # each outcome settles once


def test_a_failure_under_raise_ends_a_chunk_and_the_next_step_raises_it() -> None:
    cursor = ResultCursor("raise")
    cursor.load(10, [10, 11, Failure(Boom(), "fn"), 13], False, by_iterator=False)
    assert cursor.next_chunk(10) == [10, 11]
    with pytest.raises(Boom) as raised:
        cursor.next_chunk(10)
    assert sequence_number(raised.value) == 12
    assert any("item 12 failed in fn" in note for note in raised.value.__notes__)
    assert cursor.next_chunk(10) == [13]
    assert cursor.next_chunk(10) is None


class SharedStateError(Exception):
    """Copied by a copyreg reducer that shares ``__dict__``, as tblib's does for every
    exception once ``distributed`` is imported."""


def _rebuild_sharing(args: tuple[Any, ...], attributes: dict[str, Any]) -> SharedStateError:
    error = SharedStateError(*args)
    error.__dict__ = attributes  # the original's own dict, not a copy
    return error


@pytest.fixture
def dict_sharing_reducer() -> Iterator[None]:
    copyreg.pickle(SharedStateError, lambda e: (_rebuild_sharing, (e.args, e.__dict__)))
    try:
        yield
    finally:
        del copyreg.dispatch_table[SharedStateError]


@pytest.mark.usefixtures("dict_sharing_reducer")
def test_items_sharing_one_exception_each_get_their_own_note() -> None:
    failure = Failure(SharedStateError("one load for three items"), "fn", "worker traceback", 7)
    errors = [as_exception(seq, failure) for seq in range(3)]
    assert len({id(error) for error in errors}) == 3
    for seq, error in enumerate(errors):
        assert error.__notes__ == [f"inorder: item {seq} failed in fn (worker process 7)"]
        assert sequence_number(error) == seq
