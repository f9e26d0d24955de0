"""The same pipeline on a real Dask cluster (``executor=client``), loopback only.

Two clusters: Dask's ``LocalCluster`` of two worker processes, and a scheduler and two
workers started with Dask's own command line (``dask scheduler``, ``dask worker``) as
a user would on other machines, reached over TCP on 127.0.0.1. Both run with
``distributed.scheduler.allowed-failures`` at 1, so that a task that kills its worker is
given up after two deaths, not four, and ``worker-saturation`` at 1.0, so that a worker
holds only the task it runs: a worker's death then counts against that task alone
(docs/dask.md, "Failures").
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

import inorder
from inorder import OrderedPipeline, WorkerCrashedError

from . import dask_functions as fx

distributed = pytest.importorskip("distributed")  # the test extra installs it
dask = pytest.importorskip("dask")

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent
ALLOWED_FAILURES = 1


@pytest.fixture(scope="module")
def local_client() -> Iterator[Any]:
    # The cluster object checks `lost-worker-timeout` (15 s by default) after each
    # worker's loss: if no worker of that name is registered at that moment, it closes
    # the nanny for good. These tests kill the same workers again and again, so a check
    # could land while a worker restarts and leave the cluster one worker short. It is
    # read when a worker is lost, in this process: set for the cluster's whole life.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        with dask.config.set(
            {
                "distributed.scheduler.allowed-failures": ALLOWED_FAILURES,
                "distributed.scheduler.worker-saturation": 1.0,
            }
        ):
            cluster = local_cluster(2)
        with cluster, distributed.Client(cluster) as client:
            yield client


def local_cluster(workers: int, **options: Any) -> Any:
    """A LocalCluster of ``workers`` processes of one thread each, on 127.0.0.1 only."""
    return distributed.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        **options,
    )


def _dask_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "distributed.cli.dask_" + args[0], *args[1:]]


@pytest.fixture(scope="module")
def command_line_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and two workers, each a process started with Dask's command line;
    yields the scheduler file."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = str(folder / "scheduler.json")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(ALLOWED_FAILURES),
        "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
    }
    common = ["--scheduler-file", scheduler_file, "--host", "127.0.0.1"]
    dashboard = ["--dashboard-address", "127.0.0.1:0"]
    processes = [
        subprocess.Popen(
            [*_dask_command("scheduler"), "--port", "0", *dashboard, *common],
            env=env,
            stderr=subprocess.DEVNULL,
        )
    ]
    try:
        for name in ("w1", "w2"):
            processes.append(
                subprocess.Popen(
                    [
                        *_dask_command("worker"),
                        "--nthreads",
                        "1",
                        "--name",
                        name,
                        *dashboard,
                        *common,
                    ],
                    env=env,
                    cwd=folder,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        while not os.path.exists(scheduler_file):
            if time.monotonic() > deadline:
                raise TimeoutError("the command-line scheduler did not start in 60 s")
            time.sleep(0.05)
        with distributed.Client(scheduler_file=scheduler_file) as client:
            client.wait_for_workers(2, timeout=60)
        yield scheduler_file
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def cli_client(command_line_cluster: str) -> Iterator[Any]:
    with distributed.Client(scheduler_file=command_line_cluster) as client:
        yield client


@pytest.fixture(params=["LocalCluster", "command line"])
def client(request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(
        "local_client" if request.param == "LocalCluster" else "cli_client"
    )


async def all_workers_back(client: Any) -> None:
    """Wait until the nannies have replaced the workers a test killed (the scheduler
    knows two again), so that the next test starts on a whole cluster."""
    with anyio.fail_after(60):
        while len(await anyio.to_thread.run_sync(client.nthreads)) < 2:  # noqa: ASYNC110
            await anyio.sleep(0.05)


async def tasks_on_scheduler(client: Any) -> int:
    return int(await anyio.to_thread.run_sync(client.run_on_scheduler, fx.batch_tasks))


async def test_results_come_in_order_with_markers(anyio_backend: Any, client: Any) -> None:
    async with OrderedPipeline(executor=client) as pipe:
        assert pipe.options.workers == 2  # the cluster's threads, not this machine's CPUs
        assert pipe.options.follows_cluster

        async def produce() -> None:
            for x in range(200):
                if x % 50 == 0:
                    await pipe.put(f"marker {x}")
                await pipe.put(fx.inc, x)
            pipe.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            results = [r async for r in pipe]
    expected: list[Any] = []
    for x in range(200):
        if x % 50 == 0:
            expected.append(f"marker {x}")
        expected.append(x + 1)
    assert results == expected
    assert client.status == "running"  # the client is the user's: never closed


async def test_map_and_unordered(anyio_backend: Any, client: Any) -> None:
    async with OrderedPipeline(executor=client) as pipe:
        assert [r async for r in pipe.map(fx.inc, range(5000))] == list(range(1, 5001))
    async with OrderedPipeline(executor=client, ordered=False, batch=1) as pipe:
        pairs = [r async for r in pipe.map(fx.slow_pid, range(40))]
    assert sorted(x for x, _ in pairs) == list(range(40))
    assert len({pid for _, pid in pairs}) == 2  # both workers ran items


async def test_error_policies_keep_the_type_the_position_and_the_remote_traceback(
    anyio_backend: Any, client: Any
) -> None:
    async with OrderedPipeline(executor=client, on_error="return") as pipe:
        results = [r async for r in pipe.map(fx.fail_on_seven, range(12))]
    assert isinstance(results[7], ValueError)
    assert results[:7] + results[8:] == [x for x in range(12) if x != 7]
    async with OrderedPipeline(executor=client, on_error="skip") as pipe:
        assert [r async for r in pipe.map(fx.fail_on_seven, range(12))] == [
            x for x in range(12) if x != 7
        ]
    got: list[int] = []

    async def consume(pipe: OrderedPipeline) -> None:
        async for r in pipe.map(fx.fail_on_seven, range(12)):
            got.append(r)

    async with OrderedPipeline(executor=client) as pipe:
        with pytest.raises(ValueError, match="seven") as caught:
            await consume(pipe)
    assert got == list(range(7))
    assert inorder.sequence_number(caught.value) == 7
    assert isinstance(caught.value.__cause__, inorder.RemoteTraceback)
    assert "fail_on_seven" in caught.value.__cause__.traceback_text


async def test_equal_arguments_with_side_effects_all_run(
    anyio_backend: Any, client: Any, tmp_path: Path
) -> None:
    async with OrderedPipeline(executor=client, batch=1) as pipe:
        names = [r async for r in pipe.map(fx.record_call, [str(tmp_path)] * 30)]
    assert len(set(names)) == 30
    calls = [path async for path in anyio.Path(tmp_path).iterdir()]
    assert len(calls) == 30  # one call each: none merged by Dask


async def test_retries_work_as_locally(anyio_backend: Any, client: Any, tmp_path: Path) -> None:
    async with OrderedPipeline(executor=client, retries=1) as pipe:
        results = [
            r async for r in pipe.map(fx.fail_first_attempt, [str(tmp_path)] * 20, range(20))
        ]
    assert results == list(range(20))
    assert pipe.statistics().retries == 20


async def test_the_window_bounds_what_is_on_the_cluster(anyio_backend: Any, client: Any) -> None:
    seen: list[int] = []
    async with OrderedPipeline(executor=client, window=6, batch=1) as pipe:
        async for _ in pipe.map(fx.slow_pid, range(40)):
            seen.append(await tasks_on_scheduler(client))
    assert max(seen) <= 6
    assert max(seen) >= 2  # and the cluster's two threads were kept busy


@pytest.mark.parametrize("how", ["break", "cancel", "exception"])
async def test_leaving_leaves_nothing_on_the_scheduler(
    anyio_backend: Any, client: Any, tmp_path: Path, how: str
) -> None:
    flag = str(tmp_path / "flag")
    try:
        with anyio.CancelScope() as scope:
            with contextlib.suppress(KeyError):
                async with OrderedPipeline(executor=client, batch=1) as pipe:
                    async for x in pipe.map(fx.wait_for_file, [flag] * 50, range(50)):
                        assert x == 0
                        # The others wait on the cluster (the scheduler hears of them
                        # asynchronously).
                        with anyio.fail_after(15):
                            while await tasks_on_scheduler(client) < 2:
                                pass
                        if how == "break":
                            break
                        if how == "cancel":
                            scope.cancel()
                            await anyio.sleep(10)
                        raise KeyError(x)
        assert scope.cancelled_caught == (how == "cancel")
        # The scheduler hears of the releases asynchronously: wait for it, while the
        # items still wait for the flag (they would stay 'processing' if not released).
        remaining = -1
        with anyio.fail_after(15):
            while remaining:
                remaining = await tasks_on_scheduler(client)
    finally:
        await anyio.Path(flag).touch()  # the threads still sleeping in released tasks return


@pytest.mark.timeout(120)
async def test_a_worker_killed_mid_stream_is_rescheduled_and_the_stream_completes(
    anyio_backend: Any, client: Any
) -> None:
    pids = await anyio.to_thread.run_sync(client.run, os.getpid)
    victim = sorted(pids.values())[0]
    results = []
    async with OrderedPipeline(executor=client, batch=4) as pipe:
        async for x, _pid in pipe.map(fx.slow_pid, range(400)):
            results.append(x)
            if x == 100:
                os.kill(victim, signal.SIGKILL)
    assert results == list(range(400))  # in order, each once
    await all_workers_back(client)


# Each death costs a worker restart: one loop covers the path.
@pytest.mark.timeout(180)
@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_a_function_that_always_kills_its_worker_fails_at_its_position(
    anyio_backend: Any, client: Any
) -> None:
    async with OrderedPipeline(executor=client, batch=4, on_error="return") as pipe:
        results = [r async for r in pipe.map(fx.kill_worker_on, [5] * 12, range(12))]
    assert isinstance(results[5], WorkerCrashedError)
    assert "Dask" in str(results[5])
    assert results[:5] + results[6:] == [x for x in range(12) if x != 5]
    await all_workers_back(client)


def test_options_that_cannot_hold_on_a_cluster_fail_with_what_to_do(local_client: Any) -> None:
    with pytest.raises(ValueError, match="Dask cannot stop a task"):
        inorder.Options(executor=local_client, timeout=5)
    with pytest.raises(ValueError, match="worker plugin"):
        inorder.Options(executor=local_client, initializer=print)
    with pytest.raises(ValueError, match="lifetime"):
        inorder.Options(executor=local_client, max_tasks_per_child=10)
    fixed = inorder.Options(executor=local_client, workers=8)
    assert fixed.workers == 8
    assert not fixed.follows_cluster
    following = inorder.Options(executor=local_client)
    assert inorder.Options(**following.as_kwargs()) == following
    assert inorder.Options(**following.as_kwargs()).follows_cluster


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_the_in_flight_bound_follows_the_cluster_as_it_scales(anyio_backend: Any) -> None:
    cluster = local_cluster(1)
    with cluster, distributed.Client(cluster) as client:
        seen = set()

        def endless() -> Iterator[int]:
            x = 0
            while True:
                yield x
                x += 1

        async with OrderedPipeline(executor=client) as pipe:
            assert pipe.statistics().workers == 1
            cluster.scale(3)
            with anyio.fail_after(60):
                async for _ in pipe.map(fx.slow_pid, endless()):
                    seen.add(pipe.statistics().workers)
                    if pipe.statistics().workers == 3:
                        break
        assert seen >= {1, 3}


# -- the command line, against the command-line cluster ----------------------------------


def _scheduler_address(scheduler_file: str) -> str:
    return str(json.loads(Path(scheduler_file).read_text())["address"])


def _inorder(*args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inorder", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_inorder_map_runs_on_a_running_scheduler(command_line_cluster: str, loop: str) -> None:
    address = _scheduler_address(command_line_cluster)
    lines = [f"line {i}" for i in range(3000)]
    done = _inorder(
        "map", "--loop", loop, "--dask", address, "tests.cli_functions:upper",
        stdin="".join(f"{line}\n" for line in lines),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line.upper() for line in lines]


def test_inorder_map_sends_a_py_file_by_value(command_line_cluster: str, tmp_path: Path) -> None:
    script = tmp_path / "shouting.py"  # in no folder the workers import from
    script.write_text("def shout(line):\n    return line.upper() + '!'\n")
    done = _inorder(
        "map", "--dask", _scheduler_address(command_line_cluster), f"{script}:shout",
        stdin="a\nb\nc\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["A!", "B!", "C!"]


def test_inorder_map_refuses_what_cannot_hold_on_a_cluster(command_line_cluster: str) -> None:
    done = _inorder(
        "map", "--dask", _scheduler_address(command_line_cluster), "--timeout", "5",
        "tests.cli_functions:upper", stdin="a\n",
    )  # fmt: skip
    assert done.returncode == 2
    assert "Dask cannot stop a task" in done.stderr
    assert done.stdout == ""


# Dask's asynchronous client needs asyncio; on trio the other tests' synchronous one runs.
@pytest.mark.parametrize(
    "anyio_backend",
    [("asyncio", {}), ("asyncio", {"use_uvloop": True})],
    ids=["asyncio", "uvloop"],
)
async def test_an_asynchronous_client_on_this_loop(anyio_backend: Any, tmp_path: Path) -> None:
    async with (
        local_cluster(2, asynchronous=True) as cluster,
        distributed.Client(cluster, asynchronous=True) as client,
    ):
        async with OrderedPipeline(executor=client, on_error="return") as pipe:
            assert pipe.options.workers == 2
            results = [r async for r in pipe.map(fx.fail_on_seven, range(300))]
        assert isinstance(results[7], ValueError)
        assert results[:7] + results[8:] == [x for x in range(300) if x != 7]
        flag = str(tmp_path / "flag")
        try:
            async with OrderedPipeline(executor=client, batch=1) as pipe:
                async for _ in pipe.map(fx.wait_for_file, [flag] * 20, range(20)):
                    break
            with anyio.fail_after(15):
                while await client.run_on_scheduler(fx.batch_tasks):
                    pass
        finally:
            await anyio.Path(flag).touch()


def test_a_client_that_is_not_connected_is_refused_with_what_to_do(local_client: Any) -> None:
    closed = distributed.Client(local_client.cluster, set_as_default=False)
    closed.close()
    with pytest.raises(ValueError, match="not 'running': connect it first"):
        inorder.Options(executor=closed)


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_a_client_closed_after_the_options_were_made_fails_at_entry(
    anyio_backend: Any, local_client: Any
) -> None:
    client = distributed.Client(local_client.cluster, set_as_default=False)
    options = inorder.Options(executor=client)
    client.close()
    with pytest.raises(RuntimeError, match="not 'running'"):
        async with OrderedPipeline(options):
            pass
    assert local_client.status == "running"


def test_inorder_map_from_redis_runs_on_the_cluster(
    command_line_cluster: str, redis_url: str
) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    lines = [f"line {i}" for i in range(500)]
    client.delete("dask-in", "dask-out")
    for line in lines:
        client.xadd("dask-in", {"data": line})
    done = _inorder(
        "map", "--dask", _scheduler_address(command_line_cluster),
        "tests.dask_functions:worker_name",
        f"{redis_url}?stream=dask-in&group=g", "--output", f"{redis_url}?stream=dask-out",
        stdin="",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ran_on = [f[b"data"].decode() for _, f in client.xrange("dask-out")]
    assert len(ran_on) == len(lines)
    assert set(ran_on) <= {"w1", "w2"}  # the cluster's workers, not this machine's pool
