"""Worker log records forwarded into the parent's ``logging``.

In a worker process, a handler on the root logger turns each record into plain data
(message formatted, exception text rendered, as ``logging.handlers.QueueHandler`` does)
tagged with the worker's pid and the sequence number of the item that emitted it, and
sends it to the parent over the worker's own pipe, ahead of the outcomes of the batch
that logged it. In the parent, the pool's manager thread re-emits it under the logger
``inorder.worker.<original name>`` (``inorder.worker`` for the worker's root logger), so
the parent's handlers, levels and filters apply as to any other record.

Records carry two extra attributes for formatters: ``worker_pid`` and ``item_seq``
(``None`` when the record was not emitted by an item, e.g. by an initializer).

Imported in worker processes: standard library only (plus ``_worker``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from . import _worker

TYPE_CHECKING = False  # typing's flag without importing typing: see inorder/__init__.py
if TYPE_CHECKING:
    from typing import Any

WORKER_LOGGER = "inorder.worker"


class ForwardingHandler(logging.Handler):
    """Sends every record it handles to the parent through ``send``."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._send(_as_data(record))
        except Exception:  # noqa: BLE001 - logging must never break an item
            self.handleError(record)


def _as_data(record: logging.LogRecord) -> dict[str, Any]:
    data = dict(record.__dict__)
    # What QueueHandler.prepare does: the message is formatted here, where its arguments
    # live, and the traceback becomes text, so the record pickles whatever it held.
    data["msg"] = record.getMessage()
    data["args"] = None
    data["exc_info"] = None
    data["exc_text"] = _exception_text(record)
    data.pop("message", None)
    data["worker_pid"] = os.getpid()
    data["item_seq"] = _worker.current_seq()
    return data


def _exception_text(record: logging.LogRecord) -> str | None:
    if record.exc_text:
        return record.exc_text
    if record.exc_info:
        return logging.Formatter().formatException(record.exc_info)
    return None


def install_in_worker(send: Callable[[dict[str, Any]], None], level: int) -> None:
    """Route the worker's logging to the parent: records at ``level`` and above."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(ForwardingHandler(send))
    root.setLevel(level)


def forwarded_level() -> int:
    """The level workers forward from: that of the parent's ``inorder.worker`` logger."""
    return logging.getLogger(WORKER_LOGGER).getEffectiveLevel()


def emit_in_parent(data: dict[str, Any]) -> None:
    """Hand a record received from a worker to the parent's logging."""
    name = data.get("name") or "root"
    data["name"] = WORKER_LOGGER if name == "root" else f"{WORKER_LOGGER}.{name}"
    record = logging.makeLogRecord(data)
    logger = logging.getLogger(record.name)
    if logger.isEnabledFor(record.levelno):
        logger.handle(record)
