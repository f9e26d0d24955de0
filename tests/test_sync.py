"""``inorder.imap``: the pipeline from code without an event loop, against the builtin
``map`` and the async API's promises (order, error policies, crashes, timeouts, nothing
left running however the iteration ends)."""

from __future__ import annotations

import asyncio
import gc
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
import trio

import inorder
from inorder import TaskTimeoutError, WorkerCrashedError

from . import workloads
from .helpers import alive, worker_processes

ROOT = Path(__file__).parent.parent


def imap_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "inorder-imap"]


def test_results_are_the_builtin_maps_in_order() -> None:
    left, right = range(3000), [i % 7 for i in range(2000)]
    assert list(inorder.imap(workloads.add, left, right, workers=2)) == list(
        map(workloads.add, left, right)
    )
    assert imap_threads() == []  # the results ran out: its thread ended


def test_each_error_policy() -> None:
    kinds = ["ok", "raise", "ok", "raise", "ok"]
    results = inorder.imap(workloads.fault, range(5), kinds, workers=2)
    seen: list[Any] = []
    while True:  # "raise": next() raises at the item's position, then goes on
        try:
            seen.append(next(results))
        except StopIteration:
            break
        except ValueError as error:
            seen.append(str(error))
    assert seen == [0, "item 1 raised", 2, "item 3 raised", 4]

    returned = list(inorder.imap(workloads.fault, range(5), kinds, on_error="return"))
    assert [str(r) if isinstance(r, Exception) else r for r in returned] == seen
    assert list(inorder.imap(workloads.fault, range(5), kinds, on_error="skip")) == [0, 2, 4]


def test_a_crash_and_a_timeout_mid_stream_cost_their_items_only() -> None:
    kinds = ["ok", "os_exit", "ok", "hang", "ok"]
    with inorder.imap(
        workloads.fault, range(5), kinds, workers=2, timeout=0.5, on_error="return"
    ) as results:
        outcomes = list(results)
    assert [outcomes[i] for i in (0, 2, 4)] == [0, 2, 4]
    assert isinstance(outcomes[1], WorkerCrashedError)
    assert isinstance(outcomes[3], TaskTimeoutError)


def test_leaving_early_stops_the_workers_and_the_thread() -> None:
    before = worker_processes()  # what earlier tests may still be ending
    with inorder.imap(workloads.sleep_then_pid, range(1000), workers=2) as results:
        pids = {next(results), next(results)}
        workers = worker_processes() - before
        assert pids <= workers
        assert imap_threads() == ["inorder-imap"]
    assert alive(workers) == set()
    assert imap_threads() == []


def test_an_iterator_dropped_without_closing_stops_what_it_started() -> None:
    results = inorder.imap(workloads.sleep_then_pid, range(1000), workers=2)
    pids = {next(results), next(results)}
    del results
    gc.collect()
    assert imap_threads() == []
    assert alive(pids) == set()


def test_the_options_are_checked_at_the_call() -> None:
    with pytest.raises(ValueError, match="window"):
        inorder.imap(workloads.square, range(3), window=0)
    with pytest.raises(TypeError, match=r"imap\(\) needs a callable first"):
        inorder.imap(3, range(3))  # type: ignore[arg-type]


async def _imap_inside_a_loop() -> None:
    with pytest.raises(RuntimeError, match=r"inorder\.map"):
        next(inorder.imap(workloads.square, range(3)))


def test_inside_a_running_event_loop_it_points_to_the_async_api() -> None:
    asyncio.run(_imap_inside_a_loop())
    trio.run(_imap_inside_a_loop)
    assert imap_threads() == []


CTRL_C_SCRIPT = """
import sys
import inorder
from tests import workloads

items = range(10_000)
with inorder.imap(workloads.sleep_then_return, items, [0.05] * len(items), workers=2) as results:
    for n, result in enumerate(results):
        if n == 3:
            print("iterating", flush=True)
"""


def test_ctrl_c_while_iterating_ends_the_program_and_everything_it_started() -> None:
    program = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() == "iterating\n"
        started = psutil.Process(program.pid).children(recursive=True)
        assert len(started) >= 2  # the workers (and the fork server)
        program.send_signal(signal.SIGINT)
        _, err = program.communicate(timeout=30)
    finally:
        program.kill()
    assert program.returncode != 0
    assert "KeyboardInterrupt" in err
    # The workers and the fork server end as they see their parent gone: wait for that.
    _, left = psutil.wait_procs(started, timeout=10)
    assert left == []
