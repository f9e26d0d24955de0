"""Functions the tests run in workers. Importable, so they travel by reference."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def square(x: int) -> int:
    return x * x


def add(x: int, y: int) -> int:
    return x + y


def fail_if(x: int, bad: frozenset[int] | set[int]) -> int:
    if x in bad:
        raise ValueError(f"item {x} is bad")
    return x


def sleep_then_return(x: int, seconds: float) -> int:
    time.sleep(seconds)
    return x


def ran_where(x: int, seconds: float) -> tuple[int, int]:
    """Sleep ``seconds``; return ``x`` and the pid of the worker that ran it."""
    time.sleep(seconds)
    return x, os.getpid()


def wait_for_file(x: int, path: str) -> int:
    """Block until ``path`` exists: a gate the test opens when it chooses."""
    gate = Path(path)
    while not gate.exists():
        time.sleep(0.005)
    return x


def bytes_after_file(spec: str) -> bytes:
    """``spec`` is ``"path|size"``: wait for ``path`` (a gate), then return ``size`` bytes.

    One plain argument, so put() may take its fast path for it."""
    path, size = spec.rsplit("|", 1)
    wait_for_file(0, path)
    return bytes(int(size))


def pid_of_worker(_: object = None) -> int:
    return os.getpid()


def sleep_then_pid(_: object = None) -> int:
    """Long enough that a batch of these keeps a worker busy while others take more."""
    time.sleep(0.05)
    return os.getpid()


class Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("Unpicklable refuses to be pickled")


def returns_unpicklable(_: object) -> object:
    return Unpicklable()


def returns_adder(n: int) -> object:
    """A closure: plain pickle refuses it, cloudpickle sends it by value."""
    return lambda x: x + n


def imported(module: str) -> bool:
    """Whether this worker process has imported ``module``."""
    return module in sys.modules


class CustomError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"custom failure {code}")
        self.code = code

    def __reduce__(self) -> object:
        return (CustomError, (self.code,))


def raise_custom(code: int) -> None:
    raise CustomError(code)


def raise_unpicklable_error(_: object) -> None:
    error = RuntimeError("holds a lock")
    import threading

    error.lock = threading.Lock()  # type: ignore[attr-defined]
    raise error


def exit_item(code: int) -> None:
    raise SystemExit(code)


_UNPICKLED = 0


def _rebuild_counting_callable() -> CountingCallable:
    global _UNPICKLED
    _UNPICKLED += 1
    return CountingCallable()


class CountingCallable:
    """Returns how many times a CountingCallable was unpickled in this process."""

    def __reduce__(self) -> object:
        return (_rebuild_counting_callable, ())

    def __call__(self, _: object) -> tuple[int, int]:
        return os.getpid(), _UNPICKLED


class Scale:
    """``Scale(k).apply`` is a bound method: each attribute access makes a new one."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def apply(self, x: int) -> int:
        return x * self.factor


class NeedsTwoArguments(Exception):
    """Pickles fine, but unpickling calls NeedsTwoArguments(message): TypeError."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


def raise_needs_two(_: object) -> None:
    raise NeedsTwoArguments(1, 2)


# -- faults, for the crash-injection matrix ------------------------------------------


class CrashesWhenPickled:
    """A result whose pickling (in the worker) kills the worker process."""

    def __reduce__(self) -> object:
        os._exit(9)


class CrashesWhenLoaded:
    """An argument whose unpickling (in the worker) kills the worker process."""

    def __reduce__(self) -> object:
        return (os._exit, (11,))


def _refuse_to_load(message: str) -> None:
    raise ValueError(message)


class FailsWhenLoaded:
    """An argument whose unpickling (in the worker) raises ValueError."""

    def __reduce__(self) -> object:
        return (_refuse_to_load, ("FailsWhenLoaded cannot be loaded",))


class FunctionThatFailsToLoad:
    """A function whose unpickling (in the worker) raises ValueError: every item of its
    batch fails with that one error."""

    def __call__(self, x: object) -> object:
        return x

    def __reduce__(self) -> object:
        return (_refuse_to_load, ("this function cannot be loaded",))


def identity(x: object) -> object:
    return x


def fault(x: int, kind: str) -> object:
    """Return ``x``, or fail in the way ``kind`` names."""
    if kind == "raise":
        raise ValueError(f"item {x} raised")
    if kind == "exit":
        sys.exit(3)
    if kind == "os_exit":
        os._exit(7)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if kind == "hang":
        time.sleep(600)
    if kind == "bad_result":
        return Unpicklable()
    if kind == "crash_result":
        return CrashesWhenPickled()
    return x


def flaky(x: int, folder: str, failures: int, how: str = "raise") -> int:
    """Fail the first ``failures`` attempts at ``x`` (counted in a file), then return x."""
    marks = Path(folder) / f"attempts-{x}"
    with marks.open("a") as f:
        f.write(".")
    if len(marks.read_text()) <= failures:
        if how == "crash":
            os._exit(5)
        raise KeyError(f"attempt {len(marks.read_text())} at item {x}")
    return x


def attempts(folder: str, x: int) -> int:
    marks = Path(folder) / f"attempts-{x}"
    return len(marks.read_text()) if marks.exists() else 0


def spawn_child_then_sleep(x: int, pid_file: str, megabytes: int = 0) -> int:
    """Start a long-lived child process, record its pid, then sleep: work that must stop.

    ``megabytes``: memory the child fills before its pid is recorded, which takes the
    kernel some milliseconds to free when the child is killed."""
    if megabytes:
        hold = f"b = bytearray({megabytes} << 20); b[::4096] = b'x' * len(b[::4096])"
        command = [sys.executable, "-c", f"import sys, time; {hold}; print(); time.sleep(600)"]
        child = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert child.stdout is not None
        child.stdout.readline()  # filled
    else:
        child = subprocess.Popen(["sleep", "600"])
    Path(pid_file).write_text(str(child.pid))
    time.sleep(600)
    return x


def report_pid_then_sleep(x: int, pid_file: str) -> int:
    """Record this worker's pid, then sleep for ten minutes."""
    staged = Path(f"{pid_file}.new")
    staged.write_text(str(os.getpid()))
    staged.replace(pid_file)
    time.sleep(600)
    return x


