"""The life of one of inorder's worker processes (the parent side is ``_pool``).

A worker leads its own process group, so the parent can stop an item together with any
process the item started (``killpg``), and a Ctrl-C typed at the terminal reaches only the
parent, which owns shutdown. A daemon thread holds the read end of a *lifeline* pipe whose
write end only the parent has: when the parent dies, even by SIGKILL, the pipe reports
end-of-file and the worker kills its whole group. No worker outlives its parent.

Messages over the worker's own duplex pipe (framed by ``_wire``)::

    parent -> worker   (job_id, fn, args)       run fn(*args)
                       None                     exit
    worker -> parent   (READY, pid)             initializer done, waiting for work
                       (INIT_FAILED, text)      the initializer raised; exiting
                       (LOG, record)            a log record (see _logging)
                       (DONE, job_id, result)   fn returned
                       (ERROR, job_id, exc, tb) fn raised (not for item errors, which
                                                are outcomes inside the result)
                       (SKIPPED, job_id)        not run: the parent revoked the job, or
                                                it would exceed max_tasks_per_child
                       (RETIRING,)              max_tasks_per_child reached; exiting

A job can wait in a busy worker's pipe (the parent sends the next one early). The parent
may *revoke* it for an idle worker: under the worker's ``gate`` lock it checks that the job
has not started and marks it revoked; the worker, under the same lock, starts a job only
if it is not marked. So a job never runs in two workers.

``sys.stdout`` and ``sys.stderr`` write whole lines with one ``write()`` each, so lines
printed by different workers never interleave mid-line (up to the pipe's atomic size,
4 KiB on Linux, when the output is a pipe).

Imported in worker processes: standard library only (see ``_worker``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection

from . import _logging, _slots, _wire, _worker

TYPE_CHECKING = False  # typing's flag without importing typing: see inorder/__init__.py
if TYPE_CHECKING:
    from typing import Any

READY, INIT_FAILED, LOG, DONE, ERROR, SKIPPED, RETIRING = range(7)


def main(
    conn: Connection,
    lifeline: Connection,
    gate: Any,
    progress: Any,
    slot: int,
    initializer: bytes | None,
    log_level: int,
    max_tasks: int | None,
    timed: bool,
) -> None:
    """Entry point of a worker process."""
    _detach_from_terminal_group()
    _watch_parent(lifeline)
    send_lock = threading.Lock()

    def send(message: Any) -> None:
        parts = _wire.encode(message)
        with send_lock:  # log records may come from the item's own threads
            _wire.send_parts(conn, parts)

    _install_line_writers()
    _logging.install_in_worker(lambda record: send((LOG, record)), log_level)
    state = _worker.WorkerState(
        _slots.worker_fields(progress, slot), timed=timed, max_items=max_tasks
    )
    _worker.install(state)
    if initializer is not None:
        try:
            fn, args = pickle.loads(initializer)
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, then exit
            send((INIT_FAILED, "".join(traceback.format_exception(exc))))
            _flush_output()
            return
    send((READY, os.getpid()))
    try:
        _serve(conn, gate, send, state)
    finally:
        _flush_output()


def _serve(conn: Connection, gate: Any, send: Any, state: _worker.WorkerState) -> None:
    progress = state.fields
    while True:
        try:
            message = _wire.receive(conn)
        except EOFError:
            return  # the parent closed the pipe
        if message is None:
            return
        job_id, fn, args = message
        with gate:
            revoked = progress[_slots.REVOKED] == job_id
            if not revoked:
                # Index first, then job: the parent reads them in the opposite order.
                progress[_slots.INDEX] = _slots.NOT_IN_ITEM
                progress[_slots.JOB] = job_id
        if revoked:
            send((SKIPPED, job_id))
            continue
        try:
            reply: Any = (DONE, job_id, fn(*args))
        except _worker.Retire:  # the job would take it past max_tasks_per_child
            send((SKIPPED, job_id))
            send((RETIRING,))
            return
        except BaseException as exc:  # noqa: BLE001 - the parent decides what it means
            reply = (ERROR, job_id, _picklable(exc), "".join(traceback.format_exception(exc)))
        progress[_slots.INDEX] = _slots.NOT_IN_ITEM
        send(reply)
        if state.max_items is not None and state.items_run >= state.max_items:
            send((RETIRING,))
            return


def _picklable(exc: BaseException) -> BaseException:
    try:
        pickle.dumps(exc, pickle.HIGHEST_PROTOCOL)
        return exc
    except Exception:  # noqa: BLE001 - replaced by a description that always pickles
        return RuntimeError(f"{type(exc).__qualname__}: {exc}")


def _detach_from_terminal_group() -> None:
    # Our own process group: the parent can kill an item's whole process tree, and
    # Ctrl-C at a terminal goes to the parent alone, which stops the workers itself.
    with contextlib.suppress(OSError):  # a session leader already: stay in its group
        os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _watch_parent(lifeline: Connection) -> None:
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()  # the parent never writes: this returns only at EOF
        _kill_own_group()

    threading.Thread(target=watch, name="inorder-lifeline", daemon=True).start()


def _kill_own_group() -> None:
    try:
        if os.getpgid(0) == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGKILL)


class LineWriter(io.TextIOBase):
    """A text stream that writes only whole lines, each batch of them in one write()."""

    def __init__(self, fd: int, encoding: str, errors: str) -> None:
        self._fd = fd
        self._encoding = encoding
        self._errors = errors
        self._partial = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._encoding

    @property
    def errors(self) -> str:  # type: ignore[override]
        return self._errors

    def fileno(self) -> int:
        return self._fd

    def isatty(self) -> bool:
        return os.isatty(self._fd)

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            cut = text.rfind("\n") + 1
            if cut:
                self._write(self._partial + text[:cut])
                self._partial = text[cut:]
            else:
                self._partial += text
                if len(self._partial) > LINE_LIMIT:  # a line without end: do not hoard it
                    self._write(self._partial)
                    self._partial = ""
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._partial:
                self._write(self._partial)
                self._partial = ""

    def _write(self, text: str) -> None:
        data = memoryview(text.encode(self._encoding, self._errors))
        while data:
            data = data[os.write(self._fd, data) :]


# Longest partial line kept before it is written anyway.
LINE_LIMIT = 65536


def _install_line_writers() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            continue  # no real file behind it (e.g. None under pythonw): leave it be
        encoding = getattr(stream, "encoding", None) or "utf-8"
        errors = getattr(stream, "errors", None) or "strict"
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
        setattr(sys, name, LineWriter(fd, encoding, errors))


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
