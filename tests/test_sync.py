"""``inorder.imap``, ``inorder.SyncPipeline`` and ``with inorder.WorkerPool()``: the
pipeline from code without an event loop, against the builtin ``map`` and the async
API's promises (order, error policies, crashes, timeouts, backpressure, nothing left
running however the program ends)."""

from __future__ import annotations

import asyncio
import concurrent.futures
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
from inorder import PipelineClosedError, TaskTimeoutError, WorkerCrashedError

from . import workloads
from .helpers import alive, worker_processes

ROOT = Path(__file__).parent.parent


def imap_threads() -> list[str]:
    """The event loops' threads running now (a pipeline's, a pool's)."""
    names = ("inorder-pipeline", "inorder-pool-loop")
    return [t.name for t in threading.enumerate() if t.name in names]


def test_results_are_the_builtin_maps_in_order() -> None:
    left, right = range(3000), [i % 7 for i in range(2000)]
    assert list(inorder.imap(workloads.add, left, right, workers=2)) == list(
        map(workloads.add, left, right)
    )
    assert imap_threads() == []  # the results ran out: its thread ended


def test_a_for_loop_over_an_imap_nobody_else_holds_gets_every_result() -> None:
    seen = []
    for result in inorder.imap(workloads.square, range(3000), workers=2):
        seen.append(result)
    assert seen == [i * i for i in range(3000)]
    with inorder.WorkerPool(workers=2) as pool:
        assert sum(1 for _ in inorder.imap(workloads.square, range(500), executor=pool)) == 500
    assert imap_threads() == []


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


def test_a_loop_ended_by_an_error_leaves_the_next_loop_the_items_after_it() -> None:
    kinds = ["ok", "raise", "ok", "ok"]
    results = inorder.imap(workloads.fault, range(4), kinds, workers=1)
    seen: list[Any] = []
    with pytest.raises(ValueError, match="item 1 raised"):
        seen.extend(results)  # a loop over the results, ended by the error
    seen.extend(results)
    assert seen == [0, 2, 3]
    assert list(results) == []


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
        assert imap_threads() == ["inorder-pipeline"]
    assert alive(workers) == set()
    assert imap_threads() == []


def test_an_iterator_dropped_without_closing_stops_what_it_started() -> None:
    results = inorder.imap(workloads.sleep_then_pid, range(1000), workers=2)
    pids = {next(results), next(results)}
    gc.disable()  # its last reference going is enough: no cycle waits for a collection
    try:
        del results
        assert imap_threads() == []
    finally:
        gc.enable()
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


# -- SyncPipeline -------------------------------------------------------------------------


def test_a_sync_pipeline_takes_puts_and_markers_and_yields_them_in_order() -> None:
    with inorder.SyncPipeline(workers=2, window=32) as pipe:
        seqs = [pipe.put(workloads.sleep_then_return, i, (20 - i) * 0.001) for i in range(20)]
        seqs.append(pipe.put("done"))
        pipe.close()
        assert seqs == list(range(21))
        assert list(pipe) == [*range(20), "done"]
        assert list(pipe) == []  # iterating again after the end is safe
        assert next(pipe, "end") == "end"
        counts = pipe.statistics()
        assert (counts.accepted, counts.yielded, counts.in_flight) == (21, 21, 0)
        assert imap_threads() == ["inorder-pipeline"]
    assert imap_threads() == []
    assert pipe.statistics().yielded == 21  # readable after the block
    assert list(pipe) == []  # every result was taken: nothing more, and no error
    pipe.close()  # a no-op once the block has ended


def test_a_sync_pipeline_maps_and_goes_on_after_an_error() -> None:
    kinds = ["ok", "raise", "ok"]
    with inorder.SyncPipeline(workers=2) as pipe:
        results = pipe.map(workloads.fault, range(3), kinds)
        assert results is pipe
        seen = [next(pipe)]
        with pytest.raises(ValueError, match="item 1 raised"):
            next(pipe)
        seen.extend(pipe)  # a new loop goes on with the item after the error
    assert seen == [0, 2]


def test_sync_chunks_hand_over_lists_of_ready_results_in_order() -> None:
    with inorder.SyncPipeline(workers=2) as pipe:
        pipe.map(workloads.square, range(500))
        lists = list(pipe.chunks(max_items=64))
        assert list(pipe.chunks()) == []  # after the end, nothing more
        with pytest.raises(ValueError, match="max_items"):
            pipe.chunks(max_items=0)
    assert [x for chunk in lists for x in chunk] == [i * i for i in range(500)]
    assert all(1 <= len(chunk) <= 64 for chunk in lists)


