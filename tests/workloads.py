"""Functions the tests run in workers. Importable, so they travel by reference."""

from __future__ import annotations

import os
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


def wait_for_file(x: int, path: str) -> int:
    """Block until ``path`` exists: a gate the test opens when it chooses."""
    gate = Path(path)
    while not gate.exists():
        time.sleep(0.005)
    return x


def pid_of_worker(_: object = None) -> int:
    return os.getpid()


class Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("Unpicklable refuses to be pickled")


def returns_unpicklable(_: object) -> object:
    return Unpicklable()


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


class NeedsTwoArguments(Exception):
    """Pickles fine, but unpickling calls NeedsTwoArguments(message): TypeError."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a} and {b}")


def raise_needs_two(_: object) -> None:
    raise NeedsTwoArguments(1, 2)
