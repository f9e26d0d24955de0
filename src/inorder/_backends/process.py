"""Items run in worker processes (``executor="process"``, the default).

A ``ProcessPoolExecutor`` owned by the pipeline, started with ``forkserver`` on Linux
(``fork`` is unsafe in a process that has threads, and every asyncio program has some)
and ``spawn`` elsewhere. ``start()`` launches every worker before the first item arrives.

Stopping early must not wait for long-running items: the workers are terminated, which
``ProcessPoolExecutor`` notices as a broken pool and winds down; any process that
survives the grace period is killed. A weakref finalizer does the same, without waiting,
if a pipeline is dropped without being closed, so no worker outlives its pipeline.
"""

from __future__ import annotations

import concurrent.futures
import concurrent.futures.process
import multiprocessing
import multiprocessing.context
import sys
import weakref
from collections.abc import Collection
from typing import Any

import anyio

from .. import _worker
from .._eventloop import FutureLike, LoopBridge
from .._serialize import Codec, PickleCodec

# How long terminated workers get to exit before they are killed.
TERMINATE_GRACE_SECONDS = 2.0


def default_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` on Linux, ``spawn`` elsewhere."""
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


class ProcessBackend:
    """A ``ProcessPoolExecutor`` owned by the pipeline."""

    def __init__(
        self, workers: int, context: multiprocessing.context.BaseContext | None = None
    ) -> None:
        self.workers = workers
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context or default_context(),
            initializer=_worker.initialize_process,
        )
        self._finalizer = weakref.finalize(self, _abandon_pool, self._executor)

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._executor

    def codec(self) -> Codec:
        return PickleCodec()

    async def start(self, bridge: LoopBridge) -> None:
        # With forkserver and spawn the executor launches a process per submission while
        # none is idle, so `workers` pings submitted at once start all of them.
        pings = [self._executor.submit(_worker.ping) for _ in range(self.workers)]
        try:
            for ping in pings:
                await bridge.wait(ping)
        except concurrent.futures.process.BrokenProcessPool as exc:
            raise RuntimeError(
                "the worker processes died while starting. With the 'forkserver' and "
                "'spawn' start methods each worker imports your main module again: if "
                "your script starts the pipeline at module level, move that code under "
                "'if __name__ == \"__main__\":'. Otherwise see the worker's traceback "
                "above on stderr."
            ) from exc

    def cancel(self, futures: Collection[FutureLike]) -> None:
        # Deliberately not future.cancel(): on Python 3.11 a pool that breaks later (as
        # it does when stop() terminates the workers) calls set_exception() on every
        # future still in its table, cancelled or not, and its manager thread dies with
        # InvalidStateError (3.12 guards this). stop() cancels queued jobs through
        # shutdown(cancel_futures=True), which removes them from that table first.
        pass

    async def stop(self, *, abandon: bool) -> None:
        self._finalizer.detach()
        await anyio.to_thread.run_sync(_shutdown_pool, self._executor, abandon)

    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return [p.pid for p in _processes(self._executor) if p.pid is not None]


def _processes(executor: concurrent.futures.ProcessPoolExecutor) -> list[Any]:
    # `_processes` is private but has been stable since Python 3.2; Python 3.14 adds
    # terminate_workers(), which does the same as the loop in _shutdown_pool.
    return list((getattr(executor, "_processes", None) or {}).values())


def _shutdown_pool(executor: concurrent.futures.ProcessPoolExecutor, abandon: bool) -> None:
    if not abandon:
        executor.shutdown(wait=True, cancel_futures=True)
        return
    processes = _processes(executor)
    # shutdown(wait=False) forgets the manager thread, so keep it to join it below.
    manager = getattr(executor, "_executor_manager_thread", None)
    # Queued jobs are cancelled (by the manager thread) before the workers die, so the
    # broken pool fails only the jobs that were running.
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    if manager is not None:
        manager.join()
    for process in processes:
        process.join(TERMINATE_GRACE_SECONDS)
        if process.is_alive():
            process.kill()
            process.join()


def _abandon_pool(executor: concurrent.futures.ProcessPoolExecutor) -> None:
    """Finalizer for a pipeline that was never closed: stop its workers without waiting."""
    processes = _processes(executor)
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
