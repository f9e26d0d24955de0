"""Items run in a thread pool of this process (``executor="thread"``)."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection

import anyio

from .._eventloop import FutureLike, LoopBridge
from .._serialize import Codec, DirectCodec


class ThreadBackend:
    """A ``ThreadPoolExecutor`` owned by the pipeline.

    Threads cannot be killed: when the pipeline stops early, queued items are cancelled
    and the pipeline waits for the items already running in threads to return.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="inorder-worker"
        )

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._executor

    restarts = 0  # no processes of its own to restart
    timeouts = 0  # timeouts need processes that can be killed

    def codec(self) -> Codec:
        return DirectCodec()

    async def start(self, bridge: LoopBridge) -> None:
        pass  # threads start in microseconds, on the first submissions

    def cancel(self, futures: Collection[FutureLike]) -> None:
        for future in futures:
            future.cancel()

    async def stop(self, *, abandon: bool) -> None:
        await anyio.to_thread.run_sync(self._shutdown)

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
