"""The reorder buffer: finished items wait here, keyed by sequence number, for their turn.

Pure code: no event loop in here.

Results arrive in *runs*: a batch of consecutive sequence numbers that a worker finished
together. Keeping a run as one heap entry makes the cost per batch, not per item, and lets
the pipeline decode a batch's results lazily, when its first item is about to be yielded.

In ordered mode an item is *ready* when every item before it has been popped; in unordered
mode every item is ready as soon as it arrives, in arrival order.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Holds finished items until they may be popped.

    ``add(start, items)`` stores ``items[i]`` as sequence number ``start + i``. Every
    sequence number must be added exactly once; in ordered mode they must start at 0.
    ``pop()`` returns ``(seq, item)`` for the next ready item, or ``None``.
    """

    __slots__ = ("_count", "_head", "_head_index", "_head_start", "_heap", "_next", "ordered")

    def __init__(self, *, ordered: bool = True) -> None:
        self.ordered = ordered
        # Ordered mode: a min-heap of (start, items); unordered mode: a FIFO of runs.
        self._heap: list[tuple[int, Sequence[T]]] | deque[tuple[int, Sequence[T]]] = (
            [] if ordered else deque()
        )
        self._head: Sequence[T] = ()
        self._head_start = 0
        self._head_index = 0
        self._next = 0  # ordered mode: the sequence number that must be popped next
        self._count = 0

    def __len__(self) -> int:
        """Items held, ready or not."""
        return self._count

    @property
    def next_seq(self) -> int:
        """Ordered mode: the sequence number the consumer is waiting for."""
        return self._next

    def add(self, start: int, items: Sequence[T]) -> None:
        """Store a run of finished items numbered ``start``, ``start + 1``, ..."""
        n = len(items)
        if n == 0:
            return
        if self.ordered:
            if start < self._next:
                raise ValueError(f"sequence number {start} was already popped")
            heapq.heappush(self._heap, (start, items))  # type: ignore[arg-type]
        else:
            self._heap.append((start, items))
        self._count += n

    def ready(self) -> bool:
        """Whether ``pop()`` would return an item now."""
        if self._head_index < len(self._head):
            return True
        if not self._heap:
            return False
        return not self.ordered or self._heap[0][0] == self._next

    def pop(self) -> tuple[int, T] | None:
        """The next ready ``(seq, item)``, or ``None`` if nothing is ready."""
        index = self._head_index
        if index >= len(self._head) and not self._advance():
            return None
        index = self._head_index
        item = self._head[index]
        self._head_index = index + 1
        self._count -= 1
        seq = self._head_start + index
        if self.ordered:
            self._next = seq + 1
        return seq, item

    def clear(self) -> int:
        """Drop every held item; returns how many were dropped."""
        dropped = self._count
        self._heap.clear()
        self._head = ()
        self._head_index = 0
        self._count = 0
        return dropped

    def _advance(self) -> bool:
        heap = self._heap
        if not heap:
            return False
        if self.ordered:
            if heap[0][0] != self._next:
                return False
            self._head_start, self._head = heapq.heappop(heap)  # type: ignore[arg-type]
        else:
            self._head_start, self._head = heap.popleft()  # type: ignore[union-attr]
        self._head_index = 0
        return True
