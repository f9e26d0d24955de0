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
        return self.capacity - self._free  # may exceed capacity just after a shrink

    @property
    def free(self) -> int:
        """Slots free now (none while more are occupied than a shrunk capacity allows)."""
        return max(self._free, 0)

    @property
    def waiting(self) -> int:
        """Waiters queued for a slot (not counting a granted one)."""
        return len(self.queue)

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is ahead in the queue."""
        if self._free > 0 and not self.queue and self._granted is None:
            self._free -= 1
            return True
        return False

    def try_acquire_many(self, wanted: int) -> int:
        """Take up to ``wanted`` free slots now (none if anybody is queued); how many."""
        if self.queue or self._granted is not None or self._free <= 0:
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

    def resize(self, capacity: int) -> W | None:
        """Change the number of slots. Returns a waiter granted a new slot, to be woken.

        Shrinking below the slots occupied takes none back: admissions stop until enough
        are released.
        """
        if capacity < 1:
            raise ValueError(f"window capacity must be >= 1, got {capacity}")
        self._free += capacity - self.capacity
        self.capacity = capacity
        return self._grant_next()

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
        if self._granted is None and self._free > 0 and self.queue:
            self._free -= 1
            self._granted = self.queue.popleft()
            return self._granted
        return None


# The automatic window (window="auto"). It starts where a fixed default would, then holds
# about WINDOW_BYTES (32 MiB: what 1024 items of 32 KiB take) of pickled arguments and
# results, measured as batches travel, within
# [AUTO_WINDOW_MIN_PER_WORKER * workers, AUTO_WINDOW_MAX] items. Tiny items get a window
# large enough for batches of thousands, so that the fixed cost of an executor call is
# spread thin; 1 MiB items get a few dozen, so that memory stays flat.
AUTO_WINDOW_START = 1024
AUTO_WINDOW_MAX = 131072
AUTO_WINDOW_MIN_PER_WORKER = 4
WINDOW_BYTES = 32 * 1024 * 1024

# Weight of the newest batch in the running average of bytes per item. A batch of larger
# items counts in full at once (the window shrinks at once); smaller ones pull the
# average down gradually (the window grows over several batches).
BYTES_SMOOTHING = 0.25


class WindowSizer:
    """Chooses the window's capacity from the pickled size of items (pure).

    Arguments are measured when a batch is pickled for a worker, results when it comes
    back; an item occupies the window from acceptance until the consumer takes it, so
    it is charged both.
    """

    __slots__ = ("_arguments", "_maximum", "_minimum", "_results", "arguments_measured", "budget")

    def __init__(
        self,
        workers: int,
        *,
        budget: int = WINDOW_BYTES,
        maximum: int = AUTO_WINDOW_MAX,
    ) -> None:
        self.budget = budget
        self._maximum = maximum
        self.set_workers(workers)
        self._arguments: float | None = None  # bytes per item
        self.arguments_measured = 0  # batches whose arguments were measured
        self._results: float | None = None

    @property
    def capacity(self) -> int:
        start = max(self._minimum, min(self._maximum, AUTO_WINDOW_START))
        if self._arguments is None and self._results is None:
            return start
        per_item = max(1.0, (self._arguments or 0.0) + (self._results or 0.0))
        capacity = max(self._minimum, min(self._maximum, int(self.budget / per_item)))
        if self._results is None:
            # Tiny arguments say nothing of the results they make: grow only once
            # results were measured too (shrinking on big arguments is always right).
            capacity = min(capacity, start)
        return capacity

    def set_workers(self, workers: int) -> None:
        """The items that run at once changed (a cluster scaled): the floor follows."""
        self._minimum = min(self._maximum, AUTO_WINDOW_MIN_PER_WORKER * workers)

    def observe_arguments(self, items: int, nbytes: int) -> None:
        self.arguments_measured += 1
        self._arguments = _average(self._arguments, items, nbytes)

    def observe_results(self, items: int, nbytes: int) -> None:
        self._results = _average(self._results, items, nbytes)

    def forget_results(self) -> None:
        """Items of a function whose results were not measured are coming: the results
        measured so far say nothing of theirs, so the window does not exceed its start
        until theirs are measured (a cheap warm-up call must not let a function with
        32 KiB results fill a window sized for tiny ones: +430 MiB in the slow-consumer
        benchmark)."""
        self._results = None


def _average(current: float | None, items: int, nbytes: int) -> float | None:
    if items < 1:
        return current
    newest = nbytes / items
    if current is None or newest >= current:
        return newest
    return current + BYTES_SMOOTHING * (newest - current)
