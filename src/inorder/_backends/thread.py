"""Items run in a thread pool of this process (``executor="thread"``)."""

from __future__ import annotations

import concurrent.futures
import threading

from .._batching import TARGET_BATCH_SECONDS
from .._eventloop import LoopBridge
from .._serialize import Codec, DirectCodec


class ThreadBackend:
    """A ``ThreadPoolExecutor`` owned by the pipeline.

    Threads cannot be killed: when the pipeline stops early, queued items are cancelled
    and the pipeline waits for the items already running in threads to return.
    """

    batch_seconds = TARGET_BATCH_SECONDS  # a call costs a fraction of a millisecond

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="inorder-worker"
        )
        self._bridge: LoopBridge | None = None

    @property
    def executor(self) -> concurrent.futures.Executor:
        return self._executor

    restarts = 0  # no processes of its own to restart
    timeouts = 0  # timeouts need processes that can be killed

    def codec(self) -> Codec:
        return DirectCodec()

    async def start(self, bridge: LoopBridge) -> None:
        self._bridge = bridge  # threads start in microseconds, on the first submissions

    async def stop(self, *, abandon: bool) -> None:
        """Cancel what has not started and wait, on the loop, for the running items.

        The shutdown waits in a daemon thread of its own, not one of anyio's worker
        threads, which the interpreter would wait for at exit should an interrupt end
        the event loop meanwhile."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()

        def shut_down() -> None:
            try:
                self._executor.shutdown(wait=True, cancel_futures=True)
            finally:
                done.set_result(None)

        threading.Thread(target=shut_down, name="inorder-threads-shutdown", daemon=True).start()
        if self._bridge is not None:
            await self._bridge.wait(done)