def test_puts_from_several_threads_keep_each_threads_order() -> None:
    threads, each = 4, 150
    returned: dict[int, list[int]] = {}
    with inorder.SyncPipeline(workers=2, window=8) as pipe:
        go = threading.Barrier(threads)

        def produce(name: int) -> None:
            go.wait()
            returned[name] = [pipe.put(workloads.identity, (name, i)) for i in range(each)]

        producers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
        for producer in producers:
            producer.start()
        results = [next(pipe) for _ in range(threads * each)]  # the window holds them back
        for producer in producers:
            producer.join()
        assert pipe.statistics().accepted == threads * each
    for name, seqs in returned.items():
        assert [results[seq] for seq in seqs] == [(name, i) for i in range(each)]
    interleaved = [name for name, _ in results]
    assert interleaved != sorted(interleaved)  # the threads' puts did run side by side


def test_put_nowait_on_a_full_window_raises_at_once() -> None:
    with inorder.SyncPipeline(workers=1, window=2) as pipe:
        pipe.put_nowait(workloads.square, 3)
        pipe.put_nowait("marker")
        with pytest.raises(inorder.WindowFullError, match="window is full"):
            pipe.put_nowait(workloads.square, 4)
        assert next(pipe) == 9
        assert pipe.put_nowait(workloads.square, 5) == 2
        pipe.close()
        assert list(pipe) == ["marker", 25]


def test_a_put_waiting_for_room_is_refused_when_the_block_ends() -> None:
    outcome: list[BaseException] = []
    with inorder.SyncPipeline(workers=1, window=1) as pipe:
        pipe.put(workloads.square, 1)

        def one_more() -> None:
            try:
                pipe.put(workloads.square, 2)
            except Exception as error:  # noqa: BLE001 (what the thread saw, checked below)
                outcome.append(error)

        producer = threading.Thread(target=one_more)
        producer.start()
        while pipe.statistics().producers_waiting == 0:
            producer.join(0.005)
    producer.join(10)
    assert not producer.is_alive()
    assert [type(e) for e in outcome] == [inorder.PipelineClosedError]


def test_a_sync_pipeline_is_used_inside_its_with_block() -> None:
    pipe = inorder.SyncPipeline(workers=1)
    with pytest.raises(RuntimeError, match=r"not entered: use 'with inorder\.SyncPipeline"):
        pipe.put(workloads.square, 1)
    with pytest.raises(RuntimeError, match=r"not entered: use 'with inorder\.SyncPipeline"):
        pipe.chunks()
    with pipe:
        pipe.put(workloads.square, 1)
    with pytest.raises(inorder.PipelineClosedError, match="'with' block has ended"):
        pipe.put(workloads.square, 2)
    with pytest.raises(inorder.PipelineClosedError, match="'with' block has ended"):
        pipe.chunks()
    with pytest.raises(RuntimeError, match="already entered"):
        pipe.__enter__()
    with pytest.raises(ValueError, match="window"):
        inorder.SyncPipeline(window=0)  # options are checked at construction


def test_leaving_a_sync_pipeline_early_stops_its_workers() -> None:
    before = worker_processes()
    workers: set[int] = set()

    def fail_mid_stream() -> None:
        with inorder.SyncPipeline(workers=2) as pipe:
            for _ in range(50):
                pipe.put(workloads.sleep_then_pid)
            pids = {next(pipe), next(pipe)}
            workers.update(worker_processes() - before)
            assert pids <= workers
            raise KeyError("the program fails mid-stream")

    with pytest.raises(KeyError):
        fail_mid_stream()
    assert workers
    assert alive(workers) == set()
    assert imap_threads() == []


async def _sync_pipeline_inside_a_loop() -> None:
    pipe = inorder.SyncPipeline(workers=1)
    with pytest.raises(RuntimeError, match=r"inorder\.OrderedPipeline"):
        pipe.__enter__()


def test_a_sync_pipeline_inside_a_running_event_loop_points_to_the_async_api() -> None:
    asyncio.run(_sync_pipeline_inside_a_loop())
    assert imap_threads() == []


