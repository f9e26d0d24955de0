"""Hostile environments: workers killed while they start, a fork server stopped or
killed, file descriptors exhausted. No single fault breaks the stream for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from inorder import OrderedPipeline, WorkerCrashedError

from . import workloads
from .helpers import alive, run_arguments, wait_until

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _starting(folder: Path) -> set[int]:
    """Workers waiting in ``slow_to_start_after_the_first`` (not ready yet)."""
    return {int(p.name.split("-")[1]) for p in folder.glob("starting-*")}


async def test_a_worker_killed_while_it_starts_is_replaced_like_any_other(
    anyio_backend: Any, tmp_path: Path
) -> None:
    (tmp_path / "hold").touch()
    async with OrderedPipeline(
        workers=1,
        initializer=workloads.slow_to_start_after_the_first,
        initargs=(str(tmp_path),),
    ) as pipe:
        await pipe.put(workloads.pid_of_worker)
        first = await anext(pipe)
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: len(_starting(tmp_path)) == 1)  # its replacement starts
        (replacement,) = _starting(tmp_path)
        os.kill(replacement, signal.SIGKILL)  # killed while it starts
        await wait_until(lambda: len(_starting(tmp_path)) == 2)  # and is replaced too
        (tmp_path / "hold").unlink()
        for x in range(4):
            await pipe.put(workloads.square, x)
        assert [await anext(pipe) for _ in range(4)] == [0, 1, 4, 9]


async def test_workers_that_keep_dying_as_they_start_fail_waiting_items_until_one_starts(
    anyio_backend: Any, tmp_path: Path
) -> None:
    async with OrderedPipeline(
        workers=1,
        on_error="return",
        initializer=workloads.slow_to_start_after_the_first,
        initargs=(str(tmp_path),),
    ) as pipe:
        await pipe.put(workloads.pid_of_worker)
        first = await anext(pipe)
        (tmp_path / "die").touch()  # every replacement exits as it starts
        os.kill(first, signal.SIGKILL)
        for x in range(3):
            await pipe.put(workloads.square, x)
        failed = [await anext(pipe) for _ in range(3)]
        (tmp_path / "die").unlink()  # the next one starts: the stream goes on
        await pipe.put(workloads.square, 7)
        assert await anext(pipe) == 49
    for error in failed:
        assert isinstance(error, RuntimeError), error
        assert "worker processes keep dying while they start" in str(error)
        assert "exit code 3" in str(error)
        assert "spawn" not in str(error)  # the fork server: no main module to blame
        assert len(error.__notes__) == 1  # its own item's note, no one else's
    assert len({id(error) for error in failed}) == 3  # one exception object each


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is the Linux default")
async def test_a_stopped_fork_server_neither_hides_a_death_nor_holds_up_leaving(
    anyio_backend: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "worker.pid"
    gate = tmp_path / "gate"
    server = 0
    try:
        async with OrderedPipeline(workers=2, ordered=False, on_error="return") as pipe:
            await pipe.put(workloads.wait_for_file, 0, str(gate))
            await pipe.put(workloads.report_pid_then_sleep, 1, str(pid_file))
            await wait_until(pid_file.exists)
            victim = int(pid_file.read_text())
            server = psutil.Process(victim).ppid()
            os.kill(server, signal.SIGSTOP)  # the fork server hears of no death now
            os.kill(victim, signal.SIGKILL)
            outcome = await anext(pipe)
            assert isinstance(outcome, WorkerCrashedError), outcome
            assert outcome.pid == victim
            began = time.monotonic()
        took = time.monotonic() - began  # item 0 still ran: its worker was stopped
        assert took < 10, f"leaving took {took:.1f} s with the fork server stopped"
    finally:
        if server:
            os.kill(server, signal.SIGCONT)


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is the Linux default")
async def test_a_killed_fork_server_costs_no_item_on_a_healthy_worker(
    anyio_backend: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "worker.pid"
    gate = tmp_path / "gate"
    async with OrderedPipeline(workers=1, on_error="return") as pipe:
        await pipe.put(workloads.pid_of_worker)
        worker = await anext(pipe)
        server = psutil.Process(worker).ppid()
        await pipe.put(workloads.wait_for_file, 1, str(gate))
        await wait_until(lambda: pipe.statistics().in_flight == 1)
        os.kill(server, signal.SIGKILL)
        await wait_until(lambda: not alive({server}))
        gate.touch()
        assert await anext(pipe) == 1  # the worker was fine all along
        await pipe.put(workloads.pid_of_worker)
        assert await anext(pipe) == worker
        assert pipe.statistics().restarts == 0
    del pid_file


FD_SCRIPT = """
import json, os, resource, signal, sys
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

async def main():
    outcomes = []
    async with inorder.OrderedPipeline(workers=1, on_error="return") as pipe:
        await pipe.put(workloads.pid_of_worker)
        worker = await anext(pipe)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        # No new file descriptor for anyone: a new worker cannot be started.
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) - 8, hard))
        os.kill(worker, signal.SIGKILL)
        await pipe.put(workloads.square, 3)
        outcomes.append(await anext(pipe))
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # descriptors again
        await pipe.put(workloads.square, 4)
        outcomes.append(await anext(pipe))
    print(json.dumps([repr(o) if isinstance(o, Exception) else o for o in outcomes]))

anyio.run(main, **json.loads(sys.argv[1]))
"""


def test_a_pool_out_of_file_descriptors_recovers_once_there_are_some(
    tmp_path: Path, loop: str
) -> None:
    script = tmp_path / "fds.py"
    script.write_text(textwrap.dedent(FD_SCRIPT.format(root=str(ROOT))))
    done = subprocess.run(
        [sys.executable, str(script), run_arguments(loop)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    failed, recovered = json.loads(done.stdout)
    assert "could not start a worker process" in failed
    assert "Too many open files" in failed
    assert recovered == 16
