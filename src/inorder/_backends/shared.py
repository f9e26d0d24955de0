"""Items run in an ``inorder.WorkerPool`` that several pipelines share (``executor=pool``)."""

from __future__ import annotations

import concurrent.futures

from .._batching import TARGET_BATCH_SECONDS
from .._eventloop import LoopBridge
from .._serialize import Codec, PickleCodec
from .._workerpool import WorkerPool


class SharedPoolBackend:
    """Uses the pool's workers; stopping leaves the pool running for its other pipelines.

    A batch of it that is running finishes in its worker (its result is dropped): the
    worker may hold another pipeline's next batch, which killing it would cost a re-run.
    """

    batch_seconds = TARGET_BATCH_SECONDS  # a call costs a fraction of a millisecond

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
        self._executor = self._pool.executor  # raises, saying why, unless the pool is open

    async def stop(self, *, abandon: bool) -> None:
        pass  # the pipeline cancelled its futures; the workers stay the pool's
