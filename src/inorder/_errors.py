"""The exceptions inorder raises itself.

A failing item raises *the user's own exception*, unchanged in type; inorder only adds a
note (PEP 678) and the worker's traceback as ``__cause__``. The classes below are for what
belongs to inorder::

    Exception
     +-- InorderError
     |    +-- PipelineClosedError (also a RuntimeError)   put() after close(), use after exit
     |    +-- WorkerCrashedError                           the item's worker process died
     |    +-- TaskTimeoutError (also a TimeoutError)       the item overran ``timeout``
     +-- RemoteTraceback                                   __cause__ of an error from a worker

This module imports only the standard library: worker processes import it too.
"""

from __future__ import annotations


class InorderError(Exception):
    """Base class of the exceptions that inorder raises on its own account."""


class PipelineClosedError(InorderError, RuntimeError):
    """The pipeline no longer accepts items, or was shut down while a caller waited on it.

    Raised by ``put()`` after ``close()`` (or after the pipeline exited), by a ``put()``
    that was waiting for room in the window when the pipeline closed, and by iteration
    over a pipeline that was shut down with results still pending.
    """


class WindowFullError(InorderError):
    """``put_nowait()`` found no room: the window's every slot holds an item not yet
    yielded (or other producers wait for one). Nothing was accepted; take results to make
    room, or call ``put()``, which waits for it."""


class WorkerCrashedError(InorderError):
    """The worker process died while it ran this item (yielded at the item's position).

    A death without a Python exception: ``os._exit()``, a signal such as SIGKILL or
    SIGSEGV, the out-of-memory killer. The pool replaced the worker; the items that were
    merely caught in the crash ran again; the stream went on.

    Attributes:
        pid: the process id of the worker that died.
        exitcode: its exit status if it exited, else ``None``.
        signal: the number of the signal that killed it, else ``None``.
    """

    def __init__(self, message: str, *, pid: int | None, exitcode: int | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode if exitcode is None or exitcode >= 0 else None
        self.signal = -exitcode if exitcode is not None and exitcode < 0 else None

    def __reduce__(self) -> tuple[object, ...]:
        raw = -self.signal if self.signal is not None else self.exitcode
        return (_rebuild_crash, (str(self), self.pid, raw))


def _rebuild_crash(message: str, pid: int | None, exitcode: int | None) -> WorkerCrashedError:
    return WorkerCrashedError(message, pid=pid, exitcode=exitcode)


class TaskTimeoutError(InorderError, TimeoutError):
    """The item ran longer than the pipeline's ``timeout`` and was stopped.

    Its worker process was killed (with any process the item started) and replaced.

    Attributes:
        timeout: the limit, in seconds.
        pid: the process id of the worker that ran the item.
    """

    def __init__(self, message: str, *, timeout: float, pid: int | None) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.pid = pid

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_timeout, (str(self), self.timeout, self.pid))


def _rebuild_timeout(message: str, timeout: float, pid: int | None) -> TaskTimeoutError:
    return TaskTimeoutError(message, timeout=timeout, pid=pid)


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker process, as text.

    inorder sets it as ``__cause__`` of the exception it re-raises in the parent, so the
    usual traceback display shows where the item failed inside the worker.
    """

    def __init__(self, traceback_text: str) -> None:
        super().__init__(traceback_text)
        self.traceback_text = traceback_text

    def __str__(self) -> str:
        return "\n\n" + self.traceback_text.rstrip("\n")


# Shown as inorder.X in reprs and tracebacks: where users import them from.
for _public in (
    InorderError,
    PipelineClosedError,
    WindowFullError,
    WorkerCrashedError,
    TaskTimeoutError,
    RemoteTraceback,
):
    _public.__module__ = "inorder"
del _public
