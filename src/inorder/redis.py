"""Redis streams and lists as durable, restart-safe sources and sinks.

``pip install 'inorder[redis]'``.

See ``run()`` and docs/redis.md. Nothing read from Redis is unpickled: entries carry
data (text or JSON) in their ``data`` field, and the function is named by the consumer.
"""

from ._redis import (
    BadEntry,
    Entry,
    EntryFailed,
    ListSink,
    ListSource,
    RunReport,
    StreamSink,
    StreamSource,
    results,
    run,
    run_pickled_tasks,
)

__all__ = [
    "BadEntry",
    "Entry",
    "EntryFailed",
    "ListSink",
    "ListSource",
    "RunReport",
    "StreamSink",
    "StreamSource",
    "results",
    "run",
    "run_pickled_tasks",
]
