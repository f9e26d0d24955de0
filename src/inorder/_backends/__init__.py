"""Where the work runs. A backend owns (or borrows) a ``concurrent.futures.Executor``.

Backends only start, expose and stop an executor; the pipeline submits to it through the
event-loop bridge and cancels its own futures (a job that has not started is dropped).
Each backend names the codec its workers need: calls crossing a process boundary are
pickled, calls to threads are not.

What a batch's future gives back is the interface a backend plugs into:

* its outcomes, as the codec's ``run`` returns them;
* or ``BatchLost`` (from ``_worker``), the neutral report of a batch that came back
  without outcomes: whether it started, which item was running, and the exception that
  item yields, which the backend builds because it knows why the batch was lost
  (``WorkerCrashedError`` with the worker's pid and exit status, ``TaskTimeoutError``
  with the timeout). The pipeline runs the innocent items again, retries or fails the
  culprit, and runs the items of a batch lost outside any item one by one;
* or any other exception: the executor failed the call (it was shut down, it could not
  pickle the call), delivered for each item of the batch.
"""

from __future__ import annotations

import concurrent.futures
from typing import Protocol

from .._eventloop import LoopBridge
from .._serialize import Codec
from .._worker import BatchLost

__all__ = ["Backend", "BatchLost"]


class Backend(Protocol):
    """The executor side of a pipeline."""

    workers: int
    """How many items can run at the same time. A backend whose capacity changes (a
    Dask cluster that scales) updates it; the pipeline follows as batches complete."""

    batch_seconds: float
    """The work each batch aims at (the adaptive batch size follows it): long enough
    that the cost of one call through this backend is small beside it."""

    @property
    def executor(self) -> concurrent.futures.Executor: ...

    @property
    def restarts(self) -> int:
        """Worker processes started to replace one that died, was killed or retired."""
        ...

    @property
    def timeouts(self) -> int:
        """Items stopped because they overran the timeout."""
        ...

    def codec(self) -> Codec: ...

    async def start(self, bridge: LoopBridge) -> None:
        """Make the workers ready, so that the first item does not pay for their start."""
        ...

    async def stop(self, *, abandon: bool) -> None:
        """Release the workers. ``abandon``: running items are not waited for."""
        ...
