"""``inorder.WorkerPool``: inorder's worker processes, shared by many pipelines.

A pipeline made with ``executor="process"`` starts workers of its own and stops them as
it ends. A service that runs a pipeline per request or per connection would start and
stop processes for each; with a ``WorkerPool`` they all use the same workers, each
pipeline keeping its own order, window and error policy. The pool keeps what makes
inorder's workers safe to share: a worker that dies is replaced and only the batches it
held are affected (the items caught with the culprit run again), items that overrun the
pool's ``timeout`` are stopped, and workers start from a fork server (or with ``spawn``),
so they never inherit the parent's sockets, as ``fork``ed workers would.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import anyio

from ._backends.process import ProcessBackend
from ._eventloop import current_bridge
from ._options import Options, StartMethod


class WorkerPool:
    """Worker processes that several pipelines share::

        async with inorder.WorkerPool(workers=4) as pool:
            ...
            async with inorder.OrderedPipeline(executor=pool) as pipe:  # any number of these
                ...

    Args:
        workers: How many worker processes. Default: the CPUs this process may use.
        timeout: Seconds an item may run, for every pipeline on the pool; one that runs
            longer is stopped (its worker killed and replaced) and yields
            ``TaskTimeoutError`` in its pipeline.
        initializer, initargs: ``initializer(*initargs)`` runs in every worker process
            as it starts.
        max_tasks_per_child: A worker is replaced after running this many items.
        start_method: ``"forkserver"`` (the default on Linux) or ``"spawn"``.

    ``async with`` starts the workers and returns once one is ready; leaving it stops
    them (killing any item still running: close the pipelines first). A pipeline on the
    pool takes ``workers`` from it as its default; the options above belong to the pool,
    and a pipeline that sets them is refused. Leaving a pipeline cancels its batches
    that have not started; batches of it already running finish in their workers and
    their results are dropped. A pool is used from the event loop that entered it.

    Code without an event loop enters it with a plain ``with``: the pool then runs on
    an event loop in a thread of its own, which ends with the block, and
    ``inorder.SyncPipeline(executor=pool)`` and ``inorder.imap(..., executor=pool)``
    use its workers, started once::

        with inorder.WorkerPool(workers=4) as pool:
            for path in paths:
                for row in inorder.imap(parse, open(path), executor=pool):
                    ...

    An ``imap`` (or ``SyncPipeline``) on the pool that the program drops without
    closing stops its pipeline when it is collected; leaving the pool's block stops
    any still running (one dropped in a reference cycle not collected yet) before the
    workers.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        timeout: float | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_child: int | None = None,
        start_method: StartMethod | None = None,
    ) -> None:
        self._options = Options(
            workers=workers,
            timeout=timeout,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_child=max_tasks_per_child,
            start_method=start_method,
        )
        self._state: Literal["new", "open", "closed"] = "new"
        self._backend: ProcessBackend | None = None

    @property
    def workers(self) -> int:
        """How many worker processes the pool runs."""
        return self._options.workers

    @property
    def options(self) -> Options:
        """The pool's options (``workers``, ``timeout``, ``initializer``, ...), checked."""
        return self._options

    @property
    def executor(self) -> concurrent.futures.Executor:
        """The pool as a ``concurrent.futures.Executor`` (``loop.run_in_executor`` works
        with it); only while the pool is open."""
        return self._open_backend().executor

    @property
    def restarts(self) -> int:
        """Worker processes started to replace one that died, was killed or retired."""
        return 0 if self._backend is None else self._backend.restarts

    @property
    def timeouts(self) -> int:
        """Items stopped because they overran the timeout."""
        return 0 if self._backend is None else self._backend.timeouts

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(
                "this inorder.WorkerPool was already entered; create a new one to start "
                "workers again"
            )
        backend = self._backend = ProcessBackend.from_options(self._options)
        self._state = "open"
        try:
            await backend.start(current_bridge())
        except BaseException:
            self._state = "closed"
            with anyio.CancelScope(shield=True):
                await backend.stop(abandon=True)
            raise
        return self

    def __enter__(self) -> Self:
        from ._sync import enter_pool  # the pool's thread: see _sync

        enter_pool(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from ._sync import exit_pool

        exit_pool(self, exc)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the workers (killing items still running). Safe to call more than once;
        shielded from cancellation."""
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        assert self._backend is not None
        with anyio.CancelScope(shield=True):  # the workers end whatever cancels us
            await self._backend.stop(abandon=True)

    def _open_backend(self) -> ProcessBackend:
        if self._state == "new":
            raise RuntimeError(
                "this inorder.WorkerPool was not entered: start its workers with "
                "'async with inorder.WorkerPool(...) as pool:' before pipelines use it"
            )
        if self._state == "closed":
            raise RuntimeError(
                "this inorder.WorkerPool was closed: its workers are gone; use pipelines "
                "inside the pool's 'async with' block"
            )
        assert self._backend is not None
        return self._backend

    def __repr__(self) -> str:
        return f"<inorder.WorkerPool workers={self.workers} {self._state}>"


WorkerPool.__module__ = "inorder"
