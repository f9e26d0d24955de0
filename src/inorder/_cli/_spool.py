"""``inorder spool DIR --run MODULE:FUNC``: a folder other programs drop work into.

The layout, all inside DIR (one filesystem, so every move is an atomic rename)::

    DIR/NAME.task                   dropped here by anyone (written elsewhere, moved in)
    DIR/running/OWNER/N/NAME.task   claim N of the live spool OWNER, running
    DIR/running/OWNER.lock          held (flock) by OWNER for as long as it lives
    DIR/done/NAME.task              finished; DIR/done/NAME.task.result: what FUNC returned
    DIR/failed/NAME.task            failed;   DIR/failed/NAME.task.error: the error

* **Claiming** is ``rename(DIR/NAME, DIR/running/OWNER/N/NAME)``: of two spools that
  try, exactly one succeeds, so no file is claimed twice; each claim has a folder of its
  own, so two files of the same name (one dropped while the other runs) never meet.
* **Priority by name**: files are claimed in name order, at most as many as the
  pipeline's window holds, so other spools on the same folder share the rest.
* **Complete files only**: a file is taken as complete once its name matches
  ``--pattern``: writers write it under another name (elsewhere on the same filesystem,
  or under a name that does not match, such as ``NAME.tmp``) and rename it into place.
  Hidden files (``.NAME``) are never taken, as editors and copy tools write those.
* **Each input its own result**: a finished file's result (or error) file is placed
  first, under the first of ``NAME``, ``NAME.2``, ... whose result name is free (a hard
  link, which fails rather than overwrite), then the file is moved beside it: a name
  dropped twice leaves ``NAME`` and ``NAME.2``, each with its own result.
* **Restart safety**: the kernel releases an flock when its process dies, even by
  SIGKILL. A starting spool takes every ``running/OWNER/`` whose lock it can acquire
  (its owner is dead) and moves the files back into DIR, to be claimed again. A file
  is always in exactly one of DIR, running/, done/ or failed/: never lost. Its result
  is written before the file moves to done/, so a done file is never processed again
  (a file whose run was cut short by a crash runs again).
* **One bad file does not stop the others**: a file that cannot be claimed (a sticky
  folder it may not move out of) is skipped and reported once; a name too long to
  have its result file beside it goes to failed/ with the reason on stderr; a result
  that cannot be filed (a full disk) is reported, and the file stays claimed until the
  spool stops, which gives it back.
* **Watching** uses filesystem events (``watchfiles``: inotify on Linux, FSEvents on
  macOS), never polling the folder; ``--once`` processes what is there and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import fnmatch
import itertools
import json
import os
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio

from .._cursor import sequence_number
from .._errors import RemoteTraceback
from .._options import Options
from .._pipeline import OrderedPipeline
from ._common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    check_loop,
    load_function,
    pipeline_options,
    run_on_loop,
)

# Files claimed ahead of the workers: enough to keep them busy, few enough that other
# spools on the same folder get the rest.
CLAIMS_PER_WORKER = 2

# After a filesystem event, wait this long for more before listing the folder again, so
# that a burst of files is listed once.
WATCH_DEBOUNCE_MS = 50

# The file a spool touches in DIR to learn that its watcher is running; never a task
# (a hidden file, as its name starts with a dot).
PROBE_PREFIX = ".inorder-watch-"

# The longest suffix the spool adds to a task's name in done/ or failed/: a duplicate's
# ".N" and ".result" (or ".error").
SUFFIX_BYTES = len(".99999.result")


class Unclaimable(Exception):
    """A file the spool may not move (claim), or whose name it cannot use."""


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
        self._claim_numbers = itertools.count(1)
        self._files_made = itertools.count(1)  # for names of temporary files
        self.name_max = os.pathconf(folder, "PC_NAME_MAX")

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
                recovered += self._give_back(claims)
                with contextlib.suppress(OSError):
                    lock.unlink()
            finally:
                os.close(fd)
        return recovered

    def _give_back(self, claims: Path) -> list[str]:
        """Move every file claimed under ``claims`` back into the folder."""
        names: list[str] = []
        for claim in sorted(claims.iterdir()):
            # A claim's own folder (N/NAME); a plain file is a claim of an older layout.
            paths = sorted(claim.iterdir()) if claim.is_dir() else [claim]
            for path in paths:
                names.append(path.name)
                _move(path, self.folder / path.name)
            if claim.is_dir():
                with contextlib.suppress(OSError):
                    claim.rmdir()
        with contextlib.suppress(OSError):
            claims.rmdir()
        return names

    def candidates(self) -> list[Path]:
        """Files waiting to be claimed, in name order (hidden files excepted)."""
        with os.scandir(self.folder) as entries:
            names = [
                e.name
                for e in entries
                if not e.name.startswith(".")
                and e.is_file(follow_symlinks=False)
                and fnmatch.fnmatch(e.name, self.pattern)
            ]
        return [self.folder / name for name in sorted(names)]

    def claim(self, path: Path) -> Path | None:
        """Take ``path`` for this spool, or ``None`` if another spool took it first.

        Raises ``Unclaimable`` for a file this spool may not move, and for one whose
        name leaves no room for the suffixes of its result file (it is moved to
        failed/ first, if it can be).
        """
        if len(os.fsencode(path.name)) + SUFFIX_BYTES > self.name_max:
            limit = self.name_max - SUFFIX_BYTES
            reason = (
                f"its name is {len(os.fsencode(path.name))} bytes long, and the spool writes "
                f"NAME.result beside it, which must fit in {self.name_max}: rename it to "
                f"at most {limit} bytes"
            )
            with contextlib.suppress(OSError):
                _move(path, self.failed / path.name)
                reason += " (moved to failed/)"
            raise Unclaimable(reason)
        slot = self.claims / str(next(self._claim_numbers))
        slot.mkdir()
        claimed = slot / path.name
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            slot.rmdir()
            return None
        except OSError as exc:
            slot.rmdir()
            raise Unclaimable(f"it cannot be moved out of the folder: {exc}") from None
        return claimed

    def finish(self, claimed: Path, result: Any) -> Path:
        """File a processed task in done/, its result beside it; return where it went."""
        text = (
            result
            if isinstance(result, str)
            else json.dumps(result, ensure_ascii=False, default=repr)
        )
        return self._file(claimed, self.done, ".result", text)

    def fail(self, claimed: Path, error: BaseException) -> Path:
        """File a failed task in failed/, its error beside it; return where it went."""
        return self._file(claimed, self.failed, ".error", _describe(error))

    def _file(self, claimed: Path, folder: Path, suffix: str, text: str) -> Path:
        """Write ``text`` as the first free ``NAME[.N]SUFFIX`` in ``folder``, then move
        the task beside it as ``NAME[.N]``: the result never overwrites another's, and
        is there before its task is."""
        staged = folder / f".inorder-{os.getpid()}-{next(self._files_made)}.tmp"
        data = text if text.endswith("\n") else text + "\n"
        staged.write_bytes(data.encode("utf-8", "surrogateescape"))  # names may not be UTF-8
        try:
            for number in itertools.count(1):
                name = claimed.name if number == 1 else f"{claimed.name}.{number}"
                if os.path.lexists(folder / name):
                    continue  # a task without its result (filed by an older version)
                try:
                    os.link(staged, folder / f"{name}{suffix}")
                except FileExistsError:
                    continue
                break
        finally:
            staged.unlink()
        target = folder / name
        os.rename(claimed, target)
        with contextlib.suppress(OSError):
            claimed.parent.rmdir()  # the claim's own folder
        return target

    def close(self) -> None:
        """On a clean exit: give back what was claimed but not finished."""
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            self._give_back(self.claims)
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
    options = pipeline_options(args, ordered=False, on_error="return")
    options = options.replace(window=CLAIMS_PER_WORKER * options.workers)
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


async def _serve(spool: SpoolFolder, call: _PathCall, options: Options, once: bool) -> int:
    # Stops the watcher's thread, which cancellation cannot reach (watchfiles issue 110):
    # set first thing when the spool stops, so stopping takes milliseconds, not seconds.
    stop_watching = anyio.Event()
    failed = 0
    async with OrderedPipeline(options) as pipe, anyio.create_task_group() as tasks:
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

    skipped: set[str] = set()  # files that could not be claimed, reported once each

    async def claim_files() -> None:
        while True:
            changed.clear()  # before listing: an event from now on means list again
            for path in spool.candidates():
                if path.name in skipped:
                    continue
                try:
                    taken = spool.claim(path)
                except Unclaimable as exc:
                    nonlocal failed
                    failed += 1
                    skipped.add(path.name)
                    _say(f"{_printable(path.name)}: skipped: {exc}")
                    continue
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
            _file_or_report(spool.finish, Path(path), result)
            continue
        seq = sequence_number(outcome)
        claimed = path_of.pop(seq, None) if seq is not None else None
        failed += 1
        if claimed is None:  # cannot happen: every error carries its item's number
            _say(f"a file failed: {outcome!r}")
            continue
        del seq_of[str(claimed)]
        _say(f"{_printable(claimed.name)} failed: {type(outcome).__name__}: {outcome}")
        _file_or_report(spool.fail, claimed, outcome)
    return failed


def _file_or_report(how: Any, claimed: Path, what: Any) -> None:
    """File a claimed task (``how``: finish or fail); report, and go on, if it cannot."""
    try:
        how(claimed, what)
    except OSError as exc:
        _say(
            f"{_printable(claimed.name)}: could not be filed ({exc}); it stays claimed "
            "until the spool stops, which gives it back to the folder"
        )


def _say(message: str) -> None:
    print(f"inorder spool: {message}", file=sys.stderr, flush=True)


def _printable(name: str) -> str:
    """A file name for a message: bytes that are not UTF-8 shown escaped."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
