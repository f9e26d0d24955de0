"""``inorder.imap``: the pipeline for code without an event loop.

A plain, synchronous program iterates the results; the pipeline runs on an event loop
in a thread of the iterator's own (an anyio blocking portal), and results cross over a
list at a time (``pipe.chunks()``), so each costs the program a step of a plain ``for``.
Nothing of that thread is visible, and it ends with the iterator: when the results run
out, on ``close()``, on leaving ``with``, or when the iterator is collected (the portal
then closes as a dropped generator does, cancelling the pipeline, which stops its
workers).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio.from_thread

from ._feeding import check_map_arguments
from ._options import Options
from ._pipeline import OrderedPipeline

T = TypeVar("T")


def _in_event_loop() -> bool:
    """Whether this thread runs an event loop (asyncio's, uvloop's or trio's) now."""
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        pass
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_task()
            return True
        except RuntimeError:
            pass
    return False


class Imap(Generic[T]):
    """The iterator returned by ``inorder.imap``: results in input order, from worker
    processes, for code without an event loop.

    Workers start on the first ``next()`` (or on ``with``) and stop when the results run
    out, on ``close()``, on leaving ``with``, or when the iterator is collected. An item's
    error is raised by ``next()`` at its position (``on_error="raise"``); iterating again
    goes on with the next item.
    """

    def __init__(
        self, fn: Callable[..., T], iterables: tuple[Iterable[Any], ...], options: Options
    ) -> None:
        check_map_arguments(fn, iterables, "imap")
        self._fn = fn
        self._iterables = iterables
        self._options = options
        self._ready: deque[T] = deque()
        self._portal_cm: contextlib.AbstractContextManager[Any] | None = None
        self._pipe_cm: contextlib.AbstractContextManager[OrderedPipeline] | None = None
        self._portal: Any = None
        self._chunks: AsyncIterator[list[T]] | None = None
        self._finished = False

    def __iter__(self) -> Imap[T]:
        return self

    def __next__(self) -> T:
        while not self._ready:
            if self._finished:
                raise StopIteration
            if self._chunks is None:
                self._start()
            assert self._chunks is not None
            try:
                chunk = self._portal.call(anext, self._chunks, None)
            except BaseException:
                if self._finished:  # closed meanwhile
                    raise StopIteration from None
                raise
            if chunk is None:
                self.close()
                raise StopIteration
            self._ready.extend(chunk)
        return self._ready.popleft()

    def __enter__(self) -> Imap[T]:
        if self._chunks is None and not self._finished:
            self._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _start(self) -> None:
        if _in_event_loop():
            raise RuntimeError(
                "inorder.imap() blocks: it cannot run inside an event loop. In async "
                "code, use 'async with inorder.map(fn, items) as results: async for ...'"
            )
        self._portal_cm = anyio.from_thread.start_blocking_portal(name="inorder-imap")
        self._portal = self._portal_cm.__enter__()
        try:
            self._pipe_cm = self._portal.wrap_async_context_manager(OrderedPipeline(self._options))
            pipe = self._pipe_cm.__enter__()
            self._portal.call(pipe.map, self._fn, *self._iterables)
            self._chunks = self._portal.call(pipe.chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers and the event loop's thread; the iteration ends. Safe to call
        more than once."""
        if self._finished:
            return
        self._finished = True
        self._ready.clear()
        pipe_cm, self._pipe_cm = self._pipe_cm, None
        portal_cm, self._portal_cm = self._portal_cm, None
        try:
            if pipe_cm is not None:
                pipe_cm.__exit__(None, None, None)
        finally:
            if portal_cm is not None:
                portal_cm.__exit__(None, None, None)


def imap(fn: Callable[..., T], /, *iterables: Iterable[Any], **options: Any) -> Imap[T]:
    """``fn`` over the iterables (zipped, as the builtin ``map``), run in parallel in
    worker processes, the results in input order: a synchronous, lazy iterator for code
    without an event loop, a drop-in for ``multiprocessing.Pool.imap`` with the
    pipeline's options (``workers``, ``window``, ``ordered``, ``on_error``, ``timeout``,
    ``retries``, ``initializer``, ``max_tasks_per_child``, ``batch``, ``executor``,
    ``progress``, ...) and no ``chunksize`` to tune::

        with inorder.imap(transform, rows, workers=4) as results:
            for result in results:
                ...

    The options are checked here (``TypeError`` or ``ValueError`` naming the option).
    Leaving early (``break`` in ``with``, an exception, Ctrl-C) stops the workers; so
    does collecting an iterator that was not closed. Called inside a running event loop
    it raises ``RuntimeError``: use ``inorder.map`` there.
    """
    return Imap(fn, iterables, Options(**options))


for _public in (imap, Imap):
    _public.__module__ = "inorder"
del _public
