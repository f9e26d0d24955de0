"""Cancellation reaches the worker processes, and nothing outlives the parent.

Items sleep 30 s or more here: leaving a pipeline must stop them, and the processes
they started, not wait for them. A parent killed with SIGKILL, which runs no cleanup at
all, must leave no worker behind either (the workers' lifeline, see _worker_process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from inorder import OrderedPipeline

from . import workloads
from .helpers import alive, loop_of, run_arguments, wait_until, worker_processes

pytestmark = pytest.mark.anyio

# The most leaving a pipeline whose items are mid-way through long work may take here.
# Idle, it takes well under a second (SIGTERM, TERMINATE_GRACE_SECONDS, SIGKILL); the
# bound leaves a machine with every core busy room, and is still far below the items'
# own durations, so a pipeline that waited for them fails.
LEAVE_WITHIN_SECONDS = 10.0

ROOT = Path(__file__).resolve().parent.parent


async def _children_recorded(folder: Path, count: int) -> set[int]:
    await wait_until(lambda: len(list(folder.glob("*.pid"))) == count)
    await wait_until(lambda: all(p.read_text() for p in folder.glob("*.pid")))
    return _recorded_pids(folder)


def _recorded_pids(folder: Path) -> set[int]:
    return {int(p.read_text()) for p in folder.glob("*.pid")}


async def test_leaving_early_stops_items_and_the_processes_they_started(
    anyio_backend: Any, tmp_path: Path
) -> None:
    before = worker_processes()
    async with OrderedPipeline(workers=2) as pipe:
        for i in range(2):
            # Children that take the kernel milliseconds to end once killed (their memory
            # is freed): leaving returns only after that.
            pid_file = str(tmp_path / f"{i}.pid")
            await pipe.put(workloads.spawn_child_then_sleep, i, pid_file, 256)
        children = await _children_recorded(tmp_path, 2)
        workers = worker_processes() - before - children
        assert len(workers) == 2
        started = time.monotonic()
    took = time.monotonic() - started
    assert alive(workers | children) == set()
    assert took < LEAVE_WITHIN_SECONDS, f"leaving took {took:.2f} s"


async def test_leaving_sends_items_sigterm_first_so_they_can_clean_up(
    anyio_backend: Any, tmp_path: Path
) -> None:
    cleaned = tmp_path / "cleaned-up"
    async with OrderedPipeline(workers=1) as pipe:
        await pipe.put(workloads.clean_up_on_sigterm, str(cleaned))
        await wait_until(lambda: pipe.statistics().in_flight == 1)
        await wait_until((tmp_path / "cleaned-up.ready").exists)  # its handler is set
    assert cleaned.read_text() == "SIGTERM"


async def test_cancelling_the_consumer_stops_running_items(
    anyio_backend: Any,
) -> None:
    before = worker_processes()
    started = 0.0
    with anyio.move_on_after(60) as scope:
        async with OrderedPipeline(workers=2) as pipe:
            for i in range(4):
                await pipe.put(workloads.sleep_then_return, i, 30.0)
            await wait_until(lambda: pipe.statistics().in_flight == 4)
            workers = worker_processes() - before
            started = time.monotonic()
            scope.cancel()
            await anext(pipe)
    took = time.monotonic() - started
    assert scope.cancelled_caught
    assert alive(workers) == set()
    assert took < LEAVE_WITHIN_SECONDS, f"leaving took {took:.2f} s"


PARENT_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

async def main():
    async with inorder.OrderedPipeline(workers=2) as pipe:
        for i in range(2):
            pid_file = os.path.join({folder!r}, f"{{i}}.pid")
            await pipe.put(workloads.spawn_child_then_sleep, i, pid_file)
        print("running", flush=True)
        async for _ in pipe:
            pass

if __name__ == "__main__":
    anyio.run(main, **json.loads(sys.argv[1]))
"""


