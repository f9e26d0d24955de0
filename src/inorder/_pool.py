"""inorder's own process pool, behind ``executor="process"``.

Why not ``concurrent.futures.ProcessPoolExecutor``: when one of its workers dies, every
future of the pool fails with ``BrokenProcessPool`` and the pool is unusable; it cannot
tell which item a dead worker was running, cannot stop one item that runs too long, and
its workers outlive a parent killed by SIGKILL. This pool keeps the parts that work
(processes from a ``multiprocessing`` context, a manager thread, ``concurrent.futures``
futures, so the event-loop bridge treats it like any executor) and changes the rest::

    submit() ─▶ queue ─▶ manager thread ──pipe──▶ worker process (own process group)
       └─ a small job, while the manager waits ──┘      │
    future  ◀─ manager thread ◀──pipe── READY / LOG / DONE ◀──┘
                    ▲                        │ marks job id, item index, item start
                    └── reads ── shared progress array ◀──┘

* Each worker has its own duplex pipe; the manager thread waits on all pipes, every
  worker's end (a pidfd: a forkserver child's own sentinel is answered by the fork
  server, which may be stopped or gone) and a wake-up pipe with one selector, kept for
  the pool's life (not ``multiprocessing.connection.wait``, which builds a new one per
  call). Nothing polls: the thread also wakes when the earliest running item may
  overrun its ``timeout`` and when a worker start is due.
* Workers are launched by a starter thread, so a fork server that does not answer
  holds up no one else. A worker that dies before it is ready, or cannot be launched,
  is started again after a back-off; after ``START_ATTEMPTS`` failures in a row with no
  worker up, the jobs waiting fail with the reason (and the pool keeps trying).
* A small job submitted while the manager thread waits is sent by the submitting thread
  itself, to an idle worker or one job ahead to a busy one; the manager hears of it when
  the worker answers, so a job costs no thread switch (docs/decisions/0009). Both sides hold
  ``_turn_lock`` while they assign jobs; the submitter only tries it, and wakes the
  manager when it is taken. Large jobs (writing them blocks) and all jobs when items
  have a timeout (the manager times them) go through the manager.
* A dead worker fails only its own jobs, with ``BatchLost`` saying whether each job had
  started, which item was running (read from the progress array) and the error that
  item yields (``WorkerCrashedError``, or ``TaskTimeoutError`` for a worker killed for
  overrunning the timeout); a new worker takes its slot. The pipeline runs the other
  items again.
* A worker gets its next job while it still runs one (one job of at most
  ``PREFETCH_MAX_BYTES`` ahead), so it does not idle while a result travels back, nor
  while the parent's main thread holds the GIL. A job waiting behind a slow item is
  revoked and given to a worker that falls idle (see ``_worker_process``).
* ``kill()`` stops every item now: SIGTERM to each worker's process group, SIGKILL to
  what is left after ``TERMINATE_GRACE_SECONDS``.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import errno
import itertools
import logging
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import multiprocessing.util
import os
import pickle
import queue
import select
import selectors
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import cloudpickle

from . import _logging, _process_group, _wire, _worker_process
from ._errors import TaskTimeoutError, WorkerCrashedError
from ._slots import Slots
from ._worker import BatchLost
from ._worker_process import DONE, ERROR, INIT_FAILED, LOG, READY, RETIRING, SKIPPED

logger = logging.getLogger("inorder")

# A job this small goes to a worker that is still busy, to wait in its pipe: the worker
# starts it the moment it finishes the previous one. Larger jobs wait until the worker is
# idle, because writing them into a busy worker's pipe would block the manager thread.
PREFETCH_MAX_BYTES = 32 * 1024

# Between SIGTERM and SIGKILL when items are stopped: enough for a process started by an
# item to clean up; short enough that leaving a pipeline early takes well under a second.
TERMINATE_GRACE_SECONDS = 0.3

# Messages read from one worker before the others get a turn.
READS_PER_TURN = 64

# A worker that fails to start (dies before it is ready, or cannot be launched: no file
# descriptors, no memory, no fork server) is started again after a back-off, doubled for
# each failure in a row from START_BACKOFF_SECONDS to START_BACKOFF_MAX_SECONDS. After
# START_ATTEMPTS failures in a row with no worker ready, jobs have nowhere to run: those
# waiting fail with the reason, as do new ones, until a worker starts again. A killed
# starting worker costs one attempt; a fault that kills every start (an initializer that
# crashes the process) is reported after about a second, not hidden by retries.
START_ATTEMPTS = 5
START_BACKOFF_SECONDS = 0.05
START_BACKOFF_MAX_SECONDS = 1.0

# A worker's end is seen through a pidfd; its exit status comes through the fork server,
# at once when it runs (within milliseconds; later on a loaded machine), never while it
# is stopped. How long the pool waits for it before it reports the status as unknown and
# settles the worker's jobs: the other workers go on meanwhile.
EXIT_STATUS_WAIT_SECONDS = 5.0

# The longest the pool waits, as it ends, for its starter thread (idle, it ends at once).
STARTER_JOIN_SECONDS = 1.0

# How long the manager waits for a worker's gate lock to revoke a job. The worker holds
# it for microseconds; only a worker killed inside it would hold it longer, and then the
# job is not revoked but re-run when the death is noticed.
GATE_TIMEOUT_SECONDS = 0.05


class PoolStopped(Exception):
    """The pool was stopped before the job finished (internal to inorder)."""


class _Job:
    __slots__ = ("claimed", "future", "id", "parts", "size")

    def __init__(
        self,
        job_id: int,
        parts: list[bytes | memoryview],
        future: concurrent.futures.Future[Any],
    ) -> None:
        self.id = job_id
        self.parts = parts  # the pipe messages that carry it (see _wire)
        self.size = sum(len(part) for part in parts)
        self.future = future
        self.claimed = False  # its future is RUNNING: it can no longer be cancelled


class _Worker:
    __slots__ = (
        "conn",
        "ended_at",
        "eof",
        "gate",
        "jobs",
        "killed_for",
        "pidfd",
        "poller",
        "process",
        "ready",
        "retiring",
        "revoked",
        "slot",
        "status",
    )

    def __init__(
        self,
        slot: int,
        process: Any,
        conn: multiprocessing.connection.Connection,
        gate: Any,
        pidfd: int | None,
    ) -> None:
        self.slot = slot
        self.process = process
        self.conn = conn
        self.gate = gate
        # Readable once the process has ended, whoever reaps it. None for a child of
        # ours (its sentinel tells) or where pidfds are not available (then the
        # sentinel tells, through the fork server).
        self.pidfd = pidfd
        self.ended_at: float | None = None  # when its end was seen
        # What the process sentinel said: None (nothing yet), "ready" (the exit status
        # is there to read) or "lost" (it reported while the worker lived: the fork
        # server died, and the status will never come).
        self.status: str | None = None
        self.jobs: deque[_Job] = deque()  # sent, in the order the worker runs them
        self.revoked: set[int] = set()  # ids in jobs given to another worker since
        self.ready = False
        self.retiring = False
        self.eof = False
        self.killed_for: tuple[int, int] | None = None  # (job id, item index) of a timeout
        # Tells whether another message waits, with one syscall (conn.poll() builds a
        # selector per call). The pool registers the pipe.
        self.poller = select.poll()

    @property
    def pid(self) -> int:
        return self.process.pid  # type: ignore[no-any-return]


class WorkerPool(concurrent.futures.Executor):
    """Worker processes that survive each other's crashes. See the module docstring."""

    def __init__(
        self,
        workers: int,
        *,
        context: multiprocessing.context.BaseContext,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        timeout: float | None = None,
    ) -> None:
        self.size = workers
        self.restarts = 0
        self.timeouts = 0
        self._context = context
        self._initializer = (
            cloudpickle.dumps((initializer, tuple(initargs)), pickle.HIGHEST_PROTOCOL)
            if initializer is not None
            else None
        )
        self._max_tasks = max_tasks_per_child
        self._timeout = timeout
        self._log_level = _logging.forwarded_level()
        self._slots = Slots(context, workers)
        self._lifeline_r, self._lifeline_w = context.Pipe(duplex=False)
        # The self-pipe that wakes the manager thread. Writes never block (a full pipe
        # already guarantees a wake-up) and are coalesced by _wake_pending.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._close_wake_pipe = weakref.finalize(self, _close_fds, self._wake_r, self._wake_w)
        self._wake_pending = False
        self._lock = threading.Lock()  # guards _queue, _stopping, _killing, _wake_pending
        # Held by the manager thread while it deals with what happened (not while it
        # waits), and by a submitting thread that sends a job itself: guards the workers
        # and what each was sent.
        self._turn_lock = threading.Lock()
        self._queue: deque[_Job] = deque()
        self._stopping = False  # shutdown(): finish the queue, then let workers exit
        self._killing = False  # kill(): stop everything now
        self._workers: dict[int, _Worker] = {}
        self._selector: selectors.BaseSelector | None = None  # the manager thread's
        self._job_ids = itertools.count(1)
        # Why no job can run, for good (the initializer raised, the manager failed):
        # each job that cannot run gets an exception of its own made from it.
        self._broken: _Reason | None = None
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        # Resolved when the manager thread is done: every worker stopped, every job settled.
        self.ended: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._manage, name="inorder-pool", daemon=True)
        # Starting workers (see START_ATTEMPTS). The starter thread launches them, so a
        # fork server that does not answer never holds up the manager thread.
        self._starter = _Starter(self._launch, self._started_elsewhere)
        self._start_due: dict[int, float] = {}  # slot -> when to start a worker in it
        self._starting: set[int] = set()  # slots whose worker the starter is launching
        self._launched: deque[tuple[int, _Worker | BaseException]] = deque()  # by _lock
        self._finished = False  # the manager finished: a worker launched now is stopped
        # Workers whose end was seen, waiting for their exit status (see _deal_with).
        self._ended: set[_Worker] = set()
        self._start_failures = 0  # in a row, since a worker was last ready
        self._start_failure: _Reason | None = None  # the last one's reason

    # -- called from other threads ------------------------------------------------------

    def start(self) -> None:
        """Start the workers (from the manager thread).

        ``ready`` resolves once the first worker is up: it takes jobs while the others
        finish starting (``python -m benchmarks startup`` times both).
        It fails if ``START_ATTEMPTS`` starts fail in a row before any worker is up, or
        at once if the initializer raises: every worker runs it (and, with the ``spawn``
        start method, imports the main module), so what fails in one fails in all.
        Should the initializer raise later, the pool breaks then: jobs not yet sent
        fail with the reason.
        """
        _LIVE_POOLS.add(self)
        self._thread.start()

    def submit(
        self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[Any]:
        if kwargs:
            raise TypeError("WorkerPool.submit() takes positional arguments only")
        job_id = next(self._job_ids)
        parts = _wire.encode((job_id, fn, args))
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        job = _Job(job_id, parts, future)
        # The manager sends large jobs (writing one blocks) and, when items have a
        # timeout, every job (it times them, so it must hear of each).
        direct = self._timeout is None and job.size <= PREFETCH_MAX_BYTES
        with self._lock:
            if self._stopping or self._killing:
                raise RuntimeError("cannot submit to an inorder worker pool that was shut down")
            if self._broken is not None:
                raise self._broken.error()
            self._queue.append(job)
            if not direct:
                self._wake_locked()
        if direct and not self._send_directly():
            with self._lock:
                self._wake_locked()
        return future

    def _send_directly(self) -> bool:
        """Send queued small jobs to workers from the submitting thread, unless the
        manager is dealing with something (then it is woken to send them).

        Waking the manager costs the job a thread switch on its way and the caller the
        GIL for the manager's turn, at the moment the caller wants to get on.
        """
        if not self._turn_lock.acquire(blocking=False):
            return False
        try:
            self._assign(small_only=True)
        finally:
            self._turn_lock.release()
        return True

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Finish queued jobs (or cancel them), then let the workers exit."""
        with self._lock:
            self._stopping = True
            if cancel_futures:
                for job in self._queue:
                    job.future.cancel()
            self._wake_locked()
        if wait:
            self._join()

    def kill(self, wait: bool = True) -> None:
        """Stop every running item now, with any process it started; fail every job."""
        with self._lock:
            self._killing = True
            self._wake_locked()
        if wait:
            self._join()

    def kill_now(self) -> None:
        """``kill()`` from a finalizer or at exit: signal every worker group, and close
        the lifeline (a worker still starting ends as soon as it runs), without waiting."""
        with self._lock:
            self._killing = True
            self._wake_locked()
        for worker in list(self._workers.values()):
            _signal_group(worker, signal.SIGKILL)
        self._lifeline_w.close()

    def _wake_locked(self) -> None:
        if self._wake_pending or not self._close_wake_pipe.alive:
            return
        self._wake_pending = True
        # A full pipe means the manager has wake-ups enough to read.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def _join(self) -> None:
        if self._thread.is_alive():
            self._thread.join()
        with self._lock:
            self._close_wake_pipe()
        # Every worker gets the lifeline's reading end as it starts: a launch under way
        # may still be sending it to the fork server.
        self._starter.release_after_launch(self._lifeline_r.close)
        self._lifeline_w.close()

    # -- the manager thread -------------------------------------------------------------

    def _manage(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        try:
            self._run()
        finally:
            self._selector.close()
            _LIVE_POOLS.discard(self)
            self.ended.set_result(None)

    def _run(self) -> None:
        for slot in range(self.size):
            self._start_due[slot] = 0.0
        try:
            while self._turn():
                pass
        except BaseException as exc:
            logger.exception("the inorder worker pool's manager thread failed")
            self._broken = _Reason(f"the inorder worker pool failed: {exc!r}", exc)
        finally:
            self._end()

    def _end(self) -> None:
        """Stop the workers and fail what is left, where no job can be sent meanwhile."""
        with self._turn_lock:
            with self._lock:
                self._finished = True
                launched = list(self._launched)
                self._launched.clear()
            self._starter.close()  # one stuck on the fork server is left to finish
            for _, outcome in launched:
                if isinstance(outcome, _Worker):
                    self._workers[outcome.slot] = outcome  # stopped with the others
            self._terminate_all()
            self._fail_everything()

    def _turn(self) -> bool:
        """Wait for something to happen and deal with it. False when the pool is done."""
        with self._turn_lock:
            with self._lock:
                killing, stopping = self._killing, self._stopping
            if killing:
                return False
            if stopping and not self._queue and all(not w.jobs for w in self._workers.values()):
                self._release_idle_workers()
                return False
            timeout = self._next_check()
        assert self._selector is not None
        events = [key.data for key, _ in self._selector.select(timeout)]
        with self._turn_lock:
            self._deal_with(events)
        return True

    def _deal_with(self, events: list[tuple[str, Any]]) -> None:
        for kind, worker in events:
            if kind == "wake":
                with self._lock:
                    self._wake_pending = False
                    os.read(self._wake_r, 4096)
            elif kind == "conn":
                self._read(worker, READS_PER_TURN)
        # After reading: what a worker sent before it died counts. Ends before statuses:
        # a pidfd is readable no later than the fork server can report the status.
        for kind, worker in events:
            if kind == "exit":
                self._forget(worker.pidfd if worker.pidfd is not None else worker.process.sentinel)
                worker.ended_at = time.monotonic()
                self._ended.add(worker)
                if worker.pidfd is None:
                    worker.status = "ready"  # the sentinel itself reported the end
        for kind, worker in events:
            if kind == "status":  # the fork server reported the status, or died
                self._forget(worker.process.sentinel)
                worker.status = "ready" if worker.ended_at is not None else "lost"
        if self._ended:
            now = time.monotonic()
            for worker in list(self._ended):
                assert worker.ended_at is not None
                if worker.status is not None or now >= worker.ended_at + EXIT_STATUS_WAIT_SECONDS:
                    self._ended.discard(worker)
                    self._reap(worker)
        if self._launched:  # read without the lock: the starter wakes the manager after it
            self._register_launched()
        if self._start_due:
            self._start_due_workers(time.monotonic())
        self._check_timeouts()
        self._assign()

    # -- starting workers ---------------------------------------------------------------

    def _start_due_workers(self, now: float) -> None:
        """Hand the slots whose start is due to the starter thread."""
        with self._lock:
            if self._killing:
                return
        for slot, due in list(self._start_due.items()):
            if due <= now:
                del self._start_due[slot]
                self._starting.add(slot)
                self._slots.reset(slot)
                self._starter.start(slot)

    def _launch(self, slot: int) -> _Worker:
        """Start a worker process in ``slot`` (in the starter thread)."""
        parent_end, child_end = self._context.Pipe(duplex=True)
        try:
            gate = self._context.Lock()
            process = self._context.Process(  # type: ignore[attr-defined]
                target=_worker_process.main,
                args=(
                    child_end,
                    self._lifeline_r,
                    gate,
                    self._slots.array,
                    slot,
                    self._initializer,
                    self._log_level,
                    self._max_tasks,
                    self._timeout is not None,
                ),
                name=f"inorder-worker-{slot}",
            )
            process.start()
            _untrack(process)
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()
        # A forkserver child's sentinel reports its end only through the fork server; a
        # pidfd tells without it. A child of ours (spawn, fork) has a sentinel of its own.
        pidfd = None
        if self._context.get_start_method() == "forkserver":
            with contextlib.suppress(AttributeError, OSError):  # no pidfds: the sentinel
                pidfd = os.pidfd_open(process.pid)
        worker = _Worker(slot, process, parent_end, gate, pidfd)
        worker.poller.register(parent_end.fileno(), select.POLLIN)
        return worker

    def _started_elsewhere(self, slot: int, outcome: _Worker | BaseException) -> None:
        """The starter thread's report: a worker launched in ``slot``, or why not."""
        with self._lock:
            if not self._finished:
                self._launched.append((slot, outcome))
                self._wake_locked()
                return
        if isinstance(outcome, _Worker):  # the pool ended meanwhile: it has no use
            _signal_group(outcome, signal.SIGKILL)
            outcome.process.join()
            outcome.conn.close()
            _close_fds(*([outcome.pidfd] if outcome.pidfd is not None else []))

    def _register_launched(self) -> None:
        with self._lock:
            launched = list(self._launched)
            self._launched.clear()
        for slot, outcome in launched:
            self._starting.discard(slot)
            if isinstance(outcome, OSError):  # out of processes, memory, descriptors
                attempts = self._start_failures + 1
                reason = f"could not start a worker process ({attempts} tries in a row): {outcome}"
                self._start_failed(slot, _Reason(reason, outcome))
                continue
            if isinstance(outcome, BaseException):  # a mistake that every try repeats
                self._break(_Reason(f"could not start a worker process: {outcome}", outcome))
                continue
            self._workers[slot] = outcome
            assert self._selector is not None
            self._selector.register(outcome.conn, selectors.EVENT_READ, ("conn", outcome))
            if outcome.pidfd is not None:
                self._selector.register(outcome.pidfd, selectors.EVENT_READ, ("exit", outcome))
                sentinel_event = ("status", outcome)
            else:
                sentinel_event = ("exit", outcome)
            self._selector.register(outcome.process.sentinel, selectors.EVENT_READ, sentinel_event)

    def _start_failed(self, slot: int, reason: _Reason) -> None:
        """A start in ``slot`` failed: try again after a back-off.

        From ``START_ATTEMPTS`` failures in a row on, with no worker up, the jobs have
        nowhere to run: those waiting (and ``ready``) fail with the reason, each with an
        error of its own, at every failed start. A job submitted meanwhile waits for the
        next start, which may succeed: the pool recovers as soon as a worker starts.
        """
        self._start_failures += 1
        self._start_failure = reason
        backoff = START_BACKOFF_SECONDS * 2 ** min(self._start_failures - 1, 16)
        self._start_due[slot] = time.monotonic() + min(backoff, START_BACKOFF_MAX_SECONDS)
        if self._start_failures < START_ATTEMPTS:
            return
        if any(w.ready and w.ended_at is None for w in self._workers.values()):
            return
        self._set_ready_error(reason.error())
        self._fail_queued(reason.error)

    def _died_while_starting(self, exitcode: int | None) -> _Reason:
        if self._initializer is not None:
            where = "while the initializer ran"
        else:
            where = "before it was ready for items"
        reason = (
            f"worker processes keep dying while they start: {self._start_failures + 1} in a "
            f"row, the last {where} ({describe_exit(exitcode)})"
        )
        if self._context.get_start_method() == "spawn":
            reason += (
                ". With the 'spawn' start method (macOS, Windows) each worker imports your "
                "main module again: if your script starts the pipeline at module level, "
                "move that code under 'if __name__ == \"__main__\":'"
            )
        return _Reason(reason + ". See the worker's output above on stderr, if any.", None)

    def _read(self, worker: _Worker, limit: int) -> None:
        conn = worker.conn
        try:
            while limit and worker.poller.poll(0):
                limit -= 1
                self._handle(worker, _wire.receive(conn))
        except (EOFError, OSError):
            worker.eof = True  # it is exiting: its sentinel reports when it is gone
            self._forget(worker.conn)

    def _forget(self, fileobj: Any) -> None:
        """Stop waiting on ``fileobj`` (a worker's pipe or sentinel)."""
        if self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(fileobj)

    def _handle(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == LOG:
            _logging.emit_in_parent(message[1])
        elif kind in (DONE, ERROR, SKIPPED):
            job = worker.jobs.popleft()
            assert job.id == message[1], (job.id, message[1])
            if kind == SKIPPED:
                if job.id in worker.revoked:
                    worker.revoked.discard(job.id)  # another worker has it
                else:  # a retiring worker handed it back: first in line for the next one
                    with self._lock:
                        self._queue.appendleft(job)
            elif kind == DONE:
                # Resolved here, in the turn: the first result of a burst comes sooner
                # than when resolved after it (docs/decisions/0009).
                job.future.set_result(message[2])
            else:
                error = message[2]
                error.add_note(f"inorder: raised in worker process {worker.pid}:\n{message[3]}")
                job.future.set_exception(error)
        elif kind == READY:
            worker.ready = True
            self._start_failures = 0
            self._start_failure = None
            if not self.ready.done():
                self.ready.set_result(None)
        elif kind == RETIRING:
            worker.retiring = True
        elif kind == INIT_FAILED:
            self._break(
                _Reason(
                    "the initializer given to the pipeline raised in worker process "
                    f"{worker.pid}, so the workers cannot run items:\n{message[1]}",
                    None,
                )
            )

    def _reap(self, worker: _Worker) -> None:
        """A worker process ended: settle its jobs and put a new worker in its slot."""
        if not worker.eof:
            self._read(worker, -1)  # what it sent before it died (logs, finished jobs)
        self._forget(worker.conn)
        self._forget(worker.process.sentinel)
        exitcode = self._exit_status(worker)
        _signal_group(worker, signal.SIGKILL)  # processes its items started: orphans now
        worker.conn.close()
        _close_fds(*([worker.pidfd] if worker.pidfd is not None else []))
        del self._workers[worker.slot]
        with self._lock:
            ending = self._killing
        if worker.ready and not ending:
            self.restarts += 1  # before the jobs fail, so statistics see it with them
        if worker.jobs:
            self._fail_jobs_of_dead(worker, exitcode)
        if ending or self._broken is not None:
            return
        if worker.ready:
            self._start_due[worker.slot] = 0.0
        else:
            self._start_failed(worker.slot, self._died_while_starting(exitcode))

    def _exit_status(self, worker: _Worker) -> int | None:
        """An ended worker's exit status, or None if the fork server has not told it."""
        if worker.status != "ready":
            return None
        worker.process.join(0)
        return worker.process.exitcode  # type: ignore[no-any-return]

    def _fail_jobs_of_dead(self, worker: _Worker, exitcode: int | None) -> None:
        running, index, _ = self._running_item(worker)
        for job in worker.jobs:
            if job.id in worker.revoked:
                continue  # another worker has it
            if worker.killed_for is not None:  # we killed it: only the overrun item is to blame
                timed_out = job.id == worker.killed_for[0]
                lost = BatchLost(
                    timed_out,
                    worker.killed_for[1] if timed_out else None,
                    self._timeout_error(worker.pid),
                )
            else:
                started = job.id == running
                lost = BatchLost(
                    started,
                    index if started and index >= 0 else None,
                    WorkerCrashedError(
                        f"the worker process {worker.pid} died while running this item "
                        f"({describe_exit(exitcode)}); it was replaced and the stream went on",
                        pid=worker.pid,
                        exitcode=exitcode,
                    ),
                )
            job.future.set_exception(lost)
        worker.jobs.clear()

    def _timeout_error(self, pid: int | None) -> TaskTimeoutError:
        assert self._timeout is not None
        return TaskTimeoutError(
            f"this item ran longer than the timeout of {self._timeout:g} s; its worker "
            f"process {pid} was killed (with any process it started) and replaced",
            timeout=self._timeout,
            pid=pid,
        )

    def _break(self, reason: _Reason) -> None:
        """The workers cannot run anything (their initializer fails): fail all jobs."""
        self._broken = reason
        self._set_ready_error(reason.error())
        self._fail_queued(reason.error)

    def _fail_queued(self, error: Callable[[], BaseException]) -> None:
        """Fail the jobs not sent to a worker, each with an exception of its own."""
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        for job in queued:
            if job.claimed or job.future.set_running_or_notify_cancel():
                job.future.set_exception(error())

    def _set_ready_error(self, error: BaseException) -> None:
        if not self.ready.done():
            self.ready.set_exception(error)

    def _assign(self, *, small_only: bool = False) -> None:
        """Send queued jobs to idle workers, then one small job ahead to busy ones.

        ``small_only`` (a submitting thread, which must not block): send no large job,
        and take no job back from a busy worker's pipe for an idle one (that waits for
        the worker's gate). The manager does both in its next turn.
        """
        for ahead in (False, True):
            for worker in self._workers.values():
                if not self._can_take(worker, ahead):
                    continue
                job = self._next_job(small_only=ahead or small_only)
                if job is None:
                    if not ahead and not small_only:
                        self._steal_for_idle_workers()
                    return
                self._send(worker, job)

    def _steal_for_idle_workers(self) -> None:
        """Give jobs waiting behind a running one to workers that have nothing to do."""
        idle = [w for w in self._workers.values() if self._can_take(w, ahead=False)]
        for thief in idle:
            for victim in self._workers.values():
                if len(victim.jobs) > 1 and not victim.revoked:
                    job = victim.jobs[-1]
                    if self._revoke(victim, job):
                        self._send(thief, job)
                        break

    def _revoke(self, worker: _Worker, job: _Job) -> bool:
        """Take back ``job`` from ``worker``'s pipe, unless it has started."""
        if not worker.gate.acquire(timeout=GATE_TIMEOUT_SECONDS):
            return False
        try:
            if self._slots.job(worker.slot) == job.id:
                return False
            self._slots.revoke(worker.slot, job.id)
        finally:
            worker.gate.release()
        worker.revoked.add(job.id)
        return True

    def _send(self, worker: _Worker, job: _Job) -> None:
        worker.jobs.append(job)
        # If it died, _reap() finds the job unstarted and fails it as such.
        with contextlib.suppress(OSError):
            _wire.send_parts(worker.conn, job.parts)

    def _can_take(self, worker: _Worker, ahead: bool) -> bool:
        if not worker.ready or worker.retiring or worker.eof or worker.killed_for:
            return False
        if worker.revoked:
            # Its progress slot holds one revoked job id until the worker skips that
            # job: revoking another meanwhile would overwrite it, and it would then run
            # a job that another worker runs too.
            return False
        if not ahead:
            return not worker.jobs
        # A worker that may retire after its job must not hold another one.
        return len(worker.jobs) == 1 and self._max_tasks is None

    def _next_job(self, *, small_only: bool) -> _Job | None:
        with self._lock:
            while self._queue:
                job = self._queue[0]
                if small_only and job.size > PREFETCH_MAX_BYTES:
                    return None
                self._queue.popleft()
                if job.claimed or job.future.set_running_or_notify_cancel():
                    job.claimed = True
                    return job
        return None

    def _next_check(self) -> float | None:
        """Seconds until the manager has something to do with no event to wake it: a
        worker start is due, an ended worker's status is given up on, or the earliest
        running item may overrun its timeout."""
        if not self._start_due and not self._ended and self._timeout is None:
            return None  # the common case: only events wake the manager
        now = time.monotonic()
        times = list(self._start_due.values())
        times += [
            w.ended_at + EXIT_STATUS_WAIT_SECONDS for w in self._ended if w.ended_at is not None
        ]
        if self._timeout is not None:
            times += [
                self._deadline(worker, now)[0]
                for worker in self._workers.values()
                if worker.jobs and worker.killed_for is None and worker.ended_at is None
            ]
        return max(0.0, min(times) - now) if times else None

    def _running_item(self, worker: _Worker) -> tuple[int, int, float]:
        """(job id, item index, item start) from the worker's slot (see ``_slots``)."""
        return self._slots.running(worker.slot)

    def _deadline(self, worker: _Worker, now: float) -> tuple[float, int, int]:
        """When the item ``worker`` runs may overrun, with that item's job id and index."""
        assert self._timeout is not None
        job, index, started = self._running_item(worker)
        if index >= 0 and any(j.id == job for j in worker.jobs):
            return started + self._timeout, job, index
        # Between items: whatever starts next cannot overrun before now + timeout.
        return now + self._timeout, job, -1

    def _check_timeouts(self) -> None:
        if self._timeout is None:
            return
        now = time.monotonic()
        for worker in self._workers.values():
            if not worker.jobs or worker.killed_for is not None:
                continue
            deadline, job, index = self._deadline(worker, now)
            if deadline <= now:
                worker.killed_for = (job, index)
                self.timeouts += 1
                _signal_group(worker, signal.SIGKILL)

    def _release_idle_workers(self) -> None:
        """Normal shutdown: every worker is idle; ask each to exit, then make sure."""
        for worker in self._workers.values():
            with contextlib.suppress(OSError):
                _wire.send_parts(worker.conn, _wire.encode(None))
        _wait_for_ends(list(self._workers.values()), TERMINATE_GRACE_SECONDS * 10)

    def _terminate_all(self) -> None:
        """Stop every worker and what its items started: TERM, a grace period, KILL.

        Waits on each worker's pidfd, not on the fork server, which reports a worker's
        end only when it answers (not while it is stopped)."""
        workers = list(self._workers.values())
        for worker in workers:
            if worker.ended_at is None:
                _signal_group(worker, signal.SIGTERM)
        _wait_for_ends(workers, TERMINATE_GRACE_SECONDS)
        for worker in workers:
            _signal_group(worker, signal.SIGKILL)
        _wait_for_ends(workers, _process_group.STOP_WAIT_SECONDS)
        for worker in workers:
            # Processes its items started may outlive the worker: they end before this
            # returns, so that nothing outlives the pipeline that is stopping.
            if worker.process.pid is not None:
                _process_group.stop_group(worker.process.pid)
            if not worker.eof:
                self._read(worker, -1)
            worker.conn.close()
            _close_fds(*([worker.pidfd] if worker.pidfd is not None else []))

    def _fail_everything(self) -> None:
        def error() -> BaseException:
            if self._broken is not None:
                return self._broken.error()
            return PoolStopped("the inorder worker pool was stopped")

        self._set_ready_error(error())
        for worker in self._workers.values():
            for job in worker.jobs:
                if job.id not in worker.revoked and not job.future.done():
                    job.future.set_exception(error())
            worker.jobs.clear()
        self._workers.clear()
        with self._lock:
            self._killing = True  # nothing more is accepted
        self._fail_queued(error)


# Pools whose manager thread runs: stopped at interpreter exit (see _stop_live_pools).
_LIVE_POOLS: weakref.WeakSet[WorkerPool] = weakref.WeakSet()


def _stop_live_pools() -> None:
    """At exit, stop the workers of every pool still running, before multiprocessing's
    own exit handler joins its child processes: a program interrupted before it could
    stop its pipeline (a second Ctrl-C during the first one's cleanup) would otherwise
    wait on workers that only end when this process has ended."""
    for pool in list(_LIVE_POOLS):
        pool.kill_now()


# Registered after multiprocessing's (imported above), so it runs before it.
atexit.register(_stop_live_pools)


class _Reason:
    """Why jobs cannot run: each job gets an exception of its own, made from this, so
    that what one consumer adds to it (a note naming its item) stays its own."""

    __slots__ = ("cause", "message")

    def __init__(self, message: str, cause: BaseException | None) -> None:
        self.message = message
        self.cause = cause

    def error(self) -> RuntimeError:
        error = RuntimeError(self.message)
        error.__cause__ = self.cause
        return error


class _Starter:
    """Launches worker processes in a thread of its own.

    Starting a worker through the fork server waits for the server to answer: a server
    that is stopped (SIGSTOP) or overloaded would otherwise hold up the manager thread,
    and with it every other worker's results and the pool's shutdown. ``close()`` ends
    the thread after the launch in progress; a launch stuck on a server that never
    answers leaves the thread (a daemon) waiting, and the worker it starts once the
    server answers finds its pool gone and is stopped (see ``_started_elsewhere``).
    """

    def __init__(
        self,
        launch: Callable[[int], _Worker],
        report: Callable[[int, _Worker | BaseException], None],
    ) -> None:
        self._launch = launch
        self._report = report
        self._requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards _launching, _released, _after_launch
        self._released = False  # the pool let go of what launches use: none may start
        self._after_launch: list[Callable[[], None]] = []

    def start(self, slot: int) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="inorder-pool-starter", daemon=True
            )
            self._thread.start()
        self._requests.put(slot)

    def close(self) -> None:
        """End the thread: at once if it waits for work; if it is launching a worker,
        once the launch is over, without waiting for it here (see the class docstring).
        The wait is bounded all the same: a request taken meanwhile may start a launch."""
        self._requests.put(None)
        thread = self._thread
        if thread is not None and not self._launching:
            thread.join(STARTER_JOIN_SECONDS)

    _launching = False  # a launch is under way (read by close() in the manager thread)

    def release_after_launch(self, release: Callable[[], None]) -> None:
        """Call ``release()`` (close what a launch passes to the new worker) now, or once
        the launch under way is over; no launch starts after this call.

        A descriptor closed while the fork server is being sent it makes the send fail
        half-way: the server reads a request without descriptors and ends, and with it
        every start of every pool of this process until multiprocessing starts a new
        server."""
        with self._lock:
            self._released = True
            if self._launching:
                self._after_launch.append(release)
                return
        release()

    def _run(self) -> None:
        while (slot := self._requests.get()) is not None:
            with self._lock:
                if self._released:
                    continue  # the pool is gone: nobody waits for this worker
                self._launching = True
            try:
                outcome: _Worker | BaseException = self._launch(slot)
            except Exception as exc:  # noqa: BLE001 - reported: the manager retries
                outcome = exc
            finally:
                with self._lock:
                    self._launching = False
                    after, self._after_launch = self._after_launch, []
                for release in after:
                    release()
            self._report(slot, outcome)


def _wait_for_ends(workers: list[_Worker], seconds: float) -> None:
    """Wait until every worker's process has ended, or ``seconds`` pass.

    A worker's pidfd tells when it ends; without one, its sentinel (which the fork
    server may answer late)."""
    deadline = time.monotonic() + seconds
    waiting = {
        (w.pidfd if w.pidfd is not None else w.process.sentinel): w
        for w in workers
        if w.ended_at is None
    }
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        for fd in multiprocessing.connection.wait(list(waiting), remaining):
            worker = waiting.pop(fd)
            worker.ended_at = time.monotonic()
            worker.process.join(0)  # reaps a child of ours; the fork server reaps its own


def describe_exit(exitcode: int | None) -> str:
    """A process's exit status in words: 'exit code 3', 'killed by SIGKILL'."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"


def _untrack(process: Any) -> None:
    """Leave a started worker out of multiprocessing's set of the program's children.

    Every ``Process.start()`` in the program, and ``active_children()``, first polls each
    child in that set. A forkserver child's exit status is 8 bytes its sentinel delivers
    once: a second thread reading it while the pool does gets end of file, and
    multiprocessing then records exit code 255 in place of the real one. The pool alone
    reads its workers' statuses, and stops them itself (also at exit).
    """
    children = getattr(multiprocessing.process, "_children", None)
    if isinstance(children, set):
        children.discard(process)


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _signal_group(worker: _Worker, signum: int) -> None:
    """Signal a worker's process group (it leads one), or the worker alone if it does not."""
    pid = worker.process.pid
    if pid is None:
        return
    try:
        # A group outlives its leader while members remain, and its id is not reused
        # as a pid meanwhile, so this is safe after the worker itself was reaped.
        os.killpg(pid, signum)
        return
    except OSError as exc:
        if exc.errno not in (errno.ESRCH, errno.EPERM):
            raise
    if worker.process.exitcode is None:  # not reaped: the pid is still this worker's
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