CTRL_C_IN_PUT_SCRIPT = """
import inorder
from tests import workloads

with inorder.SyncPipeline(workers=2, window=4) as pipe:
    for i in range(4):
        pipe.put(workloads.sleep_then_return, i, 60)
    print("full", flush=True)
    pipe.put(workloads.square, 5)  # waits for room that never comes
"""


@pytest.mark.parametrize("script", [CTRL_C_SCRIPT, CTRL_C_IN_PUT_SCRIPT], ids=["next", "put"])
def test_ctrl_c_ends_the_program_and_everything_it_started(script: str) -> None:
    program = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert program.stdout is not None
        assert program.stdout.readline() in ("iterating\n", "full\n")
        started = psutil.Process(program.pid).children(recursive=True)
        assert len(started) >= 2  # the workers (and the fork server)
        program.send_signal(signal.SIGINT)
        _, err = program.communicate(timeout=30)
    finally:
        program.kill()
        program.wait()
    assert program.returncode != 0
    assert "KeyboardInterrupt" in err
    # The workers and the fork server end as they see their parent gone: wait for that.
    _, left = psutil.wait_procs(started, timeout=10)
    assert left == []


# -- a WorkerPool entered with `with` ------------------------------------------------------


def test_imaps_and_sync_pipelines_on_a_pool_share_its_warm_workers() -> None:
    with inorder.WorkerPool(workers=2) as pool:
        first = set(inorder.imap(workloads.sleep_then_pid, range(20), executor=pool))
        second = set(inorder.imap(workloads.sleep_then_pid, range(20), executor=pool))
        with inorder.SyncPipeline(executor=pool) as pipe:
            third = set(pipe.map(workloads.sleep_then_pid, range(20)))
            assert imap_threads() == ["inorder-pool-loop"]  # it runs on the pool's loop
        assert first == second == third  # the same two processes, started once
        assert len(first) == 2
    assert alive(first) == set()
    assert imap_threads() == []


ABANDONED_ON_A_POOL_SCRIPT = """
import gc
import inorder
from tests import workloads

gc.disable()  # objects in a reference cycle stay until a collection: none comes
with inorder.WorkerPool(workers=2) as pool:
    for result in inorder.imap(workloads.sleep_then_pid, range(1000), executor=pool):
        break  # the iterator goes with the loop, not closed
    pipe = inorder.SyncPipeline(executor=pool).__enter__()
    pipe.map(workloads.sleep_then_pid, range(1000))
    next(pipe)  # an iterated SyncPipeline is in a reference cycle
    del pipe
print("left the pool", flush=True)
"""


def test_leaving_a_pool_ends_the_pipelines_its_programs_abandoned_on_it() -> None:
    program = subprocess.run(
        [sys.executable, "-c", ABANDONED_ON_A_POOL_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,  # it hangs for good if leaving the pool waits for them
    )
    assert (program.returncode, program.stdout) == (0, "left the pool\n"), program.stderr


def test_an_imap_on_a_pool_dropped_without_closing_stops_its_pipeline() -> None:
    from inorder._sync import pipelines_on  # what runs on the pool's loop

    with inorder.WorkerPool(workers=2) as pool:
        results = inorder.imap(workloads.sleep_then_pid, range(1000), executor=pool)
        next(results)
        (running,) = pipelines_on(pool)
        gc.disable()  # its last reference going is enough: no cycle waits for a collection
        try:
            del results
            concurrent.futures.wait([running], timeout=30)
            assert running.done()  # stopped while the pool goes on
        finally:
            gc.enable()
        assert pipelines_on(pool) == []
        assert len(set(inorder.imap(workloads.sleep_then_pid, range(8), executor=pool))) >= 1


def test_a_sync_pipeline_used_after_its_pools_block_says_so() -> None:
    with inorder.WorkerPool(workers=1) as pool:
        pipe = inorder.SyncPipeline(executor=pool).__enter__()
        assert pipe.put(workloads.square, 3) == 0
    with pytest.raises(PipelineClosedError, match="WorkerPool this SyncPipeline runs on"):
        pipe.put(workloads.square, 4)
    pipe.__exit__(None, None, None)  # leaving its block afterwards is quiet
    assert imap_threads() == []


def test_a_pool_entered_with_async_with_is_refused_by_a_sync_pipeline() -> None:
    pipe = inorder.SyncPipeline(executor=inorder.WorkerPool(workers=1))
    with pytest.raises(RuntimeError, match="WorkerPool entered with 'with"):
        pipe.__enter__()
    assert imap_threads() == []
