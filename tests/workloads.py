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
