"""The worker pool on its own: prefetched jobs stolen by idle workers run exactly once."""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import multiprocessing
import os
import random
import threading
import time
from typing import Any

import psutil
import pytest

from inorder import WorkerCrashedError, _forkserver
from inorder._backends import BatchLost
from inorder._backends.process import default_context
from inorder._pool import PREFETCH_MAX_BYTES, WorkerPool, _Job, _Worker

from . import workloads


def test_jobs_of_uneven_length_each_run_once_while_idle_workers_steal() -> None:
    """Uneven jobs make workers fall idle while others hold a prefetched job: it is
    revoked and given to the idle one, thousands of times here. Every job must finish
    exactly once (a job run twice would fail the pool's manager thread)."""
    rng = random.Random(7)
    pool = WorkerPool(2, context=multiprocessing.get_context("forkserver"))
    pool.start()
    try:
        pool.ready.result(timeout=30)
        # Like the pipeline: at most two jobs per worker outstanding, so the pool's own
        # queue is often empty and idle workers steal what waits in a busy one's pipe.
        results: list[int] = []
        outstanding: set[concurrent.futures.Future[int]] = set()
        for i in range(3000):
            if len(outstanding) == 4:
                done, outstanding = concurrent.futures.wait(
                    outstanding, timeout=60, return_when=concurrent.futures.FIRST_COMPLETED
                )
                results += [f.result() for f in done]
            delay = rng.choice([0.0, 0.0, 0.0005, 0.002])
            outstanding.add(pool.submit(workloads.sleep_then_return, i, delay))
        results += [f.result(timeout=60) for f in outstanding]
        assert sorted(results) == list(range(3000))
    finally:
        pool.kill()


def test_a_worker_with_a_revoked_job_pending_takes_nothing_until_it_skips_it() -> None:
    """The interleaving CI once hit: the worker's progress slot holds one revoked job id,
    so a worker that has not yet skipped its revoked job must get no new job (which
    could be revoked in turn, overwriting the id, and the first job would run twice)."""
    pool = WorkerPool(2, context=multiprocessing.get_context("forkserver"))
    worker = _Worker(0, process=None, conn=None, gate=None, pidfd=None)  # type: ignore[arg-type]
    worker.ready = True
    revoked = _Job(7, [b""], concurrent.futures.Future())
    worker.jobs.append(revoked)
    worker.revoked.add(revoked.id)
    assert not pool._can_take(worker, ahead=True)
    assert not pool._can_take(worker, ahead=False)
    worker.jobs.clear()
    worker.revoked.clear()  # it answered SKIPPED
    assert pool._can_take(worker, ahead=False)


def _count_wakes(pool: WorkerPool) -> list[None]:
    """A list that gains an entry whenever something wakes ``pool``'s manager thread."""
    wakes: list[None] = []
    wake = pool._wake_locked

    def counted() -> None:
        wakes.append(None)
        wake()

    pool._wake_locked = counted  # type: ignore[method-assign]
    return wakes


def test_a_small_job_goes_straight_to_an_idle_worker_without_waking_the_manager() -> None:
    """The submitting thread sends it itself: through the manager thread the job would
    take one more thread switch, and the caller would wait for the GIL while the manager
    takes its turn. Large jobs, and every job when items have a timeout (the manager
    times them), still go through the manager."""
    pool = WorkerPool(1, context=multiprocessing.get_context("forkserver"))
    pool.start()
    try:
        pool.ready.result(timeout=30)
        wakes = _count_wakes(pool)
        while pool._turn_lock.locked():  # the manager is still dealing with READY
            time.sleep(0.001)
        small = pool.submit(workloads.identity, 3)
        assert wakes == []
        assert small.result(timeout=30) == 3
        large = pool.submit(workloads.identity, b"x" * (PREFETCH_MAX_BYTES + 1))
        assert len(wakes) == 1
        assert large.result(timeout=30) == b"x" * (PREFETCH_MAX_BYTES + 1)
    finally:
        pool.kill()
    timed = WorkerPool(1, context=multiprocessing.get_context("forkserver"), timeout=30)
    timed.start()
    try:
        timed.ready.result(timeout=30)
        wakes = _count_wakes(timed)
        assert timed.submit(workloads.identity, 4).result(timeout=30) == 4
        assert len(wakes) == 1
    finally:
        timed.kill()


class _NoProcesses:
    """A multiprocessing context whose processes cannot start (the system is out of them)."""

    def __init__(self) -> None:
        self._real = multiprocessing.get_context("forkserver")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def Process(self, *args: Any, **kwargs: Any) -> Any:  # the name a context has
        process = self._real.Process(*args, **kwargs)

        def refuse() -> None:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

        process.start = refuse
        return process


