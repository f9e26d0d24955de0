"""Accepted items not yet handed to the executor: the pending queue (pure).

``PendingQueue`` gives each accepted item its sequence number and keeps it until a
batch is cut for the executor. It holds *segments*: runs of consecutive accepted items
that share a function (its codec key) and a call shape, so that a batch is cut with
list slices and pickled as one list per segment. An *item* is one of them taken apart
again, with its sequence number, to run once more (re-run after a crash, retried,
isolated): ``items_of`` takes a batch apart, ``segments_of`` queues items again.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from ._serialize import Part


class Segment:
    """Accepted items ``start`` to ``end - 1`` that share a function and a call shape.

    An ``isolated`` segment holds one item that must run alone: a suspect of a crash or
    an item being retried (``attempts``: how many of its attempts failed so far).
    """

    __slots__ = ("attempts", "isolated", "key", "payloads", "shape", "start")

    def __init__(
        self,
        key: Any,
        shape: int,
        payloads: list[Any],
        start: int,
        *,
        isolated: bool = False,
        attempts: int = 0,
    ) -> None:
        self.key = key
        self.shape = shape
        self.payloads = payloads
        self.start = start  # the sequence number of payloads[0]; the others follow
        self.isolated = isolated
        self.attempts = attempts


# put()'s lane when closed: a function no caller can pass, and a segment of nothing.
NO_LANE_FN: Final = object()
NO_LANE: Final = Segment(None, -1, [], 0)


class Item(NamedTuple):
    """One item of a batch, taken apart again to run it once more."""

    seq: int
    key: Any
    shape: int
    payload: Any


def items_of(runs: list[tuple[int, int]], parts: list[Part]) -> list[Item]:
    """A batch's items one by one, with their sequence numbers."""
    seqs = itertools.chain.from_iterable(range(start, start + count) for start, count in runs)
    return [
        Item(seq, part.key, part.shape, payload)
        for part in parts
        # payloads first: zip stops on them without drawing a number for the next part
        for payload, seq in zip(part.payloads, seqs, strict=False)
    ]


def segments_of(items: list[Item], *, isolated: bool, attempts: int) -> list[Segment]:
    """Items as pending segments: one each if isolated, else merged where consecutive."""
    segments: list[Segment] = []
    for item in items:
        last = segments[-1] if segments else None
        if (
            not isolated
            and last is not None
            and last.start + len(last.payloads) == item.seq
            and last.key is item.key
            and last.shape == item.shape
        ):
            last.payloads.append(item.payload)
        else:
            segments.append(
                Segment(
                    item.key,
                    item.shape,
                    [item.payload],
                    item.seq,
                    isolated=isolated,
                    attempts=attempts,
                )
            )
    return segments


class Batch(NamedTuple):
    """Items cut from the queue for one executor call."""

    parts: list[Part]  # a segment's slice each, oldest first
    runs: list[tuple[int, int]]  # their sequence numbers: (start, count), merged
    size: int  # items in all
    attempts: int  # failed attempts so far (an isolated item; else 0)


