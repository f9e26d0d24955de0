"""inorder: an ordered, parallel, bounded pipeline for asyncio and trio.

Producers ``await pipe.put(fn, arg)``; the calls run in worker processes; ``async for``
yields the results in submission order; a bounded window keeps memory flat.

The public names are imported lazily: worker processes import ``inorder._worker``, and
with it this package, and should not pay for anyio and the pipeline on every start.
"""

from __future__ import annotations

import importlib

# typing's own flag, without importing typing: every worker process imports this package
# as it starts, and typing alone took a starting worker 4-8 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ._cursor import sequence_number
    from ._errors import (
        InorderError,
        PipelineClosedError,
        RemoteTraceback,
        TaskTimeoutError,
        WindowFullError,
        WorkerCrashedError,
    )
    from ._map import MapStream, map
    from ._options import Options, PipelineOptions
    from ._pipeline import OrderedPipeline
    from ._stats import PipelineStatistics
    from ._sync import Imap, SyncPipeline, imap
    from ._workerpool import WorkerPool

__version__ = "0.1.0"

__all__ = [
    "Imap",
    "InorderError",
    "MapStream",
    "Options",
    "OrderedPipeline",
    "PipelineClosedError",
    "PipelineOptions",
    "PipelineStatistics",
    "RemoteTraceback",
    "SyncPipeline",
    "TaskTimeoutError",
    "WindowFullError",
    "WorkerCrashedError",
    "WorkerPool",
    "imap",
    "map",
    "sequence_number",
]

_LOCATIONS = {
    "InorderError": "._errors",
    "PipelineClosedError": "._errors",
    "RemoteTraceback": "._errors",
    "TaskTimeoutError": "._errors",
    "WindowFullError": "._errors",
    "WorkerCrashedError": "._errors",
    "MapStream": "._map",
    "map": "._map",
    "Imap": "._sync",
    "imap": "._sync",
    "SyncPipeline": "._sync",
    "OrderedPipeline": "._pipeline",
    "Options": "._options",
    "PipelineOptions": "._options",
    "sequence_number": "._cursor",
    "PipelineStatistics": "._stats",
    "WorkerPool": "._workerpool",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'inorder' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
