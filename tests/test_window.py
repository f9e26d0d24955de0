"""The window's admission logic as pure code: bounded, fair, nothing lost."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from inorder._window import Window


class WindowMachine(RuleBasedStateMachine):
    """Producers arrive, wait, give up; a consumer releases slots. Models the pipeline."""

    @initialize(capacity=st.integers(1, 5))
    def setup(self, capacity: int) -> None:
        self.window: Window[int] = Window(capacity)
        self.next_id = 0
        self.arrivals: list[int] = []  # waiter ids in arrival order
        self.holding = 0  # slots held by producers that got in
        self.granted: int | None = None
        self.admitted_waiters: list[int] = []
        self.over = 0  # slots held beyond capacity right after a shrink

    def _woken(self, waiter: int | None) -> None:
        if waiter is not None:
            assert self.granted is None, "two grants outstanding at once"
            self.granted = waiter

    def _held(self) -> int:
        return self.holding + (1 if self.granted is not None else 0)

    @rule(wanted=st.integers(1, 4))
    def arrive_in_bulk(self, wanted: int) -> None:
        before = self._held()
        taken = self.window.try_acquire_many(wanted)
        self.holding += taken
        assert taken == 0 or before + taken <= self.window.capacity

    @rule(capacity=st.integers(1, 6))
    def resize(self, capacity: int) -> None:
        """The automatic window grows or shrinks while slots are held and producers wait."""
        self._woken(self.window.resize(capacity))
        self.over = max(0, self._held() - capacity)

    @rule()
    def arrive(self) -> None:
        if self.window.try_acquire():
            self.holding += 1
            return
        waiter = self.next_id
        self.next_id += 1
        self.window.enqueue(waiter)
        self.arrivals.append(waiter)

    @precondition(lambda self: self.holding > 0)
    @rule()
    def consume(self) -> None:
        self.holding -= 1
        self.over = max(0, self.over - 1)
        self._woken(self.window.release())

    @precondition(lambda self: self.granted is not None)
    @rule()
    def granted_resumes(self) -> None:
        waiter = self.granted
        assert waiter is not None
        self.granted = None
        self.holding += 1
        self.admitted_waiters.append(waiter)
        self._woken(self.window.confirm(waiter))

    @precondition(lambda self: self.granted is not None)
    @rule()
    def granted_is_cancelled(self) -> None:
        waiter = self.granted
        assert waiter is not None
        self.granted = None
        self.arrivals.remove(waiter)
        self._woken(self.window.withdraw(waiter))

    @rule(data=st.data())
    def queued_is_cancelled(self, data: st.DataObject) -> None:
        queued = [w for w in self.arrivals if w not in self.admitted_waiters and w != self.granted]
        if not queued:
            return
        waiter = data.draw(st.sampled_from(queued))
        self.arrivals.remove(waiter)
        assert self.window.withdraw(waiter) is None

    @invariant()
    def never_over_capacity(self) -> None:
        # Over capacity only by what was held when it shrank, and only until released.
        held = self._held()
        assert held == self.window.occupied <= self.window.capacity + self.over

    @invariant()
    def first_come_first_served(self) -> None:
        still_there = [w for w in self.arrivals if w in self.admitted_waiters]
        assert self.admitted_waiters == still_there

    @invariant()
    def no_one_waits_while_a_slot_is_free(self) -> None:
        # One grant goes out at a time, so a free slot may wait for the granted waiter to
        # resume; but a free slot with waiters and no grant outstanding is a lost wake-up.
        free = self.window.occupied < self.window.capacity
        if free and self.window.waiting and self.granted is None:
            pytest.fail("a waiter is queued while a slot is free and no grant is pending")


TestWindow = WindowMachine.TestCase


def test_new_arrivals_queue_behind_waiters() -> None:
    window: Window[str] = Window(1)
    assert window.try_acquire()
    window.enqueue("a")
    assert window.release() == "a"
    # The slot is granted to "a" until it resumes: a newcomer must not barge in.
    assert not window.try_acquire()
    assert window.confirm("a") is None
    assert window.occupied == 1


def test_drain_returns_granted_and_queued() -> None:
    window: Window[str] = Window(1)
    assert window.try_acquire()
    window.enqueue("a")
    window.enqueue("b")
    assert window.release() == "a"
    assert window.drain() == ["a", "b"]
    assert window.occupied == 0
    assert window.try_acquire()


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        Window(capacity)


def test_release_without_holder_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="no slot occupied"):
        Window(2).release()


def test_shrinking_below_the_occupied_slots_stops_admissions_until_released() -> None:
    window: Window[str] = Window(4)
    assert window.try_acquire_many(4) == 4
    assert window.resize(2) is None
    assert not window.try_acquire()
    window.enqueue("a")
    assert window.release_many(2) is None  # 2 held, capacity 2: still full
    assert window.release() == "a"  # 1 held: room for "a"


def test_growing_grants_a_waiter_at_once() -> None:
    window: Window[str] = Window(1)
    assert window.try_acquire()
    window.enqueue("a")
    assert window.resize(2) == "a"