class PendingQueue:
    """Sequence numbers, and the accepted items that wait for the executor.

    Counts: ``accepted`` sequence numbers given (also to items that never queue: markers,
    see ``number``), ``queued`` items in the queue, ``delayed`` items out of it waiting
    out a retry's back-off (``defer``, then ``requeue``).

    The *lane* is ``put()``'s shortcut: while it is open, the next item of ``lane_fn``
    (the caller's function, opaque here) with one plain argument joins ``lane``, the
    last segment, through ``join_lane`` without the general path's checks. Anything
    that could make that wrong closes it: another segment or a number taken after it,
    the segment cut for a batch, ``close_lane()``.
    """

    __slots__ = ("accepted", "delayed", "lane", "lane_fn", "queued", "segments")

    def __init__(self) -> None:
        self.segments: deque[Segment] = deque()
        self.accepted = 0
        self.queued = 0
        self.delayed = 0
        self.lane_fn: Any = NO_LANE_FN
        self.lane = NO_LANE

    def __bool__(self) -> bool:
        """Whether an item is queued."""
        return bool(self.queued)

    @property
    def head(self) -> Segment:
        """The oldest segment (the queue must not be empty)."""
        return self.segments[0]

    def join_lane(self, payload: Any) -> int:
        """Queue an item of ``lane_fn`` (the lane is open); return its sequence number."""
        seq = self.accepted
        self.accepted = seq + 1
        self.lane.payloads.append(payload)
        self.queued += 1
        return seq

    def accept(self, key: Any, shape: int, payload: Any) -> int:
        """Queue one item; return its sequence number."""
        tail = self._tail(key, shape)
        if tail is not self.lane:  # the lane's segment is no longer the last
            self.close_lane()
        seq = self.accepted
        self.accepted = seq + 1
        if tail is not None:
            tail.payloads.append(payload)
        else:
            self.segments.append(Segment(key, shape, [payload], seq))
        self.queued += 1
        return seq

    def accept_many(self, key: Any, shape: int, payloads: list[Any]) -> None:
        """Queue consecutive items. ``payloads`` becomes the queue's, which changes it
        as batches are cut: the caller must not use it again."""
        self.close_lane()
        tail = self._tail(key, shape)
        seq = self.accepted
        self.accepted = seq + len(payloads)
        if tail is not None:
            tail.payloads.extend(payloads)
        else:
            self.segments.append(Segment(key, shape, payloads, seq))
        self.queued += len(payloads)

    def number(self) -> int:
        """A sequence number for an item that does not queue (its outcome is known)."""
        self.close_lane()
        seq = self.accepted
        self.accepted = seq + 1
        return seq

    def open_lane(self, fn: Any, key: Any, shape: int) -> None:
        """Let the next items of ``fn`` join the last segment, if it is of ``key`` and
        ``shape`` and took the last item accepted."""
        tail = self._tail(key, shape)
        if tail is not None:
            self.lane_fn, self.lane = fn, tail
        else:
            self.close_lane()

    def close_lane(self) -> None:
        self.lane_fn, self.lane = NO_LANE_FN, NO_LANE

    def _tail(self, key: Any, shape: int) -> Segment | None:
        """The last segment, if the next item of ``key`` and ``shape`` continues it."""
        if self.segments:
            tail = self.segments[-1]
            if (
                tail.start + len(tail.payloads) == self.accepted
                and tail.key is key
                and tail.shape == shape
                and not tail.isolated
            ):
                return tail
        return None

    def cut(self, size: int, size_of: Callable[[Any], int]) -> Batch:
        """Take up to ``size`` items, oldest first; a batch holds items of another
        function only up to that function's own batch size, ``size_of(key)``. An
        isolated item goes alone. The queue must not be empty."""
        segments = self.segments
        head = segments[0]
        if head.isolated:
            segments.popleft()
            count = len(head.payloads)  # one: an isolated segment holds one item
            self.queued -= count
            part = Part(head.key, head.shape, head.payloads)
            return Batch([part], [(head.start, count)], count, head.attempts)
        parts: list[Part] = []
        runs: list[tuple[int, int]] = []
        taken = 0
        while size and segments:
            segment = segments[0]
            if segment.isolated:
                break
            if parts and segment.key is not parts[-1].key:
                # Another function: its own batch size caps the batch, so that its items
                # do not fill a batch sized for cheaper ones.
                size = min(size, size_of(segment.key) - taken)
                if size <= 0:
                    break
            available = len(segment.payloads)
            take = min(size, available)
            if take == available:
                segments.popleft()
                if segment is self.lane:
                    self.close_lane()
                payloads = segment.payloads
            else:
                # The segment keeps only what is still queued: a producer that stays
                # ahead appends to it for ever, so what it handed out must not stay.
                # Deleted in place (the queue owns its lists): no copy of the rest.
                payloads = segment.payloads[:take]
                del segment.payloads[:take]
            start = segment.start
            segment.start += take
            parts.append(Part(segment.key, segment.shape, payloads))
            if runs and runs[-1][0] + runs[-1][1] == start:
                runs[-1] = (runs[-1][0], runs[-1][1] + take)
            else:
                runs.append((start, take))
            size -= take
            taken += take
        self.queued -= taken
        return Batch(parts, runs, taken, 0)

    def defer(self, count: int) -> None:
        """``count`` items wait out a back-off before ``requeue(..., deferred=True)``."""
        self.delayed += count

    def requeue(self, segments: list[Segment], *, deferred: bool = False) -> None:
        """Queue items to run (again), ahead of newer work (``segments_of``);
        ``deferred``: they were counted by ``defer``."""
        count = sum(len(segment.payloads) for segment in segments)
        if deferred:
            self.delayed -= count
        self.segments.extendleft(reversed(segments))
        self.queued += count

    def clear(self) -> None:
        """Drop every queued and delayed item (the pipeline stopped)."""
        self.segments.clear()
        self.queued = self.delayed = 0
        self.close_lane()
