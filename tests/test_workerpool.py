"""inorder.WorkerPool: one set of worker processes that many pipelines use at once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

import inorder
from inorder import OrderedPipeline, TaskTimeoutError, WorkerCrashedError

from . import workloads
from .helpers import alive, wait_until, worker_processes

pytestmark = pytest.mark.anyio


async def test_pipelines_share_the_pools_workers_and_keep_their_own_order(
    anyio_backend: Any,
) -> None:
    before = worker_processes()
    results: dict[int, list[tuple[int, int]]] = {}
    async with inorder.WorkerPool(workers=2) as pool:
        pool_workers = worker_processes() - before
        assert len(pool_workers) == 2

        async def client(n: int) -> None:
            async with OrderedPipeline(executor=pool, window=8) as pipe:
                assert pipe.options.workers == 2  # the pool's size, not the CPUs
                delays = [0.002 * ((i * 7 + n) % 3) for i in range(30)]
                results[n] = [r async for r in pipe.map(workloads.ran_where, range(30), delays)]

        async with anyio.create_task_group() as tg:
            for n in range(5):
                tg.start_soon(client, n)
        assert worker_processes() - before == pool_workers  # no pipeline started its own
    for n in range(5):
        assert [x for x, _ in results[n]] == list(range(30))
        assert {pid for _, pid in results[n]} <= pool_workers
    await wait_until(lambda: not alive(pool_workers))  # gone with the pool's block


async def test_a_crash_in_one_pipeline_fails_its_item_and_the_other_goes_on(
    anyio_backend: Any,
) -> None:
    async with inorder.WorkerPool(workers=2) as pool:

        async def crashing() -> list[Any]:
            kinds = ["ok"] * 20
            kinds[7] = "os_exit"
            async with OrderedPipeline(executor=pool, on_error="return") as pipe:
                return [r async for r in pipe.map(workloads.fault, range(20), kinds)]

        async def steady() -> list[Any]:
            async with OrderedPipeline(executor=pool) as pipe:
                return [
                    r async for r in pipe.map(workloads.sleep_then_return, range(40), [0.002] * 40)
                ]

        outcomes: dict[str, list[Any]] = {}

        async def run(name: str, fn: Any) -> None:
            outcomes[name] = await fn()

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "crashing", crashing)
            tg.start_soon(run, "steady", steady)
        assert pool.restarts >= 1
        # The pool serves new pipelines after that.
        async with OrderedPipeline(executor=pool) as pipe:
            assert [r async for r in pipe.map(workloads.square, range(5))] == [0, 1, 4, 9, 16]
    crashed = outcomes["crashing"]
    assert isinstance(crashed[7], WorkerCrashedError)
    assert crashed[:7] + crashed[8:] == [i for i in range(20) if i != 7]
    assert outcomes["steady"] == list(range(40))


async def test_leaving_a_pipeline_early_leaves_the_pool_running(anyio_backend: Any) -> None:
    async with inorder.WorkerPool(workers=2) as pool:
        async with OrderedPipeline(executor=pool) as pipe:
            async for result in pipe.map(workloads.sleep_then_return, range(100), [0.01] * 100):
                if result == 3:
                    break
        async with OrderedPipeline(executor=pool) as pipe:
            assert [r async for r in pipe.map(workloads.square, range(4))] == [0, 1, 4, 9]


async def test_the_pools_timeout_stops_an_item_of_any_pipeline(anyio_backend: Any) -> None:
    with anyio.fail_after(30):  # the hanging item sleeps 600 s: only the timeout ends it
        await _run_past_the_timeout()


async def _run_past_the_timeout() -> None:
    async with (
        inorder.WorkerPool(workers=1, timeout=0.5) as pool,
        OrderedPipeline(executor=pool, on_error="return") as pipe,
    ):
        outcomes = [o async for o in pipe.map(workloads.fault, range(3), ["ok", "hang", "ok"])]
    assert outcomes[0] == 0
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], TaskTimeoutError)
    assert pool.timeouts == 1


async def test_the_pools_initializer_runs_in_its_workers(anyio_backend: Any) -> None:
    async with (
        inorder.WorkerPool(workers=1, initializer=workloads.remember, initargs=("set",)) as pool,
        OrderedPipeline(executor=pool) as pipe,
    ):
        assert [r async for r in pipe.map(workloads.initialized, range(2))] == ["set", "set"]


@pytest.mark.parametrize("option", ["timeout", "initializer", "max_tasks_per_child"])
async def test_options_of_the_pool_are_refused_on_a_pipeline(
    anyio_backend: Any, option: str
) -> None:
    value = {"timeout": 1, "initializer": print, "max_tasks_per_child": 5}[option]
    async with inorder.WorkerPool(workers=1) as pool:
        with pytest.raises(ValueError, match=rf"{option} belong\(s\) to the shared pool"):
            OrderedPipeline(executor=pool, **{option: value})


async def test_a_pool_outside_its_block_is_refused_with_what_to_do(anyio_backend: Any) -> None:
    pool = inorder.WorkerPool(workers=1)
    with pytest.raises(RuntimeError, match="was not entered: start its workers with"):
        async with OrderedPipeline(executor=pool):
            pass
    async with pool:
        pass
    with pytest.raises(RuntimeError, match="was closed: its workers are gone"):
        async with OrderedPipeline(executor=pool):
            pass
    with pytest.raises(RuntimeError, match="already entered"):
        async with pool:
            pass


async def test_the_pool_is_an_executor_the_event_loop_can_use(anyio_backend: Any) -> None:
    async with inorder.WorkerPool(workers=1) as pool:
        future = pool.executor.submit(os.getpid)
        assert await anyio.to_thread.run_sync(future.result) != os.getpid()


async def test_leaving_a_pipeline_cancels_its_batches_that_have_not_started(
    anyio_backend: Any, tmp_path: Path
) -> None:
    # A pool of one worker; the pipeline sends up to 40 one-item batches of 50 ms at
    # once (workers=20: 2 per "worker"), so they queue in the pool. Left after its first
    # result, the pipeline cancels those not started: the one running and the one sent
    # ahead to the worker may still run. Left queued, all 40 would run before the next
    # pipeline's item.
    async with inorder.WorkerPool(workers=1) as pool:
        async with OrderedPipeline(executor=pool, workers=20, batch=1) as pipe:
            async for _ in pipe.map(
                workloads.mark_then_sleep, range(40), [str(tmp_path)] * 40, [0.05] * 40
            ):
                break
        async with OrderedPipeline(executor=pool) as pipe:
            assert [r async for r in pipe.map(workloads.square, [3])] == [9]
    ran = sum(name.startswith("ran-") for name in os.listdir(tmp_path))
    assert 1 <= ran <= 4, ran


async def test_leaving_the_pool_kills_an_item_still_running(anyio_backend: Any) -> None:
    before = worker_processes()
    with anyio.fail_after(30):  # the item sleeps 600 s: only being killed ends it
        async with inorder.WorkerPool(workers=1) as pool:
            workers = worker_processes() - before
            async with OrderedPipeline(executor=pool) as pipe:
                await pipe.put(workloads.sleep_then_return, 0, 600)
                await wait_until(lambda: pipe.statistics().in_flight == 1)
            # The pipeline is gone; its item still runs in the pool's worker.
    await wait_until(lambda: not alive(workers))
