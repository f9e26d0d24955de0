"""The pending queue, items taken apart, and the fate of a lost batch's items (pure)."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from inorder._pending import NO_LANE_FN, Item, PendingQueue, Segment, items_of, segments_of
from inorder._recovery import plan_loss, plan_retries
from inorder._retry import RetryPolicy
from inorder._serialize import Part
from inorder._worker import Failure

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
        assert (segment.isolated, segment.attempts) == (isolated, attempts)
        if isolated:
            assert len(segment.payloads) == 1
    if not isolated:  # merged where consecutive, same key and shape
        for a, b in itertools.pairwise(segments):
            assert not (
                a.start + len(a.payloads) == b.start and a.key is b.key and a.shape == b.shape
            )


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


class PendingQueueMachine(RuleBasedStateMachine):
    """``PendingQueue`` against a model: every sequence number given once, every queued
    item cut exactly once per queueing, oldest first, with its own payload."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = PendingQueue()
        self.queued: list[int] = []  # the model: queued seqs, in the order they go out
        self.deferred: list[list[Segment]] = []  # requeues waiting out a back-off
        self.delayed = 0
        self.given: list[int] = []  # every sequence number handed out, in order
        self.lost: list[Item] = []  # items cut and not queued again (in flight)

    def _payload(self, seq: int) -> str:
        return f"x{seq}"

    @rule(key=st.sampled_from(KEYS), shape=st.integers(0, 1))
    def accept(self, key: str, shape: int) -> None:
        seq = self.queue.accept(key, shape, self._payload(self.queue.accepted))
        self.given.append(seq)
        self.queued.append(seq)

    @rule(key=st.sampled_from(KEYS), count=st.integers(1, 5))
    def accept_many(self, key: str, count: int) -> None:
        start = self.queue.accepted
        self.queue.accept_many(key, 0, [self._payload(start + i) for i in range(count)])
        self.given.extend(range(start, start + count))
        self.queued.extend(range(start, start + count))

    @rule()
    def number(self) -> None:
        self.given.append(self.queue.number())

    @rule(key=st.sampled_from(KEYS), count=st.integers(1, 4))
    def put_through_the_lane(self, key: str, count: int) -> None:
        fn = object()
        self.queue.open_lane(fn, key, 0)
        for _ in range(count):
            if self.queue.lane_fn is not fn:
                break  # the last segment was not of this key: no lane
            seq = self.queue.join_lane(self._payload(self.queue.accepted))
            self.given.append(seq)
            self.queued.append(seq)

    @rule(size=st.integers(1, 8), other=st.integers(1, 8))
    def cut(self, size: int, other: int) -> None:
        if not self.queue:
            return
        head = self.queue.head
        batch = self.queue.cut(size, lambda key: size if key is head.key else other)
        items = items_of(batch.runs, batch.parts)
        assert batch.size == len(items) >= 1
        assert batch.size <= (1 if head.isolated else size)
        assert [item.payload for item in items] == [self._payload(i.seq) for i in items]
        assert [item.seq for item in items] == self.queued[: batch.size]  # oldest first
        del self.queued[: batch.size]
        self.lost.extend(items)

    @rule(isolated=st.booleans(), count=st.integers(1, 3))
    def requeue(self, isolated: bool, count: int) -> None:
        items, self.lost = self.lost[:count], self.lost[count:]
        if items:
            self.queue.requeue(segments_of(items, isolated=isolated, attempts=1))
            self.queued[:0] = [item.seq for item in items]

    @rule(count=st.integers(1, 3))
    def defer(self, count: int) -> None:
        items, self.lost = self.lost[:count], self.lost[count:]
        if items:
            self.queue.defer(len(items))
            self.deferred.append(segments_of(items, isolated=True, attempts=1))
            self.delayed += len(items)

    @rule()
    def back_off_over(self) -> None:
        if self.deferred:
            segments = self.deferred.pop(0)
            self.queue.requeue(segments, deferred=True)
            self.delayed -= len(segments)
            self.queued[:0] = [segment.start for segment in segments]

    @invariant()
    def counts_and_segments_match_the_model(self) -> None:
        queue = self.queue
        assert self.given == list(range(queue.accepted))
        assert queue.queued == len(self.queued) == sum(len(s.payloads) for s in queue.segments)
        assert queue.delayed == self.delayed
        assert [s.start + i for s in queue.segments for i in range(len(s.payloads))] == (
            self.queued
        )
        for segment in queue.segments:
            assert segment.payloads == [
                self._payload(segment.start + i) for i in range(len(segment.payloads))
            ]
        if queue.lane_fn is not NO_LANE_FN:
            assert queue.lane is queue.segments[-1]
            assert queue.lane.start + len(queue.lane.payloads) == queue.accepted


TestPendingQueue = PendingQueueMachine.TestCase


def test_the_lane_closes_when_its_segment_is_cut_whole() -> None:
    queue = PendingQueue()
    fn = object()
    queue.accept("f", 0, "x0")
    queue.open_lane(fn, "f", 0)
    assert queue.lane_fn is fn
    queue.join_lane("x1")
    assert queue.cut(8, lambda key: 8).size == 2
    assert queue.lane_fn is NO_LANE_FN  # a later join_lane would add to a segment cut
    queue.accept("f", 0, "x2")
    assert queue.cut(8, lambda key: 8).parts[0].payloads == ["x2"]


@given(
    batches(),
    st.integers(0, 3),
    st.integers(0, 2),
    st.lists(st.sampled_from(["ok", "value", "key"]), min_size=30, max_size=30),
)
def test_plan_retries_files_each_outcome_once_or_runs_it_again(
    batch: tuple[list[tuple[int, int]], list[Part]],
    attempts: int,
    retries: int,
    kinds: list[str],
) -> None:
    items = items_of(*batch)
    outcomes: list[Any] = [
        item.seq
        if kind == "ok"
        else Failure((ValueError if kind == "value" else KeyError)(item.seq), "fn")
        for item, kind in zip(items, itertools.cycle(kinds), strict=False)
    ]
    policy = RetryPolicy(retries, ValueError)
    plan = plan_retries(items, attempts, outcomes, policy)
    by_seq = dict(zip((item.seq for item in items), outcomes, strict=True))
    filed = [(start + i, o) for start, run in plan.filed for i, o in enumerate(run)]
    assert sorted([seq for seq, _ in filed] + [item.seq for item in plan.again]) == sorted(by_seq)
    assert all(by_seq[seq] is outcome for seq, outcome in filed)
    assert [item.seq for item in plan.again] == [
        seq
        for seq, o in by_seq.items()
        if type(o) is Failure and policy.should_retry(o.exception, attempts + 1)
    ]
    for (start, run), (following, _) in itertools.pairwise(plan.filed):
        assert start + len(run) < following  # consecutive numbers make one run
    exhausted = [seq for seq, o in filed if type(o) is Failure] if attempts else []
    assert [seq for seq, _ in plan.exhausted] == exhausted
