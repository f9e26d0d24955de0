"""The tasks a pipeline starts: one task group it owns, and one clock for its timers.

A pipeline's tasks (``map()``'s feeder, the clock below) run in a task group that
``OwnedTasks`` opens inside a task of its own, the *keeper*, which runs while the group
has tasks. The pipeline closes it in ``aclose()``: the group is cancelled and the call
returns once every task in it has ended. The group cannot be the caller's, opened by
``async with`` around the caller's code, because a pipeline may be closed from another
task than the one that opened it: ``inorder.map`` opens its pipeline on the first step
of an iteration and closes it in ``aclose()``, and a task group must be left in the task
that entered it. A pipeline that never feeds itself and never waits for a timer starts
no task at all.

``Clock`` runs every timer of the pipeline (the hold on a partial batch, the stall
warning, retry back-offs). On asyncio and uvloop they are the loop's own timers
(``loop.call_later``), which need no task. On trio they run from one task of the group:
a heap of deadlines, and a task that sleeps until the earliest. Timers are set from the
event loop's thread, often from completion callbacks that run outside any task.
``close()`` cancels them all.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from ._eventloop import LoopBridge

logger = logging.getLogger("inorder")


class OwnedTasks:
    """A task group that lives in a task of its own; ``aclose()`` ends it and its tasks.

    The keeper runs while the group has tasks: it ends with the last of them, and the
    next ``start_soon()`` starts a new one. So a pipeline that is dropped without being
    closed leaves no task behind once its tasks are done.
    """

    def __init__(self, bridge: LoopBridge) -> None:
        self._bridge = bridge
        self._group: anyio.abc.TaskGroup | None = None
        self._tasks = 0  # started or waiting, not yet ended
        self._waiting: list[Callable[[], Awaitable[None]]] = []  # until the group is open
        self._starting = False  # a keeper was spawned and has not opened its group yet
        self._closing = False
        self._keepers: list[anyio.Event] = []  # set when its keeper has ended

    @property
    def running(self) -> bool:
        """Whether a keeper task is alive (it ends with the group's last task)."""
        return bool(self._keepers) and not self._keepers[-1].is_set()

    def start_soon(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn()`` in the group. It must not raise: a task's error is a bug, logged."""
        if self._closing:
            return
        self._tasks += 1
        group = self._group
        if group is not None:
            group.start_soon(self._guarded, group, fn)
            return
        self._waiting.append(fn)
        if not self._starting:
            self._starting = True
            ended = anyio.Event()
            # A keeper comes and goes with its tasks, many times on a long stream: only
            # those not yet ended are kept (the one ending and the one starting).
            self._keepers = [keeper for keeper in self._keepers if not keeper.is_set()]
            self._keepers.append(ended)
            self._bridge.spawn(functools.partial(self._keep, ended))

    async def aclose(self) -> None:
        """Cancel every task and return once all have ended. Safe to call more than once."""
        self._closing = True
        if self._group is not None:
            self._group.cancel_scope.cancel()
        with anyio.CancelScope(shield=True):
            for ended in self._keepers:
                await ended.wait()

    async def _keep(self, ended: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._starting = False
                for fn in self._waiting:  # even when closing: their cleanup runs
                    group.start_soon(self._guarded, group, fn)
                self._waiting.clear()
                if self._closing:
                    group.cancel_scope.cancel()
                    return
                self._group = group
                await anyio.sleep_forever()
        finally:
            ended.set()

    async def _guarded(
        self, group: anyio.abc.TaskGroup, fn: Callable[[], Awaitable[None]]
    ) -> None:
        try:
            await fn()
        except Exception:  # a bug in inorder: must not end the other tasks, nor crash trio
            logger.exception("a task of an inorder pipeline failed")
        finally:
            self._tasks -= 1
            if self._tasks == 0 and self._group is group:
                self._group = None  # the next start_soon() starts a new keeper
                group.cancel_scope.cancel()


class Clock:
    """Calls functions on the event loop at deadlines, with no task of their own where
    the loop offers timers (asyncio), else from one task of ``tasks`` (trio)."""

    def __init__(self, tasks: OwnedTasks, bridge: LoopBridge) -> None:
        self._tasks = tasks
        self._bridge = bridge
        self._now = bridge.now
        self._closed = False
        # The loop's timers not yet fired or cancelled, by their own cancel function.
        self._loop_timers: set[Callable[[], None]] = set()
        # (deadline, order, [fn]): the list is emptied when the timer is cancelled.
        self._heap: list[tuple[float, int, list[Callable[[], None]]]] = []
        self._order = itertools.count()
        self._running = False
        self._sleeping_until = float("inf")
        self._wake: anyio.Event | None = None

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` in ``delay`` seconds, unless the function returned is called
        first. ``fn`` must not raise."""
        if self._closed:
            return _nothing
        if self._bridge.has_timers:
            return self._call_on_loop(delay, fn)
        deadline = self._now() + delay
        slot = [fn]
        heapq.heappush(self._heap, (deadline, next(self._order), slot))
        if not self._running:
            self._running = True
            self._tasks.start_soon(self._run)
        elif deadline < self._sleeping_until and self._wake is not None:
            self._wake.set()
        return slot.clear

    def _call_on_loop(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        timers = self._loop_timers

        def fire() -> None:
            timers.discard(cancel_timer)
            fn()

        def cancel_timer() -> None:
            timers.discard(cancel_timer)
            cancel_handle()

        cancel_handle = self._bridge.call_later(delay, fire)
        timers.add(cancel_timer)
        return cancel_timer

    def close(self) -> None:
        """Cancel every timer; later ones are never set (the task ends with ``tasks``)."""
        self._closed = True
        for cancel_timer in list(self._loop_timers):
            cancel_timer()
        for _, _, slot in self._heap:
            slot.clear()

    async def _run(self) -> None:
        heap = self._heap
        try:
            while heap:
                deadline = heap[0][0]
                wake = self._wake = anyio.Event()
                self._sleeping_until = deadline
                with anyio.move_on_after(max(0.0, deadline - self._now())):
                    await wake.wait()
                self._sleeping_until = float("inf")
                now = self._now()
                while heap and heap[0][0] <= now:
                    _, _, slot = heapq.heappop(heap)
                    for fn in slot:
                        fn()
        finally:
            self._running = False
            self._wake = None


def _nothing() -> None:
    pass
