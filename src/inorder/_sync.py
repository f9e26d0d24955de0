"""The pipeline for code without an event loop: ``SyncPipeline``, ``inorder.imap`` and
``with inorder.WorkerPool()``.

A plain, synchronous program calls these; the pipeline runs on an event loop in a thread
of the object's own (an anyio blocking portal), and each call crosses over to it. Results
cross a list at a time (``pipe.chunks()``), so each costs the program a step of a plain
``for``. Nothing of that thread is visible, and it ends with its owner: leaving ``with``,
``Imap.close()``, or the owner being collected (the portal then closes as a dropped
generator does, cancelling the pipeline, which stops its workers). A pipeline on a
``WorkerPool`` entered with ``with`` runs on the pool's thread instead, since a pool
serves the event loop that entered it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import itertools
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, Unpack

import anyio.abc
import anyio.from_thread

from ._errors import PipelineClosedError
from ._feeding import check_map_arguments
from ._options import Options, PipelineOptions, check_positive_int
from ._pipeline import OrderedPipeline
from ._stats import PipelineStatistics
from ._workerpool import WorkerPool

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


def _refuse_inside_a_loop(what: str, instead: str) -> None:
    if _in_event_loop():
        raise RuntimeError(
            f"{what} blocks: it cannot run inside an event loop. In async code, use {instead}"
        )


class _LoopThread:
    """An event loop in a thread of its own: calls into it, the pipelines running on it,
    and its end."""

    def __init__(self, name: str) -> None:
        self._portal_cm = anyio.from_thread.start_blocking_portal(name=name)
        self.portal = self._portal_cm.__enter__()
        # Known where a pipeline may be ended from a finalizer: a pool's thread.
        self.loop: asyncio.AbstractEventLoop | None = None
        # Each pipeline running here: the event that ends it, and its end. Only events
        # and futures: an owner dropped by its program is not kept alive by its entry.
        self.pipelines: dict[anyio.Event, concurrent.futures.Future[None]] = {}

    def run_pipeline(
        self,
        pipe: OrderedPipeline,
        feed: tuple[Callable[..., Any], tuple[Iterable[Any], ...]] | None,
    ) -> tuple[concurrent.futures.Future[None], anyio.Event]:
        """Start ``pipe`` here (``map()``ped with ``feed``): its end, and the event that
        ends it."""
        future, stopping = self.portal.start_task(_run_pipeline, pipe, feed)
        pipelines = self.pipelines  # not self: the loop's side must not keep this object
        pipelines[stopping] = future
        future.add_done_callback(lambda _: pipelines.pop(stopping, None))
        return future, stopping

    def end_pipeline(self, future: concurrent.futures.Future[None], stopping: anyio.Event) -> None:
        """End that pipeline and wait until it has stopped its workers (its error, if
        it failed, is raised). A pipeline that already ended (its pool's block ended
        it) needs no call."""
        if not future.done():
            self.portal.call(stopping.set)
        future.result()

    def end_pipeline_soon(self, stopping: anyio.Event) -> None:
        """End that pipeline without waiting: from any thread, this loop's own included
        (a finalizer may run in any of them)."""
        assert self.loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has ended: so has the pipeline
            self.loop.call_soon_threadsafe(stopping.set)

    def end_pipelines(self) -> None:
        """End every pipeline still running here, whatever its owner did, and wait for
        them: a pool's pipelines cannot outlive the pool. They stop together."""
        running = list(self.pipelines.items())
        for stopping, _ in running:
            self.portal.call(stopping.set)
        # An abandoned pipeline's error has no one to go to: wait, do not raise.
        concurrent.futures.wait([future for _, future in running])

    def close(self, error: BaseException | None = None) -> None:
        """End the loop and its thread; with ``error``, tasks still running are cancelled."""
        if error is None:
            self._portal_cm.__exit__(None, None, None)
        else:
            self._portal_cm.__exit__(type(error), error, error.__traceback__)


# The thread of each WorkerPool entered with ``with``: its pipelines run there.
_POOL_THREADS: weakref.WeakKeyDictionary[WorkerPool, _LoopThread] = weakref.WeakKeyDictionary()


def enter_pool(pool: WorkerPool) -> None:
    """Start ``pool``'s workers from code without an event loop (``with pool:``)."""
    _refuse_inside_a_loop("'with inorder.WorkerPool()'", "'async with inorder.WorkerPool()'")
    thread = _LoopThread("inorder-pool-loop")
    try:
        thread.loop = thread.portal.call(_enter_pool_here, pool)
    except BaseException as error:
        thread.close(error)
        raise
    _POOL_THREADS[pool] = thread


async def _enter_pool_here(pool: WorkerPool) -> asyncio.AbstractEventLoop:
    await pool.__aenter__()
    return asyncio.get_running_loop()


