"""``inorder spool DIR --run MODULE:FUNC``: a folder other programs drop work into.

The layout, all inside DIR (one filesystem, so every move is an atomic rename)::

    DIR/NAME.task                 dropped here by anyone (write elsewhere, then move in)
    DIR/running/OWNER/NAME.task   claimed by the live spool OWNER, running
    DIR/running/OWNER.lock        held (flock) by OWNER for as long as it lives
    DIR/done/NAME.task            finished; DIR/done/NAME.task.result is what FUNC returned
    DIR/failed/NAME.task          failed;   DIR/failed/NAME.task.error is the error

* **Claiming** is ``rename(DIR/NAME, DIR/running/OWNER/NAME)``: of two spools that try,
  exactly one succeeds, so no file is claimed twice.
* **Priority by name**: files are claimed in name order, at most as many as the
  pipeline's window holds, so other spools on the same folder share the rest.
* **Restart safety**: the kernel releases an flock when its process dies, even by
  SIGKILL. A starting spool takes every ``running/OWNER/`` whose lock it can acquire
  (its owner is dead) and moves the files back into DIR, to be claimed again. A file
  is always in exactly one of DIR, running/, done/ or failed/: never lost. Its result
  is written before the file moves to done/, so a done file is never processed again
  (a file whose run was cut short by a crash runs again).
* **Watching** uses filesystem events (``watchfiles``: inotify on Linux, FSEvents on
  macOS), never polling the folder; ``--once`` processes what is there and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio

from ._cli import EXIT_FAILED, EXIT_OK, UsageError, check_loop, load_function, run_on_loop
from ._errors import RemoteTraceback
from ._pipeline import OrderedPipeline

# Files claimed ahead of the workers: enough to keep them busy, few enough that other
# spools on the same folder get the rest.
CLAIMS_PER_WORKER = 2

# After a filesystem event, wait this long for more before listing the folder again, so
# that a burst of files is listed once.
WATCH_DEBOUNCE_MS = 50

# The file a spool touches in DIR to learn that its watcher is running; never a task.
PROBE_PREFIX = ".inorder-watch-"


class SpoolFolder:
    """The folder's layout and the claim, finish and recovery moves."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self.folder = folder
        self.pattern = pattern
        self.running = folder / "running"
        self.done = folder / "done"
        self.failed = folder / "failed"
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
        self.claims = self.running / self.owner
        self._lock_fd: int | None = None

    def open(self) -> None:
        for directory in (self.running, self.done, self.failed):
            directory.mkdir(exist_ok=True)
        lock = self.running / f"{self.owner}.lock"
        self._lock_fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        self.claims.mkdir()
        self.recover()

    def recover(self) -> list[str]:
        """Move the claims of dead spools back into the folder; return their names."""
        recovered: list[str] = []
        for claims in sorted(p for p in self.running.iterdir() if p.is_dir()):
            if claims == self.claims:
                continue
            lock = self.running / f"{claims.name}.lock"
            fd = _try_lock(lock)
            if fd is None:
                continue  # its owner is alive
            try:
                for path in sorted(claims.iterdir()):
                    recovered.append(path.name)
                    _move(path, self.folder / path.name)
                with contextlib.suppress(OSError):
                    claims.rmdir()
                with contextlib.suppress(OSError):
                    lock.unlink()
            finally:
                os.close(fd)
        return recovered

    def candidates(self) -> list[Path]:
        """Files waiting to be claimed, in name order."""
        with os.scandir(self.folder) as entries:
            names = [
                e.name
                for e in entries
                if e.is_file(follow_symlinks=False)
                and fnmatch.fnmatch(e.name, self.pattern)
                and not e.name.startswith(PROBE_PREFIX)
            ]
        return [self.folder / name for name in sorted(names)]

    def claim(self, path: Path) -> Path | None:
        """Take ``path`` for this spool, or ``None`` if another spool took it first."""
        claimed = self.claims / path.name
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None
        return claimed

    def finish(self, claimed: Path, result: Any) -> None:
        text = (
            result
            if isinstance(result, str)
            else json.dumps(result, ensure_ascii=False, default=repr)
        )
        _write_atomically(self.done / f"{claimed.name}.result", text)
        _move(claimed, self.done / claimed.name)

    def fail(self, claimed: Path, error: BaseException) -> None:
        _write_atomically(self.failed / f"{claimed.name}.error", _describe(error))
        _move(claimed, self.failed / claimed.name)

    def close(self) -> None:
        """On a clean exit: give back what was claimed but not finished."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            for path in sorted(self.claims.iterdir()):
                _move(path, self.folder / path.name)
            self.claims.rmdir()
        with contextlib.suppress(OSError):
            (self.running / f"{self.owner}.lock").unlink()
        os.close(self._lock_fd)
        self._lock_fd = None


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _move(source: Path, target: Path) -> None:
    """Rename, never overwriting: a clash keeps both (the newcomer gets a suffix)."""
    candidate = target
    number = 1
    while True:
        try:
            os.link(source, candidate)  # fails if candidate exists: no overwrite race
        except FileExistsError:
            number += 1
            candidate = target.with_name(f"{target.name}.{number}")
            continue
        except OSError:  # no hard links here: a plain rename
            os.replace(source, candidate)
            return
        os.unlink(source)
        return


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text if text.endswith("\n") else text + "\n")
    os.replace(temporary, path)


def _describe(error: BaseException) -> str:
    lines = [f"{type(error).__name__}: {error}"]
    lines += getattr(error, "__notes__", [])
    cause = error.__cause__
    if isinstance(cause, RemoteTraceback):
        lines.append(cause.traceback_text.rstrip("\n"))
    else:
        lines.append("".join(traceback.format_exception(error)).rstrip("\n"))
    return "\n".join(lines)


class _PathCall:
    """Runs in a worker: ``fn(path)``, returned with the path it was called on."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.__wrapped__ = fn  # error notes name the user's function

    def __call__(self, path: str) -> tuple[str, Any]:
        return path, self.fn(path)


