"""The hold policy as pure code: when a partial batch waits, and when it stops waiting."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from inorder._hold import Hold


@given(
    allowed=st.integers(1, 64),
    free=st.integers(0, 200),
    waiting=st.integers(0, 400),
    taken=st.integers(0, 10_000),
)
def test_a_hold_starts_only_when_the_consumer_is_behind(
    allowed: int, free: int, waiting: int, taken: int
) -> None:
    hold = Hold()
    held = hold.consider(allowed=allowed, free=free, waiting=waiting, taken=taken)
    assert held == (free < allowed and waiting >= 2 * allowed)
    assert hold.active == held
    assert hold.keeps(allowed - 1) == held
    assert not hold.keeps(allowed)


@given(
    allowed=st.integers(1, 64),
    extra=st.integers(0, 300),
    taken=st.integers(0, 10_000),
    took=st.integers(0, 400),
)
def test_a_hold_may_end_once_fewer_than_two_batches_of_its_results_are_left(
    allowed: int, extra: int, taken: int, took: int
) -> None:
    waiting = 2 * allowed + extra
    hold = Hold()
    assert hold.consider(allowed=allowed, free=0, waiting=waiting, taken=taken)
    left = waiting - took  # of the results that waited when it began
    assert hold.may_end(yielded=taken + took, free=0) == (left < 2 * allowed)
    assert hold.may_end(yielded=taken, free=allowed)  # room for a batch: no reason left


class HoldMachine(RuleBasedStateMachine):
    """A consumer takes results, batches arrive, the timer fires: the pipeline's view."""

    @initialize(allowed=st.integers(1, 16), waiting=st.integers(0, 80))
    def setup(self, allowed: int, waiting: int) -> None:
        self.hold = Hold()
        self.allowed = allowed
        self.waiting = waiting
        self.taken = 0
        self.timer_taken: int | None = None

    @rule(free=st.integers(0, 20))
    def dispatch(self, free: int) -> None:
        was_active = self.hold.active
        until = self.hold.until_taken
        held = self.hold.consider(
            allowed=self.allowed, free=free, waiting=self.waiting, taken=self.taken
        )
        if was_active:
            assert held
            assert self.hold.until_taken == until  # an active hold goes on unchanged
        elif held:
            self.hold.timer_set(self.taken)
            self.timer_taken = self.taken

    @rule(count=st.integers(1, 10))
    def consumer_takes(self, count: int) -> None:
        count = min(count, self.waiting)
        self.waiting -= count
        self.taken += count
        if self.hold.active and self.hold.may_end(yielded=self.taken, free=0):
            assert self.waiting < 2 * self.allowed or self.taken >= self.hold.until_taken
            self.hold.end()

    @rule(count=st.integers(1, 20))
    def results_arrive(self, count: int) -> None:
        self.waiting += count

    @rule()
    def timer_fires(self) -> None:
        if not self.hold.active:
            assert not self.hold.timer_ends_it(self.taken)
            return
        ends = self.hold.timer_ends_it(self.taken)
        assert ends == (self.taken == self.timer_taken)  # only a stalled consumer
        if ends:
            assert not self.hold.active
        else:
            self.hold.timer_set(self.taken)
            self.timer_taken = self.taken

    @invariant()
    def an_active_hold_has_a_reason_to_wait(self) -> None:
        if self.hold.active:
            assert self.taken < self.hold.until_taken


TestHoldMachine = HoldMachine.TestCase
