"""Functions the Dask tests run on cluster workers (and on the scheduler): a module the
workers import by name, as a user's would be (the command-line cluster gets the
repository on its PYTHONPATH)."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any


def inc(x: int) -> int:
    return x + 1


def fail_on_seven(x: int) -> int:
    if x == 7:
        raise ValueError(f"seven is not welcome ({x})")
    return x


def record_call(folder: str) -> str:
    """A side effect per call: a new file in ``folder`` each time, whatever the argument."""
    name = uuid.uuid4().hex
    (Path(folder) / name).touch()
    return name


def fail_first_attempt(folder: str, x: int) -> int:
    """Fails the first attempt at each ``x`` (remembered as files in ``folder``)."""
    marker = Path(folder) / str(x)
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"first attempt at {x}")
    return x


def wait_for_file(flag: str, x: int) -> int:
    """Item 0 returns at once; every other waits until ``flag`` exists (60 s at most),
    so a test decides when the cluster's threads are free again."""
    deadline = time.monotonic() + 60
    while x and not os.path.exists(flag) and time.monotonic() < deadline:
        time.sleep(0.01)
    return x


def slow_pid(x: int) -> tuple[int, int]:
    time.sleep(0.01)
    return x, os.getpid()


def kill_worker_on(culprit: int, x: int) -> int:
    """SIGKILLs the worker running it when ``x == culprit``: every time."""
    if x == culprit:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def batch_tasks(dask_scheduler: Any) -> int:
    """On the scheduler (``client.run_on_scheduler``): inorder's tasks it knows of."""
    return sum(1 for key in dask_scheduler.tasks if str(key).startswith("inorder-batch-"))


def worker_name(line: str) -> str:
    """The name of the Dask worker running it (raises outside one)."""
    from distributed import get_worker

    return str(get_worker().name)