def spool_command(args: argparse.Namespace) -> int:
    fn = load_function(args.function)
    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"no such folder: {folder}")
    if not args.once:
        try:
            import watchfiles  # noqa: F401
        except ImportError:
            raise UsageError(
                "watching a folder needs the 'watchfiles' package: pip install "
                "'inorder[spool]' (or use --once to process what is there and exit)"
            ) from None
    workers = args.workers or os.cpu_count() or 1
    options: dict[str, Any] = {
        "workers": workers,
        "window": CLAIMS_PER_WORKER * workers,
        "batch": args.batch,
        "ordered": False,
        "on_error": "return",
        "retries": args.retries,
        "timeout": args.timeout,
        "progress": args.progress,
    }
    try:
        OrderedPipeline(**options)
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    loop = check_loop(args.loop)
    spool = SpoolFolder(folder, args.pattern)
    spool.open()
    try:
        failed = run_on_loop(loop, _serve, spool, _PathCall(fn), options, args.once)
    finally:
        spool.close()
    return EXIT_FAILED if failed and args.once else EXIT_OK


class _Signal:
    """A wake-up that can be reset: set by filesystem events, cleared before each listing."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def _serve(spool: SpoolFolder, call: _PathCall, options: dict[str, Any], once: bool) -> int:
    # Stops the watcher's thread, which cancellation cannot reach (watchfiles issue 110):
    # set first thing when the spool stops, so stopping takes milliseconds, not seconds.
    stop_watching = anyio.Event()
    failed = 0
    async with OrderedPipeline(**options) as pipe, anyio.create_task_group() as tasks:
        try:
            failed = await _serve_files(spool, call, pipe, tasks, once, stop_watching)
        finally:
            stop_watching.set()
            tasks.cancel_scope.cancel()
    return failed


async def _serve_files(
    spool: SpoolFolder,
    call: _PathCall,
    pipe: OrderedPipeline,
    tasks: Any,
    once: bool,
    stop_watching: anyio.Event,
) -> int:
    failed = 0
    path_of: dict[int, Path] = {}  # claimed and put: sequence number -> claimed path
    seq_of: dict[str, int] = {}
    changed = _Signal()
    if not once:
        await _start_watching(tasks, spool, changed, stop_watching)
        print(
            f"inorder spool: watching {spool.folder} for {spool.pattern} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )

    async def claim_files() -> None:
        while True:
            changed.clear()  # before listing: an event from now on means list again
            for path in spool.candidates():
                taken = spool.claim(path)
                if taken is not None:
                    seq = await pipe.put(call, str(taken))
                    path_of[seq], seq_of[str(taken)] = taken, seq
            if once:
                pipe.close()
                return
            await changed.wait()

    tasks.start_soon(claim_files)
    async for outcome in pipe:
        if isinstance(outcome, tuple):
            path, result = outcome
            del path_of[seq_of.pop(path)]
            spool.finish(Path(path), result)
            continue
        claimed = path_of.pop(getattr(outcome, "_inorder_seq", -1), None)
        failed += 1
        if claimed is None:  # cannot happen: every error carries its item's number
            print(f"inorder spool: a file failed: {outcome!r}", file=sys.stderr)
            continue
        del seq_of[str(claimed)]
        spool.fail(claimed, outcome)
        print(
            f"inorder spool: {claimed.name} failed: {type(outcome).__name__}: {outcome}",
            file=sys.stderr,
        )
    return failed


async def _start_watching(
    tasks: Any, spool: SpoolFolder, changed: _Signal, stop: anyio.Event
) -> None:
    """Watch the folder for new files; return once the watcher demonstrably sees events."""
    import watchfiles

    probe = spool.folder / f"{PROBE_PREFIX}{spool.owner}"
    seen = anyio.Event()

    async def watch() -> None:
        async for changes in watchfiles.awatch(
            spool.folder,
            watch_filter=None,
            stop_event=stop,
            recursive=False,
            debounce=WATCH_DEBOUNCE_MS * 10,
            step=WATCH_DEBOUNCE_MS,
        ):
            if any(Path(name).name == probe.name for _, name in changes):
                seen.set()
            changed.set()

    tasks.start_soon(watch)
    # The watcher starts in its own time: touch a probe file until it reports it, so no
    # file dropped after the first listing can go unnoticed.
    try:
        with anyio.fail_after(30):
            while not seen.is_set():
                probe.write_text(str(time.time_ns()))
                with anyio.move_on_after(0.1):
                    await seen.wait()
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