def exit_pool(pool: WorkerPool, error: BaseException | None) -> None:
    """Stop ``pool``'s workers and its thread (``with pool:`` ends). Pipelines still
    running on it (their programs left neither ``with`` nor dropped them, or dropped
    them in a reference cycle not collected yet) end first."""
    thread = _POOL_THREADS.pop(pool, None)
    if thread is None:
        return
    try:
        thread.end_pipelines()
        thread.portal.call(pool.aclose)
    finally:
        thread.close(error)


def pipelines_on(pool: WorkerPool) -> list[concurrent.futures.Future[None]]:
    """The pipelines running on ``pool``'s thread (entered with ``with``), by their ends."""
    thread = _POOL_THREADS.get(pool)
    return [] if thread is None else list(thread.pipelines.values())


async def _run_pipeline(
    pipe: OrderedPipeline,
    feed: tuple[Callable[..., Any], tuple[Iterable[Any], ...]] | None,
    *,
    task_status: anyio.abc.TaskStatus[anyio.Event],
) -> None:
    """A SyncPipeline's pipeline on its loop, from ``with`` until the event it reports
    as started is set; with ``feed``, ``map()``ped. It holds nothing of the
    SyncPipeline, which is collected as soon as the program drops it (the loop's thread
    then ends with it)."""
    async with pipe:
        stopping = anyio.Event()
        if feed is not None:
            pipe.map(feed[0], *feed[1])
        task_status.started(stopping)
        await stopping.wait()