def _start_parent(tmp_path: Path, anyio_backend: Any) -> subprocess.Popen[str]:
    """The script above, on the event loop of the test."""
    script = tmp_path / "parent.py"
    script.write_text(textwrap.dedent(PARENT_SCRIPT.format(root=str(ROOT), folder=str(tmp_path))))
    return subprocess.Popen(
        [sys.executable, str(script), run_arguments(loop_of(anyio_backend))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _descendants(pid: int) -> set[int]:
    return {p.pid for p in psutil.Process(pid).children(recursive=True)}


async def _running_parent(parent: subprocess.Popen[str], tmp_path: Path) -> set[int]:
    """Wait until the parent's items run and started their children; all its processes."""
    assert parent.stdout is not None
    assert parent.stdout.readline().strip() == "running"
    children = await _children_recorded(tmp_path, 2)
    everything = _descendants(parent.pid)  # forkserver, workers, the items' children
    assert children <= everything
    assert len(everything) >= 5
    return everything


async def test_a_parent_killed_with_sigkill_leaves_no_process_behind(
    anyio_backend: Any, tmp_path: Path
) -> None:
    parent = _start_parent(tmp_path, anyio_backend)
    try:
        everything = await _running_parent(parent, tmp_path)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        await wait_until(lambda: not alive(everything), limit=10)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
        parent.stderr.close()  # type: ignore[union-attr]


async def test_ctrl_c_stops_a_script_within_a_second_with_no_orphans(
    anyio_backend: Any, tmp_path: Path
) -> None:
    parent = _start_parent(tmp_path, anyio_backend)
    try:
        everything = await _running_parent(parent, tmp_path)
        started = time.monotonic()
        os.kill(parent.pid, signal.SIGINT)
        parent.wait(10)
        took = time.monotonic() - started
        _, stderr = parent.communicate()
        assert "KeyboardInterrupt" in stderr
        assert took < LEAVE_WITHIN_SECONDS, f"the script took {took:.2f} s to exit"
        # The forkserver is multiprocessing's, shared per parent: it exits with it.
        await wait_until(lambda: not alive(everything), limit=10)
    finally:
        parent.kill()
        parent.wait()


INTERRUPTED_SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

FOLDER = {folder!r}

async def waiting_in_put():
    async with inorder.OrderedPipeline(workers=2, window=4) as pipe:
        for i in range(100):
            await pipe.put(workloads.note_sigterm_and_go_on, i, FOLDER)
            print("accepted", i, flush=True)

async def consuming_a_map_stream():
    items = range(100), [FOLDER] * 100
    async with inorder.map(workloads.note_sigterm_and_go_on, *items, workers=2) as results:
        print("accepted", flush=True)
        async for _ in results:
            pass

if __name__ == "__main__":
    anyio.run(globals()[sys.argv[1]], **json.loads(sys.argv[2]))
"""


@pytest.mark.parametrize("scenario", ["waiting_in_put", "consuming_a_map_stream"])
async def test_a_second_interrupt_during_the_cleanup_still_ends_everything(
    anyio_backend: Any, tmp_path: Path, scenario: str
) -> None:
    """Ctrl-C pressed twice: the second interrupt lands while the first one's cleanup
    waits for the workers (their items got SIGTERM, ignore it, and are killed 0.3 s
    later). The program must still end, with nothing left running."""
    script = tmp_path / "interrupted.py"
    script.write_text(
        textwrap.dedent(INTERRUPTED_SCRIPT.format(root=str(ROOT), folder=str(tmp_path)))
    )
    parent = subprocess.Popen(  # noqa: ASYNC220 - started, not waited for here
        [sys.executable, str(script), scenario, run_arguments(loop_of(anyio_backend))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline().startswith("accepted")
        await wait_until(lambda: len(list(tmp_path.glob("running-*"))) == 2)  # both workers
        everything = _descendants(parent.pid)
        parent.send_signal(signal.SIGINT)
        await wait_until(lambda: any(tmp_path.glob("sigterm-*")))  # the cleanup is under way
        parent.send_signal(signal.SIGINT)
        parent.wait(30)  # the items sleep for ten minutes: only stopping them ends it
        await wait_until(lambda: not alive(everything), limit=10)
    finally:
        parent.kill()
        parent.communicate()


def _threads_exit_waits_for() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if not t.daemon and t.is_alive()}


@pytest.mark.parametrize("executor", ["process", "thread"])
@pytest.mark.parametrize("leave", ["done", "early"])
async def test_a_stopped_pipeline_leaves_no_thread_that_exit_would_wait_for(
    anyio_backend: Any, executor: str, leave: str
) -> None:
    """The interpreter waits at exit for every thread that is not a daemon: one left
    waiting for work (a worker thread of anyio's, parked to stop the pool) hung a
    program interrupted twice, its event loop gone, for good."""
    before = _threads_exit_waits_for()
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        pipe.map(workloads.sleep_then_return, range(20), [0.01] * 20)
        async for result in pipe:
            if leave == "early" and result == 3:
                break
    assert _threads_exit_waits_for() <= before


OUTLIVES_SCRIPT = """
import json, os, sys, threading
sys.path.insert(0, {root!r})
import anyio, inorder, psutil
from tests import workloads

def descendants():
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            found.append(" ".join(child.cmdline()))
        except psutil.Error:
            pass
    return found

async def main():
    async with inorder.OrderedPipeline(workers=2) as pipe:
        results = [r async for r in pipe.map(workloads.square, range(100))]
    assert results == [x * x for x in range(100)]
    threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print(json.dumps({{"processes": descendants(), "threads": threads}}), flush=True)

if __name__ == "__main__":
    anyio.run(main, **json.loads(sys.argv[1]))
"""


async def test_what_outlives_the_block_is_multiprocessings_two_helpers_until_exit(
    anyio_backend: Any, tmp_path: Path
) -> None:
    """docs/cleanup.md: after the block only multiprocessing's fork server and resource
    tracker remain (shared by every pipeline of the program, started once), no thread;
    when the program ends, they end."""
    script = tmp_path / "outlives.py"
    script.write_text(textwrap.dedent(OUTLIVES_SCRIPT.format(root=str(ROOT))))
    parent = subprocess.Popen(  # noqa: ASYNC220 - started, not waited for here
        [sys.executable, str(script), run_arguments(loop_of(anyio_backend))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        left = json.loads(parent.stdout.readline())
        helpers = _descendants(parent.pid)
        assert parent.wait(30) == 0
        await wait_until(lambda: not alive(helpers), limit=10)
    finally:
        parent.kill()
        parent.communicate()
    assert sorted("forkserver" in p or "resource_tracker" in p for p in left["processes"]) == [
        True,
        True,
    ], left["processes"]
    assert left["threads"] == [], left["threads"]
