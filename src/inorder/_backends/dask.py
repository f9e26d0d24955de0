"""Items run on a Dask cluster, through the user's ``distributed.Client``
(``executor=client``).

Each batch is one Dask task, submitted with ``pure=False`` (two batches with equal
arguments are two tasks, each run) under a key named ``inorder-batch-<uuid>``. Its
result travels back through the client, which gathers it as Dask does; a completion
hops onto the pipeline's loop like any executor's. What Dask does, inorder does not
redo: a worker lost while it runs a batch is Dask's to reschedule (so an item may run
more than once; each is delivered once), and the task's exception keeps its type and
traceback. What inorder adds:

* a batch Dask gave up on (``KilledWorker``: it was running on each worker that died
  while it ran, ``distributed.scheduler.allowed-failures`` + 1 times) is reported as
  lost (``BatchLost``) with the error ``WorkerCrashedError``: the pipeline runs its items
  one by one, so that only the one that kills its worker fails, at its position;
* the pipeline's in-flight bound follows the cluster's threads as it scales (unless the
  user fixed ``workers=``): read from the scheduler at most once a second, when a batch
  completes;
* a cancelled future releases its task: the scheduler forgets a queued one and tells
  the worker to drop a running one (a thread cannot be interrupted: it runs on, its
  result is discarded). Leaving the pipeline cancels every future it has, so nothing of
  it stays queued or processing on the scheduler.

The client and its cluster are the user's: inorder never closes them. ``distributed``
is imported only by this module, which is loaded only for a client the user made
(so the package was imported already).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeGuard

from .._errors import WorkerCrashedError
from .._eventloop import LoopBridge
from .._serialize import Codec, PickleCodec
from .._worker import BatchLost

if TYPE_CHECKING:
    from distributed import Client

# Work per batch on a cluster: a task costs milliseconds of the scheduler's, the
# worker's and the client's time (docs/decisions/0016).
CLUSTER_BATCH_SECONDS = 0.25

# How often, at most, the pipeline's in-flight bound is brought in line with the
# cluster's threads (a scheduler round trip, made when a batch completes).
THREADS_CHECK_SECONDS = 1.0


def is_dask_client(executor: object) -> TypeGuard[Client]:
    """Whether ``executor`` is a ``distributed.Client``, without importing distributed
    when the caller did not."""
    import sys

    distributed = sys.modules.get("distributed")
    return distributed is not None and isinstance(executor, distributed.Client)


def check_running(client: Any) -> None:
    """Refuse a client that is not connected: nothing could run."""
    status = getattr(client, "status", None)
    if status != "running":
        raise ValueError(
            f"the Dask client is {status!r}, not 'running': connect it first "
            "(Client(address), or 'await Client(address, asynchronous=True)') and keep it "
            "open while the pipeline runs"
        )


def cluster_threads(client: Any) -> int:
    """The threads of the client's cluster now (at least 1, so that a cluster whose
    workers are still starting gets its first batch). A synchronous client asks the
    scheduler; an asynchronous one answers from what it last heard (every 2 s)."""
    check_running(client)
    info = client.scheduler_info(n_workers=0)
    return max(1, int(info.get("total_threads", 0) or 0))


class DaskExecutor(concurrent.futures.Executor):
    """``submit()`` as one Dask task per call, with ``concurrent.futures`` futures.

    Works with a synchronous client (its own event loop in a thread) and with an
    asynchronous one on the caller's asyncio loop: every exchange with the client runs
    on the client's loop. ``on_threads(n)`` is called there with the cluster's threads,
    at most once every ``THREADS_CHECK_SECONDS``, as batches complete.
    """

    def __init__(self, client: Any, on_threads: Callable[[int], None] | None = None) -> None:
        self._client = client
        self._on_threads = on_threads
        self._tasks: dict[str, Any] = {}  # key -> the Dask future, while it is pending
        self._lock = threading.Lock()  # _tasks is touched from the client's loop too
        self._shutdown = False
        self._threads_checked = time.monotonic()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._shutdown:
            raise RuntimeError("cannot submit to a Dask executor after shutdown")
        key = f"inorder-batch-{uuid.uuid4().hex}"
        task = self._client.submit(fn, *args, key=key, pure=False, **kwargs)
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._tasks[key] = task
        future.add_done_callback(functools.partial(self._release_if_cancelled, key))
        self._client.loop.add_callback(self._relay, key, task, future)
        return future

    def _release_if_cancelled(self, key: str, future: concurrent.futures.Future[Any]) -> None:
        if future.cancelled():
            self._release(key)

    def _release(self, key: str) -> None:
        with self._lock:
            task = self._tasks.pop(key, None)
        if task is not None:
            # The last reference released: the scheduler forgets the task (thread-safe).
            task.release()

    async def _relay(self, key: str, task: Any, future: concurrent.futures.Future[Any]) -> None:
        """On the client's loop: wait for the task, pass its outcome to ``future``."""
        try:
            result = await self._client.gather(task, asynchronous=True)
        except BaseException as exc:  # noqa: BLE001 - every outcome goes to the future
            outcome: BaseException | None = _lost_if_killed(exc)
            result = None
        else:
            outcome = None
        finally:
            # The result is here: the cluster need not keep it.
            self._release(key)
        with contextlib.suppress(concurrent.futures.InvalidStateError):  # cancelled meanwhile
            if outcome is None:
                future.set_result(result)
            elif isinstance(outcome, (asyncio.CancelledError, concurrent.futures.CancelledError)):
                if future.cancel():
                    future.set_running_or_notify_cancel()
            else:
                future.set_exception(outcome)
        await self._check_threads()

    async def _check_threads(self) -> None:
        if self._on_threads is None:
            return
        now = time.monotonic()
        if now - self._threads_checked < THREADS_CHECK_SECONDS:
            return
        self._threads_checked = now
        try:
            info = await self._client.scheduler.identity(n_workers=0)
        except Exception:  # noqa: BLE001 - the bound stays as it was; the next batch asks again
            return
        self._on_threads(max(1, int(info.get("total_threads", 0) or 0)))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking calls and release every task still pending. Never closes the
        client."""
        self._shutdown = True
        with self._lock:
            keys = list(self._tasks)
        for key in keys:
            self._release(key)


def _lost_if_killed(error: BaseException) -> BaseException:
    """Dask's ``KilledWorker`` as the neutral report of a lost batch; other errors as
    they are (the task's own exception, or the client's)."""
    from distributed.scheduler import KilledWorker

    if not isinstance(error, KilledWorker):
        return error
    crash = WorkerCrashedError(
        "the Dask workers running this item died (Dask ran it on "
        f"distributed.scheduler.allowed-failures + 1 workers, then gave up: {error}); "
        "a native crash, os._exit() or the worker's memory limit (the nanny kills a "
        "worker past it) are the usual causes",
        pid=None,
        exitcode=None,
    )
    return BatchLost(True, None, crash)


class DaskBackend:
    """A pipeline's batches as tasks on the user's Dask client (never closed here)."""

    batch_seconds = CLUSTER_BATCH_SECONDS

    def __init__(self, client: Any, workers: int, *, follow_cluster: bool) -> None:
        self._client = client
        self.workers = workers
        self._executor = DaskExecutor(client, self._threads_now if follow_cluster else None)

    def _threads_now(self, threads: int) -> None:
        self.workers = threads  # read by the pipeline as batches complete

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._executor

    restarts = 0  # Dask's nannies restart its workers: not counted here
    timeouts = 0  # no timeout on a cluster: Dask cannot stop a running task

    def codec(self) -> Codec:
        return PickleCodec()

    async def start(self, bridge: LoopBridge) -> None:
        client = self._client
        try:
            check_running(client)  # it may have been closed since the options were made
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        if client.asynchronous:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is not client.loop.asyncio_loop:
                raise RuntimeError(
                    "this asynchronous Dask client runs on another event loop (Dask's "
                    "asynchronous clients need the asyncio loop they were made on): make "
                    "it on this loop, or pass a synchronous Client(address), which works "
                    "from any loop, trio included"
                )

    async def stop(self, *, abandon: bool) -> None:
        self._executor.shutdown(wait=False)  # the client and cluster stay the user's
