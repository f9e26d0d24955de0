"""Redis streams and lists as durable, restart-safe sources and sinks.

``pip install 'inorder[redis]'``.

See ``run()`` (source to sink through a pipeline of its own), ``Feed`` (a source and a
sink in your own pipeline), ``results()`` (outcomes in your loop) and docs/redis.md.
Nothing read from Redis is unpickled: entries carry data (text or JSON) in their
``data`` field, and the function is named by the consumer.
"""

from ._redis import (
    BadEntry,
    Entry,
    EntryFailed,
    Feed,
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
    "Feed",
    "ListSink",
    "ListSource",
    "RunReport",
    "StreamSink",
    "StreamSource",
    "results",
    "run",
    "run_pickled_tasks",
]
