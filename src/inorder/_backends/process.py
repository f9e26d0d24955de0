"""Items run in inorder's own worker processes (``executor="process"``, the default).

The pool (``_pool.WorkerPool``) starts with ``forkserver`` on Linux (``fork`` is unsafe in
a process that has threads, and every asyncio program has some), whose workers do not
import the main module (``_forkserver``), and ``spawn`` elsewhere.
``start()`` launches every worker before the first item arrives, and returns as soon as
one is ready: items start on it while the others finish starting.

Stopping early does not wait for long-running items: each worker's process group is
sent SIGTERM, then SIGKILL after a short grace period. A weakref finalizer kills the
workers, without waiting, if a pipeline is dropped without being closed; and workers
kill themselves when the parent dies (see ``_worker_process``), so none is orphaned.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.context
import sys
import weakref
from collections.abc import Callable
from typing import Any

from .. import _forkserver
from .._batching import TARGET_BATCH_SECONDS
from .._eventloop import LoopBridge
from .._options import Options
from .._pool import WorkerPool
from .._serialize import Codec, PickleCodec


def default_context(start_method: str | None = None) -> multiprocessing.context.BaseContext:
    """The context for ``start_method``; by default ``forkserver`` on Linux (workers skip
    the main module) and ``spawn`` elsewhere."""
    if start_method is None:
        start_method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    if start_method != "forkserver":
        return multiprocessing.get_context(start_method)
    if _forkserver.available():
        return _forkserver.WorkerContext()
    return multiprocessing.get_context("forkserver")


class ProcessBackend:
    """A ``WorkerPool`` owned by the pipeline."""

    batch_seconds = TARGET_BATCH_SECONDS  # a call costs a fraction of a millisecond

    def __init__(
        self,
        workers: int,
        *,
        initializer: Callable[..., Any] | None = None,
        initargs: tuple[Any, ...] = (),
        max_tasks_per_child: int | None = None,
        timeout: float | None = None,
        start_method: str | None = None,
    ) -> None:
        self.workers = workers
        self._pool = WorkerPool(
            workers,
            context=default_context(start_method),
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
            timeout=timeout,
        )
        self._finalizer = weakref.finalize(self, self._pool.kill_now)
        self._bridge: LoopBridge | None = None

    @classmethod
    def from_options(cls, options: Options) -> ProcessBackend:
        """A pool with ``options``' workers, timeout, initializer and start method."""
        return cls(
            options.workers,
            initializer=options.initializer,
            initargs=options.initargs,
            max_tasks_per_child=options.max_tasks_per_child,
            timeout=options.timeout,
            start_method=options.start_method,
        )

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._pool

    @property
    def restarts(self) -> int:
        return self._pool.restarts

    @property
    def timeouts(self) -> int:
        return self._pool.timeouts

    def codec(self) -> Codec:
        return PickleCodec(out_of_band=True)

    async def start(self, bridge: LoopBridge) -> None:
        self._bridge = bridge
        self._pool.start()
        await bridge.wait(self._pool.ready)

    async def stop(self, *, abandon: bool) -> None:
        """Stop the pool and wait, on the loop, for its manager thread to finish.

        No thread is parked on the wait: an interrupt that ends the event loop meanwhile
        leaves nothing behind that the interpreter would wait for at exit (the pool's
        own threads are daemons, and its workers are stopped at exit, see _pool)."""
        self._finalizer.detach()
        if abandon:
            self._pool.kill(wait=False)
        else:
            self._pool.shutdown(wait=False)
        if self._bridge is not None:
            await self._bridge.wait(self._pool.ended)
        self._pool.kill(wait=True)  # the manager is done: closes what it left open