class SyncPipeline:
    """The synchronous twin of ``OrderedPipeline``, for code without an event loop::

        with inorder.SyncPipeline(workers=4) as pipe:
            pipe.put(transcode, chunk)      # from any thread; waits while the window is full
            ...
            pipe.close()                    # no more items
            for result in pipe:             # in the order the items were put
                ...

    It takes the same options (keywords, or one ``inorder.Options``) and runs an
    ``OrderedPipeline`` on an event loop in a thread of its own, which nothing else sees
    and which ends with the ``with`` block. Its methods are the async pipeline's, made
    synchronous and callable from any thread: ``put()``, ``put_nowait()``,
    ``put_many()``, markers (``put(marker)``), ``map()``, ``close()``,
    ``statistics()``; ``for result in pipe`` (or ``next(pipe)``) and ``pipe.chunks()``
    take the results.

    Leaving ``with`` by any route stops everything (what ``aclose()`` does: results not
    taken are dropped, workers stop); a ``put()`` waiting for room then raises
    ``PipelineClosedError``. On a ``WorkerPool`` entered with ``with``
    (``executor=pool``), the pipeline runs on the pool's thread and uses its workers.
    """

    def __init__(
        self, options: Options | None = None, /, **kwargs: Unpack[PipelineOptions]
    ) -> None:
        self._pipe = OrderedPipeline(options, **kwargs)  # checks the options now
        self._state: Literal["new", "open", "stopped"] = "new"
        # Where the pipeline runs: a thread of its own, or the pool's it runs on.
        self._host: _LoopThread | None = None
        self._pool: WorkerPool | None = None
        # The pipeline's end, and the event that ends it; None unless it started.
        self._running: tuple[concurrent.futures.Future[None], anyio.Event] | None = None
        # On a pool's thread, which outlives this object: ends the pipeline if the
        # program drops this object without leaving ``with``.
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._stream: _Stream | None = None  # what ``for result in pipe`` reads

    @property
    def options(self) -> Options:
        """The pipeline's options, checked and frozen."""
        return self._pipe.options

    @property
    def closed(self) -> bool:
        """Whether the pipeline has stopped accepting items."""
        return self._pipe.closed

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> Self:
        self._open(None)
        return self

    def _open(self, feed: tuple[Callable[..., Any], tuple[Iterable[Any], ...]] | None) -> None:
        """Start the pipeline on its loop and, with ``feed``, ``map()`` it: one trip."""
        if self._state != "new":
            raise RuntimeError(
                "this SyncPipeline was already entered; a pipeline carries one stream, "
                "so create a new one"
            )
        _refuse_inside_a_loop(
            "inorder.SyncPipeline", "'async with inorder.OrderedPipeline(...) as pipe:'"
        )
        executor = self._pipe.options.executor
        if isinstance(executor, WorkerPool):
            shared = _POOL_THREADS.get(executor)
            if shared is None:
                raise RuntimeError(
                    "inorder.imap and SyncPipeline use a WorkerPool entered with 'with "
                    "inorder.WorkerPool(...) as pool:' (one entered with 'async with' "
                    "serves its own event loop: use inorder.map or OrderedPipeline there)"
                )
            host = shared
            self._pool = executor
        else:
            host = _LoopThread("inorder-pipeline")
        self._host = host
        self._state = "open"
        try:
            self._running = host.run_pipeline(self._pipe, feed)
        except BaseException as error:
            self._stop(error)
            raise
        if self._pool is not None:
            self._finalizer = weakref.finalize(self, host.end_pipeline_soon, self._running[1])

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop(exc)

    def _stop(self, error: BaseException | None) -> None:
        if self._state != "open":
            return
        self._state = "stopped"
        running, self._running = self._running, None
        host = self._host
        assert host is not None
        if self._finalizer is not None:
            self._finalizer.detach()
        try:
            if running is not None:
                host.end_pipeline(*running)  # the pipeline has stopped its workers
        finally:
            if self._pool is None:
                host.close(error)  # its own thread

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the pipeline's loop (awaited if a coroutine function)."""
        self._check_open()
        assert self._host is not None
        return self._host.portal.call(fn, *args)

    def _check_open(self) -> None:
        """Refuse a call outside the ``with`` block, or after the block of the pool it
        runs on."""
        if self._state == "open":
            if self._pool is not None and _POOL_THREADS.get(self._pool) is not self._host:
                raise PipelineClosedError(
                    "the WorkerPool this SyncPipeline runs on has left its 'with' block, "
                    "which ended the pipeline: leave the pipeline's block before the pool's"
                )
            return
        if self._state == "new":
            raise RuntimeError(
                "this SyncPipeline was not entered: use 'with inorder.SyncPipeline(...) as pipe:'"
            )
        raise PipelineClosedError(
            "this SyncPipeline's 'with' block has ended: its workers are gone; use the "
            "pipeline inside the block"
        )

    # -- producing ----------------------------------------------------------------------

    def put(self, fn: Any, /, *args: Any, **kwargs: Any) -> int:
        """Submit ``fn(*args, **kwargs)``; return its sequence number (0, 1, 2, ...).

        Waits while the window is full (producers are served first come, first served);
        callable from any thread: one thread's items keep the order its calls returned
        in. ``put(marker)`` with one non-callable argument submits a marker, yielded in
        its place without visiting a worker.

        Raises:
            TypeError: as ``OrderedPipeline.put()``; nothing was accepted.
            PipelineClosedError: after ``close()``, or the pipeline stopped meanwhile.
        """
        seq: int = self._call(functools.partial(self._pipe.put, fn, *args, **kwargs))
        return seq

    def put_nowait(self, fn: Any, /, *args: Any, **kwargs: Any) -> int:
        """Submit as ``put()`` does, or raise ``WindowFullError`` at once when the window
        has no room (nothing accepted)."""
        seq: int = self._call(functools.partial(self._pipe.put_nowait, fn, *args, **kwargs))
        return seq

    def put_many(self, fn: Callable[..., Any], items: Iterable[Any], /) -> None:
        """Submit ``fn(item)`` for each of ``items``, in order, waiting for room as it
        goes (see ``OrderedPipeline.put_many``)."""
        self._call(self._pipe.put_many, fn, items)

    def map(self, fn: Callable[..., Any], /, *iterables: Iterable[Any]) -> Self:
        """Feed ``fn(*items)`` for items drawn from ``iterables`` (like the builtin
        ``map``), then close; returns the pipeline, for ``for result in pipe.map(...)``.

        The iterables are read on the pipeline's thread as the window has room: one
        that blocks (a socket, an interactive stdin) holds back results meanwhile; feed
        those with ``put()`` from a thread of your own. Can be called once.
        """
        self._call(self._pipe.map, fn, *iterables)
        return self

    def close(self) -> None:
        """No more items: iteration ends once every accepted item has been yielded.
        Idempotent; a no-op once the ``with`` block has ended."""
        if self._state == "stopped":
            return
        self._call(self._pipe.close)

    # -- consuming ----------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        """The results, in order. Every loop over the pipeline reads the same stream: a
        loop left early and another started go on where the first stopped, an item's
        error (``on_error="raise"``) ends a loop and the next goes on after it, and
        after the last result iterating again yields nothing."""
        return self._results_stream().items()

    def __next__(self) -> Any:
        return next(self._results_stream().items())

    def _results_stream(self) -> _Stream:
        # Made on first use: a pipeline read only through chunks() (inorder.imap's) is in
        # no reference cycle, so it ends as soon as its owner drops it.
        if self._stream is None:
            self._stream = _Stream(functools.partial(next, _Chunks(self, None), None))
        return self._stream

    def chunks(self, max_items: int | None = None) -> Iterator[list[Any]]:
        """The results, in order, as lists of the results that are ready (at most
        ``max_items``, or 32768): the fastest way to take many small results. An item's
        error (``on_error="raise"``) is raised at its position; iterating again goes on."""
        self._check_open()
        if max_items is not None:
            check_positive_int("max_items", max_items)  # as the pipeline's chunks() does
        return _Chunks(self, max_items)

    async def _next_list(self, max_items: int | None) -> list[Any] | None:
        """The next list of ``pipe.chunks(max_items)`` (the pipeline keeps that
        iterator), None at the end: one trip to the loop per list."""
        return await anext(self._pipe.chunks(max_items), None)

    def statistics(self) -> PipelineStatistics:
        """A frozen snapshot of the pipeline's counters (see ``PipelineStatistics``)."""
        if self._state == "open":
            snapshot: PipelineStatistics = self._call(self._pipe.statistics)
            return snapshot
        return self._pipe.statistics()

    def __repr__(self) -> str:
        return f"<inorder.SyncPipeline {self._state}>"


