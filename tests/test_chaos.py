"""Hostile environments: workers killed while they start, a fork server stopped or
killed, file descriptors exhausted. No single fault breaks the stream for good."""

from __future__ import annotations

import contextlib
import json
import os
import random
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

from inorder import OrderedPipeline, WorkerCrashedError

from . import workloads
from .helpers import alive, run_arguments, wait_until, worker_processes

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
    # Should leaving hang, the fork server is resumed all the same, so that the test
    # fails on its timeout without leaving a stopped process behind.
    resume: threading.Timer | None = None
    try:
        async with OrderedPipeline(workers=2, ordered=False, on_error="return") as pipe:
            await pipe.put(workloads.wait_for_file, 0, str(gate))
            await pipe.put(workloads.report_pid_then_sleep, 1, str(pid_file))
            await wait_until(pid_file.exists)
            victim = int(pid_file.read_text())
            server = psutil.Process(victim).ppid()
            os.kill(server, signal.SIGSTOP)  # the fork server hears of no death now
            resume = threading.Timer(30, os.kill, (server, signal.SIGCONT))
            resume.start()
            os.kill(victim, signal.SIGKILL)
            outcome = await anext(pipe)
            assert isinstance(outcome, WorkerCrashedError), outcome
            assert outcome.pid == victim
            began = time.monotonic()
        took = time.monotonic() - began  # item 0 still ran: its worker was stopped
        assert took < 10, f"leaving took {took:.1f} s with the fork server stopped"
    finally:
        if resume is not None:
            resume.cancel()
        if server:
            os.kill(server, signal.SIGCONT)


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is the Linux default")
async def test_a_killed_fork_server_costs_no_item_on_a_healthy_worker(
    anyio_backend: Any, tmp_path: Path
) -> None:
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


# -- random kills ------------------------------------------------------------------------

CHAOS_ITEMS = 3000


async def _kill_workers_at_random(
    before: set[int], ran_in: set[int], killed: set[int], seed: int
) -> None:
    """SIGKILL a random worker every 10-50 ms, and every other time its replacement too
    as soon as it exists (while it starts). After each round it waits until a worker
    started since ran an item: a worker was ready in between, so the pool never sees
    the run of failed starts after which it gives up (the tests above cover that)."""
    rng = random.Random(seed)
    while True:
        await anyio.sleep(rng.uniform(0.01, 0.05))
        workers = sorted(worker_processes() - before - killed)
        if not workers:
            continue
        victim = rng.choice(workers)
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
        killed.add(victim)
        if rng.random() < 0.5:
            with anyio.move_on_after(2):
                while not (fresh := worker_processes() - before - killed - set(workers)):  # noqa: ASYNC110
                    await anyio.sleep(0.001)
                replacement = min(fresh)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(replacement, signal.SIGKILL)  # most likely still starting
                killed.add(replacement)
        alive_then = set(workers)
        await wait_until(lambda alive_then=alive_then: bool(ran_in - alive_then - killed))  # type: ignore[misc]
        ran_in.clear()


@pytest.mark.parametrize("retries", [0, 3])
async def test_random_kills_cost_only_the_items_that_were_running(
    anyio_backend: Any, retries: int
) -> None:
    before = worker_processes()
    killed: set[int] = set()
    ran_in: set[int] = set()  # worker pids that returned results since the last kill
    outcomes: list[Any] = []
    seed = random.getrandbits(32)
    async with OrderedPipeline(workers=2, retries=retries, on_error="return") as pipe:
        pipe.map(workloads.ran_where, range(CHAOS_ITEMS), [0.0005] * CHAOS_ITEMS)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_kill_workers_at_random, before, ran_in, killed, seed)
            async for outcome in pipe:
                if isinstance(outcome, tuple):
                    ran_in.add(outcome[1])
                    outcome = outcome[0]
                outcomes.append(outcome)
            tasks.cancel_scope.cancel()
        stats = pipe.statistics()
    failed = {i: o for i, o in enumerate(outcomes) if not isinstance(o, int)}
    assert len(outcomes) == CHAOS_ITEMS, seed
    assert [o for o in outcomes if isinstance(o, int)] == [
        i for i in range(CHAOS_ITEMS) if i not in failed
    ], seed
    assert len(killed) >= 5, seed  # the run was long enough to see kills
    for error in failed.values():
        assert isinstance(error, WorkerCrashedError), (seed, error)
        assert error.pid in killed, (seed, error)  # no item of a healthy worker failed
    assert len(failed) <= len(killed), seed  # a kill costs at most the item it ran
    if retries:
        assert failed == {}, seed
    assert stats.failed == len(failed)
