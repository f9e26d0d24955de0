"""Items run in an executor that the caller made and owns (``executor=<Executor>``)."""

from __future__ import annotations

import concurrent.futures

from .._batching import TARGET_BATCH_SECONDS
from .._eventloop import LoopBridge
from .._serialize import Codec, DirectCodec, PickleCodec


class BorrowedExecutorBackend:
    """Uses the caller's executor and never shuts it down.

    Arguments are pickled (and checked at ``put()``) unless the executor is a
    ``ThreadPoolExecutor``, because any other executor may send them to another process.
    """

    batch_seconds = TARGET_BATCH_SECONDS  # a call costs a fraction of a millisecond

    def __init__(self, executor: concurrent.futures.Executor, workers: int) -> None:
        self._executor = executor
        self._threads = isinstance(executor, concurrent.futures.ThreadPoolExecutor)
        self.workers = workers

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._executor

    restarts = 0  # no processes of its own to restart
    timeouts = 0  # timeouts need processes that can be killed

    def codec(self) -> Codec:
        return DirectCodec() if self._threads else PickleCodec()

    async def start(self, bridge: LoopBridge) -> None:
        pass  # the caller's executor: its start-up is the caller's business

    async def stop(self, *, abandon: bool) -> None:
        pass  # the pipeline cancelled its futures; the executor stays the caller's