def inherited(fd: int, device: int, inode: int) -> bool:
    """Whether this process has ``fd`` open on the file (device, inode) the parent had."""
    try:
        status = os.fstat(fd)
    except OSError:
        return False
    return (status.st_dev, status.st_ino) == (device, inode)


def parent_command_line(_: object = None) -> tuple[int, str]:
    """This process's parent: its pid and command line (Linux)."""
    parent = os.getppid()
    return parent, Path(f"/proc/{parent}/cmdline").read_text().replace("\0", " ")


def clean_up_on_sigterm(path: str) -> None:
    """Sleep until SIGTERM, then write "SIGTERM" to ``path`` and exit (``path.ready``
    says the handler is in place)."""

    def clean_up(signum: int, frame: object) -> None:
        Path(path).write_text(signal.Signals(signum).name)
        os._exit(0)

    signal.signal(signal.SIGTERM, clean_up)
    Path(f"{path}.ready").touch()
    time.sleep(600)


def slow_to_start_after_the_first(folder: str) -> None:
    """An initializer: the first worker to run it goes on at once. Each later one leaves
    ``starting-PID`` in ``folder``, then waits (not ready for items) while
    ``folder/hold`` exists, and exits with status 3 if ``folder/die`` exists."""
    here = Path(folder)
    first = here / "first"
    try:
        first.open("x").close()
        return
    except FileExistsError:
        pass
    (here / f"starting-{os.getpid()}").touch()
    while (here / "hold").exists():
        time.sleep(0.005)
    if (here / "die").exists():
        os._exit(3)


def note_sigterm_and_go_on(x: int, folder: str) -> int:
    """Leave ``running-PID`` in ``folder`` and sleep for ten minutes; on SIGTERM, leave
    ``sigterm-PID`` and go on sleeping (until SIGKILL)."""

    def note(signum: int, frame: object) -> None:
        (Path(folder) / f"sigterm-{os.getpid()}").touch()

    signal.signal(signal.SIGTERM, note)
    (Path(folder) / f"running-{os.getpid()}").touch()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(1)
    return x


_initialized: object = None


def remember(value: object) -> None:
    global _initialized
    _initialized = value


def initialized(_: object) -> object:
    return _initialized


def fail_to_initialize() -> None:
    raise OSError("the database is not there")


def start_first_or_wait(folder: str, then_fail: bool = False) -> None:
    """Initializer: the first worker to start goes on at once. The others wait for the
    file ``go`` in ``folder`` and then start (or raise, with ``then_fail``); without it
    they give up after 20 s and raise."""
    try:
        os.close(os.open(os.path.join(folder, "first"), os.O_CREAT | os.O_EXCL))
        return
    except FileExistsError:
        pass
    deadline = time.monotonic() + 20
    while not os.path.exists(os.path.join(folder, "go")):
        if time.monotonic() > deadline:
            raise TimeoutError("no go: this worker was not told to start")
        time.sleep(0.01)
    if then_fail:
        raise OSError("the second database is not there")


def log_and_return(x: int) -> int:
    logging.getLogger("tests.workloads").warning("working on %d", x)
    logging.getLogger("tests.workloads").info("info about %d", x)
    return x


def print_lines(x: int, count: int, width: int) -> int:
    for i in range(count):
        print(f"<{x}:{i}:" + "x" * width + ">")
    return x


def _load_only_in_a_worker(value: int) -> int:
    if multiprocessing.parent_process() is None:  # the pipeline's own process
        raise ValueError("this result refuses to load in the parent")
    return value


class LoadsOnlyInWorkers:
    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> object:
        return (_load_only_in_a_worker, (self.value,))


def returns_unloadable(x: int) -> object:
    return {"nested": [LoadsOnlyInWorkers(x)]}


def describe_buffer(data: bytes | bytearray, tag: int = 0) -> tuple[str, int, int, int]:
    """The type, size, first byte and tag of an argument, as the worker received it."""
    return type(data).__name__, len(data), data[0], tag


def make_blob(i: int, size: int = 200_000, kind: str = "bytes") -> bytes | bytearray:
    """A large result: bytes (or a bytearray) of ``size`` copies of ``i % 256``."""
    data = bytes([i % 256]) * size
    return bytearray(data) if kind == "bytearray" else data


def through_turnstile(i: int, path: str) -> int:
    """Return ``i`` once the number in the file ``path`` is above it (10 s at most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            if i < int(Path(path).read_text() or 0):
                return i
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"item {i} was never let through")
        time.sleep(0.002)


def mark_then_sleep(x: int, folder: str, seconds: float) -> int:
    """Leave a file named after ``x`` in ``folder`` (the item ran), then sleep."""
    (Path(folder) / f"ran-{x}").touch()
    time.sleep(seconds)
    return x