def _open_files() -> set[tuple[str, str]]:
    """This process's open files, each as its number and what it is: a file that other
    tests' leftovers close meanwhile (garbage collection) leaves the set, and a number
    reused for something else counts as new."""
    files = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # listdir's own descriptor, closed
            files.add((fd, os.readlink(f"/proc/self/fd/{fd}")))
    return files


def test_workers_that_cannot_start_fail_ready_and_every_queued_job() -> None:
    # Shared memory and the resource tracker keep a file open for good once used.
    context = multiprocessing.get_context("forkserver")
    context.RawArray("d", 1)
    context.Lock()
    open_files = _open_files()
    pool = WorkerPool(2, context=_NoProcesses())  # type: ignore[arg-type]
    queued = pool.submit(workloads.identity, 1)
    pool.start()
    try:
        with pytest.raises(
            RuntimeError, match=r"could not start a worker process \(5 tries in a row\)"
        ):
            pool.ready.result(timeout=30)
        with pytest.raises(RuntimeError, match="Resource temporarily unavailable"):
            queued.result(timeout=30)
    finally:
        pool.kill()
    assert _open_files() - open_files == set()  # the pipes made for the worker are closed


def test_linux_workers_skip_the_main_module_unless_the_fork_server_lacks_a_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tests/test_main_module.py checks the behaviour end to end; here, the choice.
    assert _forkserver.available()
    context = default_context()
    assert isinstance(context, _forkserver.WorkerContext)
    assert context.get_start_method() == "forkserver"
    preparation = _forkserver.preparation_without_main("inorder-worker-0")
    assert not set(_forkserver.MAIN_MODULE_KEYS) & preparation.keys()
    assert {"sys_path", "dir", "authkey"} <= preparation.keys()
    monkeypatch.setattr(_forkserver, "available", lambda: False)
    fallback = default_context()
    assert not isinstance(fallback, _forkserver.WorkerContext)
    assert fallback.get_start_method() == "forkserver"


def test_a_dead_workers_job_fails_with_a_loss_report_and_the_error_to_deliver() -> None:
    # The pool reports the fact (the job started; no item of a batch was running) and
    # builds the error, since it knows the pid and the exit status.
    pool = WorkerPool(1, context=multiprocessing.get_context("forkserver"))
    pool.start()
    try:
        pool.ready.result(timeout=30)
        lost = pool.submit(os._exit, 3).exception(timeout=30)
        assert isinstance(lost, BatchLost)
        assert (lost.started, lost.running) == (True, None)
        assert isinstance(lost.error, WorkerCrashedError)
        assert (lost.error.exitcode, lost.error.signal) == (3, None)
        assert lost.error.pid is not None
        assert f"the worker process {lost.error.pid} died" in str(lost.error)
        assert "(exit code 3)" in str(lost.error)
        assert pool.submit(workloads.identity, 4).result(timeout=30) == 4  # replaced
    finally:
        pool.kill()


class _StartWhenLetGo:
    """The fork server context, whose processes start only once ``go`` is set: a launch
    caught under way while its pool is stopped."""

    def __init__(self) -> None:
        self._real = multiprocessing.get_context("forkserver")
        self.entered = threading.Event()
        self.go = threading.Event()
        self.done = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def Process(self, *args: Any, **kwargs: Any) -> Any:  # the name a context has
        process = self._real.Process(*args, **kwargs)
        start = process.start

        def start_when_let_go() -> None:
            self.entered.set()
            self.go.wait(30)
            try:
                start()
            finally:
                self.done.set()

        process.start = start_when_let_go
        return process


def wait_until_true(condition: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_pool_stopped_while_a_worker_launches_leaves_the_fork_server_running() -> None:
    # The lifeline's reading end goes to every starting worker: closed while the fork
    # server is being sent it, the server would read a request without descriptors and
    # end, taking every other pool's starts with it.
    from multiprocessing import forkserver

    context = _StartWhenLetGo()
    warm = WorkerPool(1, context=context._real)
    warm.start()
    warm.ready.result(timeout=30)
    warm.kill()
    server = forkserver._forkserver._forkserver_pid
    assert server is not None
    pool = WorkerPool(1, context=context)  # type: ignore[arg-type]
    pool.start()
    assert context.entered.wait(30)
    pool.kill(wait=True)  # returns while the launch is under way
    assert not pool._lifeline_r.closed  # the launch will send it: closed after it
    context.go.set()
    assert context.done.wait(30)
    wait_until_true(lambda: pool._lifeline_r.closed)  # and then it is, by the starter
    assert psutil.pid_exists(server)
    assert psutil.Process(server).status() != psutil.STATUS_ZOMBIE
    after = WorkerPool(1, context=context._real)
    after.start()
    try:
        assert after.submit(workloads.identity, 7).result(timeout=30) == 7
    finally:
        after.kill()
    assert forkserver._forkserver._forkserver_pid == server  # the same server served it
