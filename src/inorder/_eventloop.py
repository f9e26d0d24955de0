"""The few things the pipeline needs from the event loop that anyio does not offer.

* Submitting to an executor with a completion callback that runs on the event-loop thread:
  ``executor.submit`` plus a done-callback that hops onto the loop with
  ``loop.call_soon_threadsafe`` (asyncio, uvloop) or ``TrioToken.run_sync_soon`` (trio).
  Nothing polls and no thread is parked per future; cancelling the returned future
  cancels a job that has not started. Not ``loop.run_in_executor``: it chains an asyncio
  future to every executor future, which costs more than the hop itself
  (docs/decisions/0009).
* Spawning the one task that keeps a pipeline's task group (``_tasks.OwnedTasks``), so
  that a pipeline can be opened in one task and closed in another (``inorder.map``
  starts on the first step of its iteration and stops in ``aclose()``) without
  violating cancel-scope nesting. The pipeline cancels and awaits it before it closes.
* The loop's clock, readable from callbacks that run outside any task (anyio's
  ``current_time()`` needs a task on asyncio), and on asyncio its timers
  (``loop.call_later``), which need no task.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

FutureLike = concurrent.futures.Future[Any]

Callback = Callable[[Any], None]


class LoopBridge:
    """Executor submission and task spawning for the event loop running now."""

    def submit(
        self,
        executor: concurrent.futures.Executor,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        on_done: Callback,
    ) -> FutureLike:
        """Run ``fn(*args)`` in ``executor``; ``on_done(future)`` runs on the loop thread."""
        future = executor.submit(fn, *args)
        self.call_soon_when_done(future, on_done)
        return future

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Start ``fn()`` as a task of its own. It must not raise."""
        raise NotImplementedError

    def now(self) -> float:
        """The loop's clock, the one anyio's deadlines follow."""
        raise NotImplementedError

    has_timers = False
    """Whether ``call_later`` works: the loop has timers that need no task (not trio)."""

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn()`` on the loop in ``delay`` seconds without a task; the function
        returned cancels it. Only where ``has_timers``."""
        raise NotImplementedError

    async def wait(self, future: concurrent.futures.Future[Any]) -> Any:
        """Await a concurrent.futures future without parking a thread on it."""
        done = anyio.Event()
        self.call_soon_when_done(future, lambda _: done.set())
        await done.wait()
        return future.result()

    def call_soon_when_done(self, future: concurrent.futures.Future[Any], fn: Callback) -> None:
        raise NotImplementedError


class _AsyncioBridge(LoopBridge):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        async def runner() -> None:
            await fn()

        task = self._loop.create_task(runner())
        # The loop keeps only weak references to tasks.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def now(self) -> float:
        return self._loop.time()

    has_timers = True

    def call_later(self, delay: float, fn: Callable[[], None]) -> Callable[[], None]:
        return self._loop.call_later(delay, fn).cancel

    def call_soon_when_done(self, future: concurrent.futures.Future[Any], fn: Callback) -> None:
        loop = self._loop

        def relay(f: concurrent.futures.Future[Any]) -> None:
            # A closed loop raises RuntimeError: nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, f)

        future.add_done_callback(relay)


class _TrioBridge(LoopBridge):
    def __init__(self, token: Any) -> None:
        self._token = token

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        import trio

        async def runner() -> None:
            await fn()

        trio.lowlevel.spawn_system_task(runner, context=contextvars.copy_context())

    def now(self) -> float:
        import trio

        return trio.current_time()

    def call_soon_when_done(self, future: concurrent.futures.Future[Any], fn: Callback) -> None:
        import trio

        token = self._token

        def relay(f: concurrent.futures.Future[Any]) -> None:
            # After the run ended nobody is waiting any more.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn, f)

        future.add_done_callback(relay)


def current_bridge() -> LoopBridge:
    """The bridge for the event loop of the calling task."""
    native = anyio.lowlevel.current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        return _AsyncioBridge(native)
    return _TrioBridge(native)
