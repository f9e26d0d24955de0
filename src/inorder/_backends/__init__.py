"""Where the work runs. A backend owns (or borrows) a ``concurrent.futures.Executor``.

Backends only start, expose and stop an executor; the pipeline submits to it through the
event-loop bridge and decides what to cancel. Each backend names the codec its workers
need: calls crossing a process boundary are pickled, calls to threads are not.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Collection
from typing import Protocol

from .._eventloop import FutureLike, LoopBridge
from .._serialize import Codec


class Backend(Protocol):
    """The executor side of a pipeline."""

    workers: int
    """How many items can run at the same time."""

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

    def cancel(self, futures: Collection[FutureLike]) -> None:
        """Cancel the pipeline's outstanding jobs that have not started."""
        ...

    async def stop(self, *, abandon: bool) -> None:
        """Release the workers. ``abandon``: running items are not waited for."""
        ...
