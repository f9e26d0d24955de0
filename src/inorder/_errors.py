"""The exceptions inorder raises itself.

A failing item raises *the user's own exception*, unchanged in type; inorder only adds a
note (PEP 678) and the worker's traceback as ``__cause__``. The classes below are for what
belongs to inorder::

    Exception
     +-- InorderError
     |    +-- PipelineClosedError (also a RuntimeError)   put() after close(), use after exit
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
