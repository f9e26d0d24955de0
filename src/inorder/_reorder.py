"""The reorder buffer: finished items wait here, keyed by sequence number, for their turn.

Pure code: no event loop in here.

Results arrive in *runs*: a batch of consecutive sequence numbers that a worker finished
together. Keeping a run as one heap entry makes the cost per batch, not per item, and lets
the pipeline decode a batch's results lazily, when its first item is about to be yielded.

In ordered mode an item is *ready* when every item before it has been popped. In
unordered mode an item is ready as soon as it arrives, in arrival order, except for
*barriers* (markers): a barrier is ready only once every item before it has been popped,
so a marker means "everything put before me is done" in both modes.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

Run = tuple[int, Sequence[T]]


class ReorderBuffer(Generic[T]):
    """Holds finished items until they may be popped.

    ``add(start, items)`` stores ``items[i]`` as sequence number ``start + i``. Every
    sequence number must be added exactly once; sequence numbers start at 0.
    ``pop()`` returns ``(seq, item)`` for the next ready item, or ``None``.
    """

    __slots__ = (
        "_arrived",
        "_barriers",
        "_count",
        "_done",
        "_head",
        "_head_index",
        "_head_start",
        "_heap",
        "_next",
        "ordered",
    )

    def __init__(self, *, ordered: bool = True) -> None:
        self.ordered = ordered
        self._heap: list[Run[T]] = []  # ordered mode: runs by start
        self._arrived: deque[Run[T]] = deque()  # unordered mode: runs by arrival
        self._barriers: list[Run[T]] = []  # unordered mode: barrier runs by start
        self._done: list[tuple[int, int]] = []  # unordered mode: popped runs [start, end)
        self._head: Sequence[T] = ()
        self._head_start = 0
        self._head_index = 0
        # Ordered mode: the sequence number to pop next. Unordered mode: the low-water
        # mark, every sequence number below it has been popped.
        self._next = 0
        self._count = 0

    def __len__(self) -> int:
        """Items held, ready or not."""
        return self._count

    @property
    def next_seq(self) -> int:
        """The lowest sequence number not popped yet."""
        return self._next

    def add(self, start: int, items: Sequence[T], *, barrier: bool = False) -> None:
        """Store a run of finished items numbered ``start``, ``start + 1``, ...

        ``barrier``: in unordered mode, hold the run until everything before it is
        popped (ordered mode holds every run that long anyway).
        """
        n = len(items)
        if n == 0:
            return
        if start < self._next:
            raise ValueError(f"sequence number {start} was already popped")
        if self.ordered:
            heapq.heappush(self._heap, (start, items))
        elif barrier:
            heapq.heappush(self._barriers, (start, items))
        else:
            self._arrived.append((start, items))
        self._count += n

    def ready(self) -> bool:
        """Whether ``pop()`` would return an item now."""
        if self._head_index < len(self._head):
            return True
        if self.ordered:
            return bool(self._heap) and self._heap[0][0] == self._next
        return bool(self._arrived) or self._barrier_ready()

    def pop(self) -> tuple[int, T] | None:
        """The next ready ``(seq, item)``, or ``None`` if nothing is ready."""
        index = self._head_index
        if index >= len(self._head):
            if not self._advance():
                return None
            index = 0
        head = self._head
        item = head[index]
        self._head_index = index + 1
        self._count -= 1
        seq = self._head_start + index
        if self.ordered:
            self._next = seq + 1
        elif index + 1 == len(head):
            self._finished(self._head_start, seq + 1)
        return seq, item

    def pop_run(self) -> Run[T] | None:
        """The next ready run whole, as ``(start, items)``, or ``None``.

        The consumer takes a run at once and hands its items out itself, which keeps the
        per-item cost of the buffer at zero. The run counts as popped from here on.
        """
        index = self._head_index
        if index < len(self._head):  # the rest of a run that pop() started on
            start = self._head_start + index
            items = self._head[index:]
        elif self._advance():
            start, items = self._head_start, self._head
        else:
            return None
        self._head = ()
        self._head_index = 0
        end = start + len(items)
        self._count -= len(items)
        if self.ordered:
            self._next = end
        else:
            self._finished(start, end)
        return start, items

    def clear(self) -> int:
        """Drop every held item; returns how many were dropped."""
        dropped = self._count
        self._heap.clear()
        self._arrived.clear()
        self._barriers.clear()
        self._head = ()
        self._head_index = 0
        self._count = 0
        return dropped

    def _advance(self) -> bool:
        if self.ordered:
            heap = self._heap
            if not heap or heap[0][0] != self._next:
                return False
            self._head_start, self._head = heapq.heappop(heap)
        elif self._arrived:
            self._head_start, self._head = self._arrived.popleft()
        elif self._barrier_ready():
            self._head_start, self._head = heapq.heappop(self._barriers)
        else:
            return False
        self._head_index = 0
        return True

    def _barrier_ready(self) -> bool:
        return bool(self._barriers) and self._barriers[0][0] == self._next

    def _finished(self, start: int, end: int) -> None:
        """Unordered mode: ``[start, end)`` is popped; raise the low-water mark."""
        done = self._done
        heapq.heappush(done, (start, end))
        while done and done[0][0] == self._next:
            self._next = heapq.heappop(done)[1]
