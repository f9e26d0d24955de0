"""OrderedPipeline: parallel work, results in submission order, bounded memory.

Data flow (each arrow is synchronous code on the event-loop thread unless marked)::

    producers                                                            consumer
    put(fn, *args) ──▶ window ──▶ pending ──dispatch──▶ executor        async for
    map(fn, iter)     (fair,     (accepted,    │       (worker         ▲
                       bounded)   FIFO)        │        processes)     │
        markers ──────────────────────────────────────────┐ │          │
                                               │          ▼ ▼ (thread hop to the loop)
                                               └─◀── completion ──▶ reorder buffer
                                                     callback        (heap keyed by seq)

One item, ``await pipe.put(fn, x)``, from the producer to ``async for``:

1. **options** (``_options.Options``): checked once, when the pipeline is made.
2. **prepare**: the backend's codec (``_serialize``) turns the call into its key (the
   function, pickled once per pipeline), its call shape and its payload; an argument
   that cannot be pickled raises here, in the producer's frame.
3. **window** (``_window.Window``): a slot per item from ``put()`` until the consumer
   takes its outcome. This bounds memory. ``put()`` waits, first come first served, while
   all slots are taken; the automatic window (``WindowSizer``) follows the items' bytes.
4. **pending queue** (``_pending.PendingQueue``): the item gets its sequence number and
   joins the last queued *segment* if it shares its function and shape (a ``put()``
   that repeats the last function with one plain argument appends directly: the
   *lane*, see ``put``). ``map()``'s feeder (``_feeding``) accepts chunks of items the
   same way, as the window makes room.
5. **dispatch**: while fewer than ``DISPATCHES_PER_WORKER`` executor calls per worker
   are outstanding, a *batch* is cut from the oldest segments (``PendingQueue.cut``), sized
   by ``_batching.BatchSizer`` from the work time workers measured; nothing waits for a
   batch to fill unless the consumer is behind (``_hold.Hold`` decides; the pipeline
   keeps its timer on ``_tasks.Clock``). The batch goes to the backend's executor
   (``_backends``) through ``_eventloop.LoopBridge.submit``.
6. **execution** (``_worker``): in a worker, the segment's function runs on each payload;
   outcomes (values and exceptions) come back pickled together.
7. **completion**: the future's callback runs on the loop thread and files the batch's
   outcomes in the reorder buffer as one *run*, dispatches more, wakes the consumer.
   A batch that came back lost (``BatchLost``: a worker died, an item overran its
   timeout) is planned by ``_recovery.plan_loss`` (run again, run alone, or fail with
   the backend's error) and retried under ``_retry.RetryPolicy``, back-offs on the clock.
8. **delivery** (``_reorder.ReorderBuffer``, ``_cursor.ResultCursor``,
   ``_results.Results``): the consumer takes the next run once it and all before it are
   done and unpickles it in one call; the cursor hands its items out from a list
   (``async for``: a generator step each; ``chunks()``: the list) and raises, returns or
   skips a failure at its position (``on_error``). Outcomes handed out are *settled*:
   their window slots are freed.

``statistics()`` reads each count from the part that owns it: ``accepted`` and ``queued``
from the pending queue, ``in_flight`` here, ``buffered`` from the reorder buffer and the
cursor, ``yielded``, ``skipped`` and ``failed`` from the cursor; so ``accepted == queued +
in_flight + buffered + yielded + skipped`` at every step (tests/test_accounting.py).

The feeder of ``map()`` and the clock's task run in a task group the pipeline owns
(``_tasks.OwnedTasks``); ``aclose()`` ends them with the backend.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
)
from types import TracebackType
from typing import Any, Final, Self, Unpack

import anyio
import anyio.lowlevel

from . import _progress
from ._backends import Backend, BatchLost
from ._backends.dask import DaskBackend, is_dask_client
from ._backends.executor import BorrowedExecutorBackend
from ._backends.process import ProcessBackend
from ._backends.shared import SharedPoolBackend
from ._backends.thread import ThreadBackend
from ._batching import MAX_BATCH_SIZE, BatchSizers
from ._cursor import NEXT_RUN, SKIPPED, InputFailure, ResultCursor
from ._errors import PipelineClosedError, WindowFullError, WorkerCrashedError
from ._eventloop import FutureLike, LoopBridge, current_bridge
from ._feeding import FIRST_MAP_CHUNK, check_map_arguments, feed
from ._hold import Hold
from ._options import Options, PipelineOptions, check_positive_int
from ._pending import Item, PendingQueue, Segment, items_of, segments_of
from ._recovery import plan_loss, plan_retries
from ._reorder import ReorderBuffer
from ._results import Results
from ._retry import RetryPolicy
from ._serialize import (
    PLAIN_TYPES,
    Codec,
    Outcomes,
    OutcomeSlice,
    Part,
    Prepared,
    SerializedFunction,
    resolve,
)
from ._stats import PipelineStatistics
from ._tasks import Clock, OwnedTasks
from ._window import AUTO_WINDOW_START, Window, WindowSizer
from ._worker import ONE, Failure, describe
from ._workerpool import WorkerPool

logger = logging.getLogger("inorder")

# window="auto" (the default): the window follows the pickled size of items, see
# _window.WindowSizer. An int fixes it.

# Executor calls outstanding per worker: one running, one waiting in the executor's
# queue so the worker never idles while a result travels back. More only delays
# cancellation and lets one worker's queue hide work from the others.
DISPATCHES_PER_WORKER = 2

# map()'s feeder keeps at most this many rounds of batches (one per dispatch slot, of
# the current size) queued (see _Intake.read_ahead, docs/decisions/0012).
READ_AHEAD_ROUNDS = 8

# The longest a partial batch waits for more items while the consumer is behind (see
# OrderedPipeline._worth_holding): a safeguard for a consumer that stops taking results
# for a while; a consumer that keeps taking them ends the wait first.
HOLD_SECONDS = 0.005

# The most results chunks() puts in one list when the caller sets no bound: a batch's
# worth at most, so a list is never larger than the largest run already decoded.
MAX_CHUNK_ITEMS = MAX_BATCH_SIZE

# A producer (put() or map()'s feeder) that has waited this long for room while the
# consumer took no result gets a warning on the "inorder" logger, once per pipeline: a
# window filled before anything iterates waits for ever, and says nothing otherwise.
STALL_WARNING_SECONDS = 10.0


class _State:
    """The pipeline's lifecycle. Not an ``enum.Enum``: on CPython 3.11 reading an enum
    member through its class costs about 130 ns (a descriptor call), a plain class
    attribute 15 ns, and ``put()`` reads one per call."""

    NEW: Final = "new"  # constructed, not entered
    OPEN: Final = "open"  # accepting items
    CLOSED: Final = "closed"  # close() called: no more items, results still flow
    STOPPED: Final = "stopped"  # aclose() or exit: workers released, nothing flows


class _Waiter:
    """A producer waiting for a window slot."""

    __slots__ = ("event", "refused")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.refused = False


class OrderedPipeline:
    """Run calls in parallel workers and yield their results in submission order.

    ::

        async with inorder.OrderedPipeline(workers=4, window=1000) as pipe:
            async with anyio.create_task_group() as tg:
                tg.start_soon(produce, pipe)   # await pipe.put(fn, item) ...; pipe.close()
                async for result in pipe:      # in the order the items were put
                    ...

    Args:
        workers: How many items run at once. Default: the CPUs this process may use
            (a shared pool's size; a borrowed executor's; a Dask cluster's threads,
            followed as the cluster scales).
        window: Most items accepted and not yet yielded. ``put()`` waits while the
            window is full, so memory stays flat on endless streams; a slow item holds
            the stream back only once ``window`` items wait behind it. ``"auto"``
            (default) starts at 1024 and follows the pickled size of items to hold
            about 32 MiB, between ``4 * workers`` and 131072 items; an int fixes it.
        executor: ``"process"`` (default; inorder's own process pool, which survives a
            worker's crash; ``forkserver`` on Linux, ``spawn`` elsewhere), ``"thread"``
            (a thread pool: no pickling, but Python code holds the GIL), or any
            ``concurrent.futures.Executor``, which the pipeline uses but never shuts
            down, or an ``inorder.WorkerPool`` that several pipelines share, or a
            ``distributed.Client``: each batch runs as a Dask task on its cluster
            (docs/dask.md); the client is never closed.
        ordered: ``False`` yields results as they complete instead (same bounds).
        on_error: What a failed item yields. ``"raise"`` (default): its exception is
            raised from the iteration at the item's position, with the worker's
            traceback as ``__cause__`` and a note naming the item; iteration may go on
            afterwards. ``"return"``: the exception object is yielded in place.
            ``"skip"``: the item is dropped and logged on the ``"inorder"`` logger.
        batch: Items per executor call. ``"auto"`` (default) starts at one item and
            follows the measured cost of items toward 50 ms of work per call (only
            items already queued are batched: nothing waits for a batch to fill); an
            int fixes the size.
        timeout: Seconds an item may run (each attempt). One that runs longer is
            stopped, its worker process killed with any process the item started and
            replaced, and it yields ``TaskTimeoutError`` at its position. Process
            executor only.
        retries: How many more times a failed item runs (its exception, a crash of
            its worker, a timeout) before its failure is yielded. Each retry waits a
            little longer (50 ms, doubling, at most 2 s) and keeps the item's place.
        retry_on: Exception class(es) that are retried (default ``Exception``, which
            includes ``WorkerCrashedError`` and ``TaskTimeoutError``).
        initializer, initargs: ``initializer(*initargs)`` runs once in every worker
            process before its first item (and in every replacement). If it raises,
            ``async with`` raises; process executor only.
        max_tasks_per_child: A worker process is replaced after running this many
            items (batches are capped at this size); process executor only.
        start_method: How worker processes start: ``"forkserver"`` (the default on
            Linux) or ``"spawn"`` (the default elsewhere, and how macOS and Windows
            run a script: each worker imports the main module, which then needs an
            ``if __name__ == "__main__":`` guard). Process executor only.
        progress: Draw a live progress line on stderr (items done, rate, in flight,
            buffered, failed) while the pipeline runs; only when stderr is a terminal.
            Needs rich (``pip install 'inorder[progress]'``).

    In-flight work (items handed to the executor) is bounded separately from the
    window, at ``2 * workers`` executor calls, so every worker always has its next item
    at hand. ``async with`` starts the workers; leaving it by any route, or
    ``aclose()``, cancels what is pending and stops them.

    The options may come as keywords or as one ``inorder.Options``, checked already:
    ``OrderedPipeline(options)``. ``pipe.options`` is the pipeline's.

    With the process executor a worker that dies (``os._exit``, a signal, the OOM
    killer) is replaced; the item it was running yields ``WorkerCrashedError`` at its
    position and the items caught with it run again, so an item may *execute* more
    than once, but every item's outcome is *delivered* exactly once.
    """

    def __init__(
        self, options: Options | None = None, /, **kwargs: Unpack[PipelineOptions]
    ) -> None:
        if options is None:
            options = Options(**kwargs)
        elif kwargs:
            raise TypeError(
                "OrderedPipeline() takes an Options or keyword options, not both: "
                f"pass options.replace({', '.join(f'{k}=...' for k in kwargs)})"
            )
        elif not isinstance(options, Options):
            raise TypeError(
                f"OrderedPipeline() takes an inorder.Options, got {type(options).__qualname__}"
            )
        self._options = options
        self._workers = options.workers
        fixed_window = options.fixed_window
        self._window_sizer: WindowSizer | None = None
        if fixed_window is None:
            self._window_sizer = WindowSizer(self._workers)
            fixed_window = self._window_sizer.capacity
        self._window: Window[_Waiter] = Window(fixed_window)
        # The function whose results sized the window last (with a fixed window: the one
        # put() saw last, see _expect_function).
        self._measured: Any = None
        self._queue = PendingQueue()
        self._cursor = ResultCursor(options.on_error)
        self._waiters = self._window.queue  # producers waiting for room (truthiness only)
        # The map() feeder waiting for room for a whole batch (see _feeding): set when
        # the consumer frees room or the pipeline stops accepting items.
        self._room: anyio.Event | None = None
        self._dispatched: anyio.Event | None = None  # the feeder waits for a dispatch
        self._hold = Hold()
        self._hold_timer: Callable[[], None] | None = None  # cancels the hold's timer
        # The stall check (see _watch_for_stall): its timer, the consumer's count when it
        # was armed, and whether the warning was given.
        self._stall_timer: Callable[[], None] | None = None
        self._stall_taken = (0, 0)  # the consumer's (taken, wakes) when it was armed
        self._stall_warned = False
        self._state = _State.NEW
        self._buffer: ReorderBuffer[Any] = ReorderBuffer(ordered=options.ordered)
        self._futures: set[FutureLike] = set()
        self._max_dispatches = DISPATCHES_PER_WORKER * self._workers
        self._dispatches = 0
        self._batches = 0  # executor calls made
        self._sizers = BatchSizers(options.fixed_batch)
        self._timeout = options.timeout
        self._retry = RetryPolicy(options.retries, options.retry_on)
        # A worker may not run more than max_tasks_per_child items, so no batch may either.
        self._batch_cap = options.max_tasks_per_child or MAX_BATCH_SIZE
        self._limit_batches()
        self._retried = 0
        self._progress = _progress.ProgressLine(self.statistics) if options.progress else None
        self._in_flight = 0
        self._consumer_event: anyio.Event | None = None
        self._consumer_wakes = 0  # times the consumer was woken with outcomes
        self._feeding = False  # map() was called
        self._tasks: OwnedTasks  # entered: the feeder and the clock run there
        self._clock: Clock  # entered: the hold, the stall check, retry back-offs
        self._results: Results | None = None  # see __aiter__
        self._chunk_results: dict[int, Results] = {}  # see chunks(), by their bound
        self._backend: Backend | None = None
        self._codec: Codec | None = None
        self._prepare: Callable[[Any, tuple[Any, ...], dict[str, Any]], Prepared]  # entered
        self._bridge: LoopBridge | None = None
        self._stopped: anyio.Event | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise RuntimeError(
                "this OrderedPipeline was already entered; a pipeline carries one stream, "
                "so create a new one"
            )
        self._bridge = current_bridge()
        self._tasks = OwnedTasks(self._bridge)
        self._clock = Clock(self._tasks, self._bridge)
        backend = self._backend = self._make_backend()
        # Batches aim at the work that makes a call through this backend cheap.
        self._sizers = BatchSizers(self._options.fixed_batch, target_seconds=backend.batch_seconds)
        self._limit_batches()
        self._codec = backend.codec()
        self._prepare = self._codec.prepare  # put() calls it per item
        self._state = _State.OPEN
        try:
            await backend.start(self._bridge)
            if self._progress is not None:
                self._progress.start()
        except BaseException:
            self._state = _State.STOPPED
            with anyio.CancelScope(shield=True):
                await backend.stop(abandon=True)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop: cancel pending work, release the workers, wake every waiter.

        Results not yet yielded are discarded; items running in worker processes are
        stopped (threads cannot be stopped: the call waits for running thread items).
        Producers waiting in ``put()`` and a consumer waiting for a result get
        ``PipelineClosedError``. Safe to call more than once; shielded from cancellation.
        """
        if self._state is _State.STOPPED:
            if self._stopped is not None:  # another task is stopping it: wait for that
                with anyio.CancelScope(shield=True):
                    await self._stopped.wait()
            return
        started = self._state is not _State.NEW
        self._state = _State.STOPPED
        self._queue.close_lane()
        if not started:
            return
        self._stopped = anyio.Event()
        try:
            await self._stop()
        finally:
            self._stopped.set()

    async def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        self._refuse_waiters()
        self._wake_consumer()
        assert self._backend is not None
        abandon = bool(self._futures or self._queue)
        for future in list(self._futures):
            future.cancel()
        self._queue.clear()  # the timers of retries end with the clock, below
        self._hold.end()
        self._buffer.clear()
        self._cursor.clear()
        with anyio.CancelScope(shield=True):
            self._clock.close()
            await self._tasks.aclose()
            await self._backend.stop(abandon=abandon)
            for results in [self._results, *self._chunk_results.values()]:
                if results is not None:
                    await results.aclose()

    def close(self) -> None:
        """No more items: iteration ends once every accepted item has been yielded.

        Producers still waiting in ``put()`` get ``PipelineClosedError``. Idempotent.
        """
        if self._state is _State.NEW:
            raise RuntimeError("close() called before the pipeline was entered with async with")
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
            self._queue.close_lane()
            self._refuse_waiters()
            self._wake_consumer()
            if self._hold.active:  # no more items will join it
                self._hold.end()
                self._dispatch()

    @property
    def options(self) -> Options:
        """The pipeline's options, checked and frozen."""
        return self._options

    @property
    def closed(self) -> bool:
        """Whether the pipeline has stopped accepting items."""
        return self._state is not _State.OPEN

    # -- producing ----------------------------------------------------------------------

    async def put(self, fn: Any, /, *args: Any, **kwargs: Any) -> int:
        """Submit ``fn(*args, **kwargs)``; return its sequence number (0, 1, 2, ...).

        Waits while the window is full; waiting producers are served first come, first
        served. Returns without suspending when there is room.

        ``put(marker)`` with a single non-callable argument submits a *marker*: it takes
        its place in the order and is yielded unchanged, without visiting a worker, once
        every item put before it has been yielded (with ``ordered=False`` too).

        Raises:
            TypeError: ``fn`` is not callable but arguments were given, or an argument
                (or ``fn``) cannot be pickled for a worker process. Nothing was
                accepted; the pipeline stays usable.
            PipelineClosedError: after ``close()``, or the pipeline closed while waiting.
        """
        queue = self._queue
        if (
            fn is queue.lane_fn
            and len(args) == 1
            and not kwargs
            and type(args[0]) in PLAIN_TYPES
            and self._window.try_acquire()
        ):
            # The lane: the function the last put() queued, again with one argument that
            # needs no check. The lane closes whenever this shortcut would skip anything
            # (another segment, a marker, the state, the window sizer's function).
            seq = queue.join_lane(args[0])
            if self._dispatches < self._max_dispatches:
                self._dispatch()
            return seq
        prepared = self._check_put("put()", fn, args, kwargs)
        if not self._window.try_acquire():
            await self._wait_for_slot()
        return self._accept_put(fn, prepared)

    def put_nowait(self, fn: Any, /, *args: Any, **kwargs: Any) -> int:
        """Submit as ``put()`` does, or raise at once if the window has no room.

        For a producer that must not wait (a callback, a handler that drops or defers
        what does not fit). Markers too.

        Raises:
            WindowFullError: no free slot now, or producers are waiting for one. Nothing
                was accepted.
            TypeError, PipelineClosedError: as ``put()``.
        """
        prepared = self._check_put("put_nowait()", fn, args, kwargs)
        if not self._window.try_acquire():
            self._settle()  # results already handed out free their slots
            if not self._window.try_acquire():
                raise WindowFullError(
                    f"put_nowait(): the window is full ({self._window.capacity} slots, each "
                    "holding an item not yet yielded, or producers are waiting for one); "
                    "take results to make room, or use put(), which waits for it"
                )
        return self._accept_put(fn, prepared)

    def _check_put(
        self, method: str, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Prepared | None:
        """A put's call prepared for its batch, or None for a marker; nothing taken yet."""
        if self._state is not _State.OPEN:
            raise self._closed_error(method)
        if callable(fn):
            prepared = self._prepare(fn, args, kwargs)
            if prepared[0] is not self._measured:
                self._expect_function(prepared[0])
            return prepared
        if args or kwargs:
            raise TypeError(
                f"{method} takes a callable and its arguments, or a single marker object; "
                f"got a non-callable {type(fn).__qualname__} ({fn!r:.60}) with "
                f"{len(args)} positional and {len(kwargs)} keyword argument(s)"
            )
        return None

    def _accept_put(self, fn: Any, prepared: Prepared | None) -> int:
        """Accept a checked put whose window slot is taken."""
        if prepared is None:
            return self._accept_outcome(fn, barrier=True)
        return self._accept_call(fn, prepared)

    async def put_many(self, fn: Callable[..., Any], items: Iterable[Any], /) -> None:
        """Submit ``fn(item)`` for each of ``items``, in order, as room in the window
        allows: for a producer whose input comes in pieces (lines read from a pipe, rows
        fetched a page at a time), at the cost of one admission a piece, not an item.

        Returns once every item is accepted. Items of one call take consecutive sequence
        numbers unless another producer puts meanwhile. As with ``map()``, the items
        are pickled in their batch, not here: one that cannot be pickled fails at its
        own position (handled by ``on_error``).

        Raises:
            TypeError: ``fn`` is not callable, or cannot be pickled for a worker process.
            PipelineClosedError: after ``close()``, or the pipeline closed meanwhile.
        """
        if self._state is not _State.OPEN:
            raise self._closed_error("put_many()")
        if not callable(fn):
            raise TypeError(
                f"put_many() needs a callable first, got {type(fn).__qualname__} {fn!r:.60}"
            )
        assert self._codec is not None
        key = self._codec.key(fn)  # an unpicklable function fails here
        if key is not self._measured:
            self._expect_function(key)
        await self._accept_chunk(key, list(items))  # a list of its own: the queue changes it

    def map(
        self, fn: Callable[..., Any], /, *iterables: Iterable[Any] | AsyncIterable[Any]
    ) -> Self:
        """Feed ``fn(*items)`` for items drawn from ``iterables`` (like the builtin ``map``).

        The pipeline reads the iterables from a task it owns (sync iterables without an
        ``await`` per item), closes itself when the shortest runs out, and returns
        itself for ``async for``. If an iterable raises, the exception is raised by the
        iteration after the results of the items before it, and the stream ends.
        An item whose arguments cannot be pickled fails at its own position (handled
        by ``on_error``). Can be called once per pipeline.
        """
        if self._feeding:
            raise RuntimeError("map() was already called on this pipeline; it carries one stream")
        if self._state is not _State.OPEN:
            raise self._closed_error("map()")
        check_map_arguments(fn, iterables)
        assert self._codec is not None
        key = self._codec.key(fn)  # an unpicklable function fails here, not per item
        self._expect_function(key)
        self._feeding = True
        self._tasks.start_soon(functools.partial(feed, self._intake(), key, iterables))
        return self

    def _intake(self) -> _Intake:
        """What map()'s feeder may use of this pipeline (see ``_feeding``)."""
        assert self._codec is not None
        return _Intake(
            window=self._window,
            sizers=self._sizers,
            window_sizer=self._window_sizer,
            dispatch_slots=lambda: self._max_dispatches,  # follows a scaling cluster
            measures_sizes=self._codec.measures_sizes,
            still_accepting=lambda: self._state is _State.OPEN,
            refusal=functools.partial(self._closed_error, "map()"),
            wait_for_slot=self._wait_for_slot,
            wait_for_freed_room=self._wait_for_freed_room,
            queued=lambda: self._queue.queued,
            wait_for_dispatch=self._wait_for_dispatch,
            accept_many=self._accept_many,
            accept_input_error=self._accept_input_error,
            close=self.close,
        )

    def _accept_input_error(self, error: BaseException) -> None:
        """map()'s input raised: the error takes the next place (its slot is taken), then
        the stream ends."""
        error.add_note(
            f"inorder: map() stopped reading its input after {self._queue.accepted} item(s) "
            "because the iterable raised this"
        )
        self._accept_outcome(InputFailure(error), barrier=True)
        self.close()

    # -- consuming ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        """The results, in order, as an async iterator that the pipeline keeps.

        The pipeline holds on to it, so leaving a loop early and starting another goes on
        where the first stopped, and an item's error raised by one step leaves the next
        step to go on with the items after it; it is closed when the pipeline stops.
        ``anext(pipe)`` works too, on the same state.
        """
        if self._results is None:
            self._results = Results(self._iterate)
        return self._results

    def chunks(self, max_items: int | None = None) -> AsyncIterator[list[Any]]:
        """The results, in order, as lists of consecutive results.

        Each list holds the consecutive results that are ready, at most ``max_items``
        (32768 when not given), so a consumer that reads many results handles them with a
        plain ``for`` instead of a step of ``async for`` each::

            async for results in pipe.chunks():
                for result in results:
                    ...

        The order and the ``on_error`` policy are those of ``async for``: with
        ``"raise"``, a list ends before a failed item, and the next step raises its
        exception (then goes on, as ``async for`` does); with ``"return"`` the exception
        is in the list in its place; with ``"skip"`` it is left out. Markers are in their
        place. ``chunks()`` and ``async for`` may take turns on one pipeline: both take
        the next results, one consumer at a time. Like ``async for``'s, the iterator is
        the pipeline's: calling ``chunks()`` again (with the same bound) goes on with it,
        and it is closed when the pipeline stops.
        """
        if max_items is None:
            limit = MAX_CHUNK_ITEMS
        else:
            limit = check_positive_int("max_items", max_items)
        chunks = self._chunk_results.get(limit)
        if chunks is None:  # kept, like __aiter__'s, and closed when the pipeline stops
            chunks = self._chunk_results[limit] = Results(
                functools.partial(self._iterate_chunks, limit=limit)
            )
        return chunks

    async def _iterate_chunks(
        self, renew: Callable[[], None], limit: int
    ) -> AsyncGenerator[list[Any], None]:
        """Yield what ``_next_chunk`` returns; renewed like ``_iterate``."""
        try:
            while True:
                try:
                    chunk = await self._next_chunk(limit)
                except StopAsyncIteration:
                    return
                yield chunk
        except GeneratorExit:
            raise
        except BaseException:
            renew()
            raise

    async def _iterate(self, renew: Callable[[], None]) -> AsyncGenerator[Any, None]:
        """Yield the outcomes ``__anext__`` returns, clean runs straight from their
        iterator. Before an exception leaves (an item's error, a cancellation),
        ``renew()`` puts a fresh generator in its place.
        """
        try:
            waiters = self._waiters
            cursor = self._cursor
            while True:
                run = cursor.iterator
                if run is not None:
                    # The fast path, for every item of a clean run: slots and counts
                    # settle in bulk, at once if a producer waits.
                    for outcome in run:
                        if waiters:
                            self._settle()
                        yield outcome
                    cursor.end_iteration(run)
                    continue
                try:
                    outcome = await self._next_slow()
                except StopAsyncIteration:
                    break
                yield outcome
        except GeneratorExit:
            raise
        except BaseException:
            renew()
            raise

    async def __anext__(self) -> Any:
        # anext(pipe); async for takes the generator from __aiter__, on the same state.
        return await self._next_slow()

    async def _next_slow(self) -> Any:
        cursor = self._cursor
        while True:
            try:
                outcome = cursor.next()
            finally:
                # A clean run's items settle in bulk (see _iterate), others one by one.
                if cursor.iterator is None or self._waiters:
                    self._settle()
            if outcome is NEXT_RUN:
                await self._next_run(by_iterator=True)
            elif outcome is not SKIPPED:
                return outcome

    async def _next_run(self, *, by_iterator: bool) -> None:
        """The current run is handed out: make the next one current, or wait for one.

        ``by_iterator``: hand a clean run out through its list iterator (the cheapest
        step per item); else by index (``chunks()`` slices it).
        """
        self._settle()
        if not self._load_ready_run(by_iterator=by_iterator):
            await self._wait_for_outcomes()
            return
        # One checkpoint per run, not per item: lets the map() feeder refill the window
        # just settled and completions come in while this run is handed out.
        await anyio.lowlevel.checkpoint()

    def _load_ready_run(self, *, by_iterator: bool) -> bool:
        """Make the next run the cursor's if it is ready (the last one is settled);
        whether it was."""
        run = self._buffer.pop_run()
        if run is None:
            return False
        # Unpickles the batch's outcomes in one call.
        outcomes, clean = resolve(run[1])
        self._cursor.load(run[0], outcomes, clean, by_iterator=by_iterator)
        return True

    async def _next_chunk(self, limit: int) -> list[Any]:
        """The next outcomes as a list of at most ``limit``: the rest of the current run
        (see ``ResultCursor.next_chunk``), then those of the runs ready now."""
        cursor = self._cursor
        while True:
            try:
                chunk = cursor.next_chunk(limit)
            finally:
                self._settle()
            if chunk is None:
                await self._next_run(by_iterator=False)
            elif chunk:
                if len(chunk) < limit:
                    self._add_ready_runs(chunk, limit)
                return chunk

    def _add_ready_runs(self, chunk: list[Any], limit: int) -> None:
        """Extend ``chunk`` (the end of the current run) with the outcomes of the runs
        ready now, up to ``limit`` in all, and as ``on_error`` says: a list still ends
        before an error to be raised, which the next step raises."""
        cursor = self._cursor
        while len(chunk) < limit and cursor.waiting == 0:
            if not self._load_ready_run(by_iterator=False):
                return
            try:
                more = cursor.next_chunk(limit - len(chunk), extends=True)
            finally:
                self._settle()
            assert more is not None  # a run just loaded is never empty
            chunk += more

    def _settle(self) -> None:
        """Settle what the consumer was handed: free its window slots."""
        handed = self._cursor.settle()
        if handed:
            waiter = self._window.release_many(handed)
            if waiter is not None:
                waiter.event.set()
            self._wake_feeder_for_room()
            hold = self._hold
            if hold.active and hold.may_end(yielded=self._cursor.yielded, free=self._window.free):
                hold.end()
                self._dispatch()

    def _wake_feeder_for_room(self) -> None:
        if self._room is not None:
            self._room.set()

    async def _wait_for_outcomes(self) -> None:
        if self._consumer_event is not None:
            raise RuntimeError(
                "another task is already iterating over this pipeline; a pipeline has "
                "one consumer (share results through a memory object stream instead)"
            )
        if self._state is _State.CLOSED and self._cursor.handed == self._queue.accepted:
            raise StopAsyncIteration
        if self._state is _State.NEW:
            raise RuntimeError(
                "iterate over the pipeline inside 'async with OrderedPipeline(...) as pipe:'"
            )
        if self._state is _State.STOPPED:
            raise self._closed_error("iteration")
        event = self._consumer_event = anyio.Event()
        try:
            await event.wait()
        finally:
            self._consumer_event = None
            self._consumer_wakes += 1  # read by the stall check: the consumer is there

    def statistics(self) -> PipelineStatistics:
        """A frozen snapshot of the pipeline's counters."""
        return PipelineStatistics(
            accepted=self._queue.accepted,
            queued=self._queue.queued + self._queue.delayed,
            in_flight=self._in_flight,
            buffered=self._results_waiting(),
            yielded=self._cursor.taken,
            skipped=self._cursor.skipped,
            failed=self._cursor.failed,
            workers=self._workers,
            window=self._window.capacity,
            batch_size=self._sizers.size,
            batches=self._batches,
            restarts=self._backend.restarts if self._backend is not None else 0,
            retries=self._retried,
            timeouts=self._backend.timeouts if self._backend is not None else 0,
            producers_waiting=self._window.waiting,
            consumer_waiting=self._consumer_event is not None,
        )

    # -- internals: admission -----------------------------------------------------------

    async def _wait_for_slot(self) -> None:
        # Items handed out are counted in bulk, at the consumer's next step: when the
        # consumer is this very task (a loop that puts what it takes), that step would
        # never come. Yielded items free their slots: count them now.
        self._settle()
        if self._window.try_acquire():
            return
        waiter = _Waiter()
        self._window.enqueue(waiter)
        self._watch_for_stall()
        try:
            await waiter.event.wait()
        except BaseException:
            self._wake(self._window.withdraw(waiter))
            raise
        if waiter.refused:
            raise self._closed_error("put()")
        self._wake(self._window.confirm(waiter))

    def _refuse_waiters(self) -> None:
        for waiter in self._window.drain():
            waiter.refused = True
            waiter.event.set()
        # The map() feeder, whatever it waits for, sees the state and stops.
        self._wake_feeder_for_room()
        if self._dispatched is not None:
            self._dispatched.set()

    @staticmethod
    def _wake(waiter: _Waiter | None) -> None:
        if waiter is not None:
            waiter.event.set()

    def _accept_call(self, fn: Any, prepared: Prepared) -> int:
        """Queue a prepared call (its window slot is taken); let put()'s next items of
        ``fn`` take the lane if they may (see ``put``)."""
        key, shape, payload = prepared
        queue = self._queue
        seq = queue.accept(key, shape, payload)
        if shape == ONE and key is self._measured:
            queue.open_lane(fn, key, shape)
        else:
            queue.close_lane()
        if self._dispatches < self._max_dispatches:
            self._dispatch()
        return seq

    def _accept_many(self, key: Any, shape: int, payloads: list[Any]) -> None:
        """Queue consecutive items fed by map() (their window slots are taken)."""
        self._queue.accept_many(key, shape, payloads)
        if self._dispatches < self._max_dispatches:
            self._dispatch()

    def _accept_outcome(self, outcome: Any, *, barrier: bool = False) -> int:
        """Accept an item whose outcome is known already (a marker, a failure).

        ``barrier``: yield it only after every earlier item, even when unordered.
        """
        seq = self._queue.number()
        self._buffer.add(seq, [outcome], barrier=barrier)  # a list: checked item by item
        self._wake_consumer()
        return seq

    # -- internals: dispatch and completion ---------------------------------------------

    def _dispatch(self, *, may_hold: bool = True) -> None:
        """Hand batches to the executor while a dispatch slot is free and work queued
        (``may_hold``: unless a partial batch is worth holding, see ``_worth_holding``)."""
        hold = self._hold
        queue = self._queue
        # hold.active first: each put() comes here while a dispatch slot is free.
        if hold.active and hold.keeps(queue.queued) and self._state is _State.OPEN:
            return
        assert self._backend is not None
        assert self._codec is not None
        assert self._bridge is not None
        # No more input: share what is left among the workers, so that none idles at
        # the end while another works through one full-size batch (adaptive sizes only).
        share = None
        if self._state is _State.CLOSED and self._sizers.adaptive and queue.queued:
            share = self._sizers.of(queue.head.key).share_at_end(queue.queued, self._workers)
        while queue.queued and self._dispatches < self._max_dispatches:
            # With nothing in flight someone may be waiting for the next result: it goes
            # alone, so it is not held up by batch-mates; the other workers take full
            # batches meanwhile. (A fixed batch size is the user's choice: kept.)
            allowed = size = self._sizers.of(queue.head.key).size
            if may_hold and queue.queued < allowed and self._worth_holding(allowed):
                return
            hold.end()
            idle = not self._in_flight
            if idle and self._sizers.adaptive:
                size = 1
            parts, runs, count, attempts = queue.cut(
                size if share is None else min(size, share), self._batch_size_of
            )
            self._dispatches += 1
            self._batches += 1
            self._in_flight += count
            if self._dispatched is not None:
                self._dispatched.set()
            full = count >= allowed  # the queue kept up with the batch size
            on_done = functools.partial(self._job_done, runs, parts, attempts, count, full)
            try:
                job = self._codec.job(parts, runs)
                if self._window_sizer is not None and job.nbytes:
                    self._window_sizer.observe_arguments(count, job.nbytes)
                    self._resize_window()
                future = self._bridge.submit(
                    self._backend.executor, job.function, job.args, on_done
                )
            except Exception as exc:  # noqa: BLE001 - e.g. the caller shut their executor down
                self._dispatches -= 1
                self._in_flight -= count
                self._store(runs, Outcomes([Failure(exc, "<dispatch>")] * count, count))
                continue
            self._futures.add(future)
            if idle:
                # Someone may be waiting for this result. The executor's thread that
                # sends it on needs the GIL, which this thread would keep until the loop
                # next waits (more batches, the consumer): hand it over now, once per
                # burst. Also when inorder's own pool sent the job from this thread:
                # the worker just woken gets this CPU at once (docs/decisions/0003).
                time.sleep(0)

    def _worth_holding(self, allowed: int) -> bool:
        """Whether a batch of fewer than ``allowed`` items should wait for more.

        Only while the consumer is behind: the window has no room for another batch
        and the consumer has at least two batches of results waiting, so the items
        would only wait among its results. Sent at once, they would go one by one: a
        consumer that lets other tasks run between results frees the window a slot at
        a time, and each item put in the slot would go alone to a free dispatch slot
        (docs/decisions/0001). The consumer's steps end a
        hold (``_settle`` checks), and so does ``close()``; should the consumer stop
        taking results, the items go after ``HOLD_SECONDS`` all the same.
        """
        if self._state is not _State.OPEN or self._queue.head.isolated:
            return False
        hold = self._hold
        if hold.active:
            return True
        if not hold.consider(
            allowed=allowed,
            free=self._window.free,
            waiting=self._results_waiting(),
            taken=self._cursor.taken,
        ):
            return False
        if self._hold_timer is None:
            self._arm_hold_timer()
        return True

    def _results_waiting(self) -> int:
        """Outcomes that arrived and that the consumer has not taken yet."""
        return len(self._buffer) + self._cursor.waiting

    def _arm_hold_timer(self) -> None:
        self._hold.timer_set(self._cursor.taken)
        self._hold_timer = self._clock.call_later(HOLD_SECONDS, self._hold_timer_fired)

    def _hold_timer_fired(self) -> None:
        self._hold_timer = None
        hold = self._hold
        if hold.timer_ends_it(self._cursor.taken):
            self._dispatch(may_hold=False)
        elif hold.active:
            self._arm_hold_timer()  # the consumer is moving: it ends the hold itself

    def _expect_function(self, key: Any) -> None:
        """Items of ``key`` are about to be accepted: if the automatic window has grown
        on results of another function, bring it back to its start until theirs are
        measured."""
        sizer = self._window_sizer
        if sizer is None:
            # A fixed window has nothing to bring back: remembering the key as measured
            # spares put() this call for every item of the same function.
            self._set_measured(key)
        elif key is not self._measured and self._window.capacity > AUTO_WINDOW_START:
            sizer.forget_results()
            self._resize_window()

    def _set_measured(self, key: Any) -> None:
        if key is not self._measured:
            self._measured = key
            self._queue.close_lane()  # its items skip _expect_function, which would differ now

    def _resize_window(self) -> None:
        """Follow the window sizer: grow or shrink the window and the batch cap with it."""
        assert self._window_sizer is not None
        capacity = self._window_sizer.capacity
        if capacity != self._window.capacity:
            self._wake(self._window.resize(capacity))
            self._limit_batches()

    def _limit_batches(self) -> None:
        # A batch larger than the window's share of dispatches would leave workers idle.
        share = self._window.capacity // self._max_dispatches
        self._sizers.limit_to(max(1, min(share, self._batch_cap)))

    def _follow_workers(self, workers: int) -> None:
        """The backend runs ``workers`` items at once now (a Dask cluster scaled): the
        executor calls in flight, the batch ceiling and the automatic window's floor
        follow."""
        self._workers = workers
        self._max_dispatches = DISPATCHES_PER_WORKER * workers
        if self._window_sizer is not None:
            self._window_sizer.set_workers(workers)
            self._resize_window()
        self._limit_batches()

    def _batch_size_of(self, key: Any) -> int:
        return self._sizers.of(key).size

    def _job_done(
        self,
        runs: list[tuple[int, int]],
        parts: list[Part],
        attempts: int,
        count: int,
        full: bool,
        future: FutureLike,
    ) -> None:
        self._futures.discard(future)
        self._dispatches -= 1
        self._in_flight -= count
        if self._backend is not None and self._backend.workers != self._workers:
            self._follow_workers(self._backend.workers)
        if self._state is _State.STOPPED:
            if not future.cancelled():
                future.exception()  # retrieved: asyncio would log it as never retrieved
            return
        assert self._codec is not None
        if future.cancelled():
            error: BaseException | None = concurrent.futures.CancelledError(
                "the executor cancelled this item (was it shut down while the pipeline ran?)"
            )
        else:
            error = future.exception()
        if isinstance(error, BatchLost):
            self._recover(items_of(runs, parts), attempts, error)
        elif error is not None:
            self._store(runs, Outcomes([Failure(error, "<executor>")] * count, count))
        else:
            payload, seconds, failures = future.result()
            self._sizers.of(parts[0].key).observe(count, seconds, full=full)
            nbytes = self._codec.results_size(payload)
            if self._window_sizer is not None and nbytes is not None:
                self._window_sizer.observe_results(count, nbytes)
                self._set_measured(parts[0].key)
                self._resize_window()
            outcomes = self._codec.outcomes(payload, count, failures)
            if failures and self._retry.retries:
                self._file_or_retry(items_of(runs, parts), attempts, outcomes.resolve())
            else:
                self._store(runs, outcomes)
        self._dispatch()

    # -- internals: failures, crashes, retries -------------------------------------------

    def _recover(self, items: list[Item], attempts: int, lost: BatchLost) -> None:
        """A batch was lost: run the innocent again, the suspects alone, and fail (or
        retry) the culprit with the backend's error (see ``_recovery``)."""
        plan = plan_loss(items, started=lost.started, running=lost.running)
        self._requeue(plan.rerun)
        self._requeue(plan.alone, isolated=True)
        if plan.culprit is not None:
            self._fail_or_retry(plan.culprit, attempts, self._loss_error(lost))

    @staticmethod
    def _loss_error(lost: BatchLost) -> BaseException:
        if lost.error is not None:
            return lost.error
        return WorkerCrashedError(
            "the item was lost by its executor, which gave no reason", pid=None, exitcode=None
        )

    def _fail_or_retry(self, item: Item, attempts: int, error: BaseException) -> None:
        """A lost batch's culprit fails with ``error``, or runs again (``_file_or_retry``)."""
        failure = Failure(error, _function_name(item.key), None, getattr(error, "pid", None))
        self._file_or_retry([item], attempts, [failure])

    def _file_or_retry(self, items: list[Item], attempts: int, outcomes: list[Any]) -> None:
        """File a batch's outcomes, except failures that get another attempt."""
        plan = plan_retries(items, attempts, outcomes, self._retry)
        for seq, failure in plan.exhausted:
            failure.exception.add_note(
                f"inorder: item {seq} failed {attempts + 1} times (retries={self._retry.retries})"
            )
        for start, run in plan.filed:
            self._buffer.add(start, run)
        if plan.filed:
            self._wake_consumer()
        if plan.again:
            self._retried += len(plan.again)
            self._requeue(
                plan.again,
                isolated=True,
                attempts=attempts + 1,
                delay=self._retry.delay(attempts + 1),
            )

    def _requeue(
        self,
        items: list[Item],
        *,
        isolated: bool = False,
        attempts: int = 0,
        delay: float = 0.0,
    ) -> None:
        """Queue ``items`` to run (again), ahead of newer work; after ``delay`` seconds."""
        if not items:
            return
        segments = segments_of(items, isolated=isolated, attempts=attempts)
        if delay <= 0:
            self._queue.requeue(segments)
            return
        self._queue.defer(len(items))
        self._clock.call_later(delay, functools.partial(self._requeue_due, segments))

    def _requeue_due(self, segments: list[Segment]) -> None:
        """A retry's back-off is over: its items join the queue, ahead of newer work."""
        if self._state is _State.STOPPED:
            return
        self._queue.requeue(segments, deferred=True)
        self._dispatch()

    def _store(self, runs: list[tuple[int, int]], outcomes: Outcomes) -> None:
        if len(runs) == 1:
            self._buffer.add(runs[0][0], outcomes)
        else:  # markers cut the batch's sequence numbers into several runs
            offset = 0
            for start, count in runs:
                self._buffer.add(start, OutcomeSlice(outcomes, offset, count))
                offset += count
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        event = self._consumer_event
        if event is not None:
            event.set()

    # -- internals: room for producers and the map() feeder ------------------------------

    async def _wait_for_freed_room(self) -> None:
        """Wait until the consumer frees room, or the pipeline stops accepting items.

        The map() feeder waits on an event of its own, set whenever the consumer frees
        room (once per run it takes), not as a window waiter, which a consumer frees
        slots for one item at a time.
        """
        room = self._room = anyio.Event()
        self._watch_for_stall()
        try:
            await room.wait()
        finally:
            self._room = None

    async def _wait_for_dispatch(self) -> None:
        """Wait until a batch leaves the queue, or the pipeline stops accepting items."""
        dispatched = self._dispatched = anyio.Event()
        try:
            await dispatched.wait()
        finally:
            self._dispatched = None

    def _watch_for_stall(self) -> None:
        """A producer starts to wait for room: unless a check is due already, check in
        ``STALL_WARNING_SECONDS`` whether the consumer took a result meanwhile."""
        if self._stall_timer is None and not self._stall_warned:
            self._stall_taken = (self._cursor.taken, self._consumer_wakes)
            self._stall_timer = self._clock.call_later(
                STALL_WARNING_SECONDS, self._check_for_stall
            )

    def _check_for_stall(self) -> None:
        self._stall_timer = None
        if self._state is _State.STOPPED or not (self._window.waiting or self._room):
            return  # no producer waits now
        moved = (self._cursor.taken, self._consumer_wakes) != self._stall_taken
        if moved or self._consumer_event is not None:
            # Results are taken, the consumer was woken with some (and may be between
            # taking them), or it waits for the next one: the wait is the consumer's or
            # the workers' pace, not a missing consumer.
            self._watch_for_stall()
            return
        self._stall_warned = True
        logger.warning(
            "put() has waited %g s for room in the window (%d items, all accepted and "
            "not yet taken), and no result was taken meanwhile: is a task iterating over "
            "the pipeline (async for) while the producers put? Only iterating frees room",
            STALL_WARNING_SECONDS,
            self._window.capacity,
        )

    async def _accept_chunk(self, key: Any, chunk: list[Any]) -> None:
        """Accept a list of one-argument items as the window makes room for them."""
        window = self._window
        offset = 0
        total = len(chunk)  # handed over whole, the chunk is the queue's, which cuts it
        while offset < total:
            if self._state is not _State.OPEN:
                raise self._closed_error("put_many()")
            wanted = total - offset
            free = window.try_acquire_many(wanted)
            if not free:
                await self._wait_for_slot()
                free = 1 + window.try_acquire_many(wanted - 1)
            self._accept_many(
                key, ONE, chunk[offset : offset + free] if offset or free < wanted else chunk
            )
            offset += free

    # -- internals: helpers -------------------------------------------------------------

    def _make_backend(self) -> Backend:
        options = self._options
        option = options.executor
        if option == "process":
            return ProcessBackend.from_options(options)
        if option == "thread":
            return ThreadBackend(self._workers)
        if isinstance(option, WorkerPool):
            return SharedPoolBackend(option, self._workers)
        if is_dask_client(option):
            return DaskBackend(option, self._workers, follow_cluster=options.follows_cluster)
        assert isinstance(option, concurrent.futures.Executor)
        return BorrowedExecutorBackend(option, self._workers)

    def _closed_error(self, what: str) -> Exception:
        if self._state is _State.NEW:
            return RuntimeError(
                f"{what} on a pipeline that was not entered; use "
                "'async with OrderedPipeline(...) as pipe:'"
            )
        if self._state is _State.CLOSED:
            return PipelineClosedError(
                f"{what}: the pipeline was closed with close() and accepts no more items"
            )
        return PipelineClosedError(
            f"{what}: the pipeline has been shut down (aclose() or leaving 'async with'); "
            "create a new OrderedPipeline for another stream"
        )


def _function_name(key: Any) -> str:
    return key.name if isinstance(key, SerializedFunction) else describe(key)


@dataclasses.dataclass(frozen=True, slots=True)
class _Intake:
    """The pipeline as its map() feeder sees it (``_feeding.Intake``): the parts a feeder
    reads (the window, the batch sizers) and the admission steps the pipeline hands it
    (``OrderedPipeline._intake``)."""

    window: Window[Any]
    sizers: BatchSizers
    window_sizer: WindowSizer | None
    dispatch_slots: Callable[[], int]
    measures_sizes: bool  # the codec pickles items, so the window measures them
    still_accepting: Callable[[], bool]
    refusal: Callable[[], Exception]
    wait_for_slot: Callable[[], Awaitable[None]]
    wait_for_freed_room: Callable[[], Awaitable[None]]
    queued: Callable[[], int]
    wait_for_dispatch: Callable[[], Awaitable[None]]
    accept_many: Callable[[Any, int, list[Any]], None]
    accept_input_error: Callable[[BaseException], None]
    close: Callable[[], None]

    @property
    def accepting(self) -> bool:
        return self.still_accepting()

    def give_back(self, count: int) -> None:
        waiter = self.window.release_many(count)
        if waiter is not None:
            waiter.event.set()

    def batch_room(self, key: Any) -> int:
        return min(self.window.capacity, self.sizers.of(key).size)

    def read_ahead(self, key: Any) -> int:
        # READ_AHEAD_ROUNDS batches for every dispatch slot at the current batch size.
        # While batch sizes ramp up from one item, a queue as large as the free window
        # would keep this thread reading while the completions of the first batches
        # wait (their thread needs the GIL), and with them the first results and the
        # sizer's next step. Several rounds, so that the queue keeps up with the batch
        # size (a batch that holds all it may grows the size from there). At full size
        # it is more than the window.
        return READ_AHEAD_ROUNDS * self.dispatch_slots() * self.sizers.of(key).size

    def first_chunk(self) -> int | None:
        if self.window_sizer is None or not self.measures_sizes:
            return None  # a fixed window, or threads, which copy nothing
        # At least a batch for every dispatch slot: a fixed batch size holds from the
        # first batch.
        fixed = 0 if self.sizers.adaptive else self.sizers.size
        return max(FIRST_MAP_CHUNK, fixed * self.dispatch_slots())

    def sizes_measured(self) -> int:
        return 0 if self.window_sizer is None else self.window_sizer.arguments_measured


OrderedPipeline.__module__ = "inorder"
