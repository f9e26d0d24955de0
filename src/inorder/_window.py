"""Fair admission to the window: a bounded number of slots, first come, first served.

Pure code: no event loop in here. The pipeline pairs each waiter with an event and calls
these methods from the event-loop thread only.

Why grants go out one at a time: a waiter learns that it got a slot only when its task
runs again, and it takes its sequence number then. Trio deliberately shuffles the order in
which woken tasks run, so waking two waiters at once could hand the lower sequence number
to the one that came second. With a single outstanding grant, the granted waiter takes its
number and only then passes the next grant on, so numbers follow arrival order on every
event loop. (asyncio.Queue chains its wake-ups the same way.)
"""

from __future__ import annotations

import contextlib
from collections import deque
from typing import Generic, TypeVar

W = TypeVar("W")


class Window(Generic[W]):
    """A counter of ``capacity`` slots with a FIFO queue of waiters.

    A slot is *occupied* from the moment it is taken (``try_acquire`` or a grant) until
    ``release``. The caller must treat a granted waiter as holding a slot: it either
    ``confirm``s (keeps it) or ``withdraw``s (gives it back).
    """

    __slots__ = ("_free", "_granted", "capacity", "queue")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._free = capacity
        # Read-only outside this class: its truth value tells the consumer's fast path
        # whether a producer is waiting for room.
        self.queue: deque[W] = deque()
        self._granted: W | None = None

    @property
    def occupied(self) -> int:
        """Slots taken, including one granted to a waiter that has not resumed yet."""
        return self.capacity - self._free

    @property
    def waiting(self) -> int:
        """Waiters queued for a slot (not counting a granted one)."""
        return len(self.queue)

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is ahead in the queue."""
        if self._free and not self.queue and self._granted is None:
            self._free -= 1
            return True
        return False

    def try_acquire_many(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots now (none if anybody is queued); how many."""
        if self.queue or self._granted is not None:
            return 0
        taken = min(wanted, self._free)
        self._free -= taken
        return taken

    def enqueue(self, waiter: W) -> None:
        """Queue ``waiter``; it is woken through the return value of a later call."""
        self.queue.append(waiter)

    def release(self) -> W | None:
        """Free one slot. Returns the waiter that was granted it, which must be woken."""
        return self.release_many(1)

    def release_many(self, count: int) -> W | None:
        """Free ``count`` slots at once. Returns the waiter granted one, to be woken;
        the next grants follow, one at a time, as each granted waiter confirms."""
        free = self._free + count
        if free > self.capacity:
            raise RuntimeError("Window released more slots than were occupied (no slot occupied)")
        self._free = free
        if self.queue and self._granted is None:
            return self._grant_next()
        return None

    def confirm(self, waiter: W) -> W | None:
        """The granted ``waiter`` resumed and keeps its slot. Returns the next to wake."""
        if self._granted is not waiter:
            raise RuntimeError("Window.confirm() called by a waiter that holds no grant")
        self._granted = None
        return self._grant_next()

    def withdraw(self, waiter: W) -> W | None:
        """``waiter`` gives up (cancelled, refused). Returns the waiter to wake instead."""
        if self._granted is waiter:
            self._granted = None
            self._free += 1
            return self._grant_next()
        with contextlib.suppress(ValueError):  # already dropped by drain()
            self.queue.remove(waiter)
        return None

    def drain(self) -> list[W]:
        """Remove every queued waiter (the window is closing) and return them."""
        drained = list(self.queue)
        self.queue.clear()
        if self._granted is not None:
            drained.insert(0, self._granted)
            self._granted = None
            self._free += 1
        return drained

    def _grant_next(self) -> W | None:
        if self._granted is None and self._free and self.queue:
            self._free -= 1
            self._granted = self.queue.popleft()
            return self._granted
        return None
