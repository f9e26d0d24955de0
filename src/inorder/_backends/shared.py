"""Items run in an ``inorder.WorkerPool`` that several pipelines share (``executor=pool``)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection

from .._eventloop import FutureLike, LoopBridge
from .._serialize import Codec, PickleCodec
from .._workerpool import WorkerPool


class SharedPoolBackend:
    """Uses the pool's workers; stopping cancels this pipeline's batches, not the pool."""

    def __init__(self, pool: WorkerPool, workers: int) -> None:
        self._pool = pool
        self.workers = workers
        self._executor: concurrent.futures.Executor | None = None

    @property
    def executor(self) -> concurrent.futures.Executor:
        assert self._executor is not None, "started"
        return self._executor

    @property
    def restarts(self) -> int:
        return self._pool.restarts  # the pool's, shared with its other pipelines

    @property
    def timeouts(self) -> int:
        return self._pool.timeouts

    def codec(self) -> Codec:
        return PickleCodec(out_of_band=True)

    async def start(self, bridge: LoopBridge) -> None:
        self._executor = self._pool.attach()

    def cancel(self, futures: Collection[FutureLike]) -> None:
        for future in futures:
            future.cancel()

    async def stop(self, *, abandon: bool) -> None:
        if self._executor is not None:
            self._executor = None
            self._pool.detach()