class _Stream:
    """Results one at a time from lists of them. The items run through a C-level chain
    (no Python call per result); an error from ``next_chunk`` ends that chain, so the
    next read starts another on the same source. ``next_chunk`` returns None at the
    end. The chain holds ``next_chunk`` and a flag, not this object: no reference
    cycle keeps a dropped owner (its thread, its workers) waiting for a collection."""

    def __init__(self, next_chunk: Callable[[], list[Any] | None]) -> None:
        self._next_chunk = next_chunk
        self._broken = [False]  # set by _take when next_chunk raised
        self._items = self._chain()

    def _chain(self) -> Iterator[Any]:
        take = functools.partial(_take, self._next_chunk, self._broken)
        return itertools.chain.from_iterable(iter(take, None))

    def items(self) -> Iterator[Any]:
        if self._broken[0]:
            self._broken[0] = False
            self._items = self._chain()
        return self._items


def _take(next_chunk: Callable[[], list[Any] | None], broken: list[bool]) -> list[Any] | None:
    try:
        return next_chunk()
    except BaseException:
        broken[0] = True
        raise


class _Chunks:
    """``SyncPipeline.chunks()``: lists of results taken from the pipeline's loop. Ends
    for good once the results run out, so iterating again after the end is safe."""

    def __init__(self, pipe: SyncPipeline, max_items: int | None) -> None:
        self._pipe = pipe
        self._max_items = max_items
        self._ended = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> list[Any]:
        if self._ended:
            raise StopIteration
        chunk: list[Any] | None = self._pipe._call(self._pipe._next_list, self._max_items)
        if chunk is None:
            self._ended = True
            raise StopIteration
        return chunk


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
        self._source = _ImapSource(fn, iterables, options)
        self._stream = _Stream(self._source.next_chunk)

    def __iter__(self) -> Iterator[T]:
        return self._stream.items()

    def __next__(self) -> T:
        result: T = next(self._stream.items())
        return result

    def __enter__(self) -> Imap[T]:
        self._source.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and the event loop's thread; the iteration ends. Safe to call
        more than once."""
        self._source.close()


class _ImapSource:
    """Where an ``Imap``'s lists of results come from. It holds nothing of the ``Imap``
    or of its iterator, so a ``for`` loop that holds only the iterator keeps it going,
    and once both are dropped it goes (the pipeline, its thread and its workers with
    it) without waiting for a garbage collection."""

    def __init__(
        self, fn: Callable[..., Any], iterables: tuple[Iterable[Any], ...], options: Options
    ) -> None:
        self._feed = (fn, iterables)
        self._pipe = SyncPipeline(options)
        self._chunks: Iterator[list[Any]] | None = None
        self._finished = False

    def start(self) -> None:
        """Start the workers and the feed, once."""
        if self._chunks is not None or self._finished:
            return
        _refuse_inside_a_loop(
            "inorder.imap()", "'async with inorder.map(fn, items) as results: async for ...'"
        )
        try:
            self._pipe._open(self._feed)
        except BaseException:
            self.close()
            raise
        self._chunks = _Chunks(self._pipe, None)

    def next_chunk(self) -> list[Any] | None:
        if self._finished:
            return None
        self.start()
        assert self._chunks is not None
        try:
            chunk = next(self._chunks, None)
        except BaseException:
            if self._finished:  # closed meanwhile
                return None
            raise
        if chunk is None:
            self.close()
        return chunk

    def close(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._pipe.__exit__(None, None, None)


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
    does collecting an iterator that was not closed. ``executor=pool`` with a
    ``WorkerPool`` entered with ``with`` uses its warm workers. Called inside a running
    event loop it raises ``RuntimeError``: use ``inorder.map`` there.
    """
    return Imap(fn, iterables, Options(**options))


for _public in (imap, Imap, SyncPipeline):
    _public.__module__ = "inorder"
del _public
