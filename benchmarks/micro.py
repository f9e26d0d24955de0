"""Costs measured alone: the producer's ``put()``, the consumer's step, a run's workers.

``put``: a window of ``--window`` slots is filled by ``put()`` calls that never wait (the
consumer does not run meanwhile) and only those calls are timed; the results are then
drained, untimed. ``--bound-method`` puts ``offset.add`` (a new bound method object per
call) instead of a function.

``consume``: ``--items`` results of a thread executor are left to arrive while nothing
iterates (the window holds them all), then one pass over them is timed: ``async for``,
``chunks()`` with a plain ``for`` over each list, and, for scale, an ``async for`` over
an async generator and a plain ``for`` over a generator (what ``Pool.imap``'s consumer
pays per item: it flattens chunks with a generator). Medians of ``--rounds``, in ns.

``workers``: what a run of ``pipe.map(inc, range(--runs-of)).chunks()`` on a warmed,
shared ``WorkerPool`` of 2 costs the worker processes and the parent: CPU time (all
threads, from ``/proc/PID/schedstat``) and minor page faults; and the run's wall time
against the CPU time of the parent's main thread (the event loop's and the consumer's),
whose difference is the time that thread did not run: waiting for results, or
preempted. Medians of ``--rounds`` runs (Linux only)::

    python -m benchmarks micro [put|consume|workers] [--rounds 9] [--window 16384]
                               [--items 500000] [--runs-of 200000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

import inorder

sys.path.insert(0, str(Path(__file__).parent))

from workloads import Offset, inc, warm_up_every_worker

OFFSET = Offset(1)


async def put_costs(executors: list[str], rounds: int, window: int, bound_method: bool) -> None:
    print(f"put(): window {window}, median of {rounds} rounds")
    for executor in executors:
        async with inorder.OrderedPipeline(workers=2, window=window, executor=executor) as pipe:
            for i in range(64):  # workers up, the function cached
                await pipe.put(inc, i)
            for _ in range(64):
                await anext(pipe)
            costs = []
            for _ in range(rounds):
                started = time.perf_counter()
                if bound_method:
                    for i in range(window):
                        await pipe.put(OFFSET.add, i)
                else:
                    for i in range(window):
                        await pipe.put(inc, i)
                costs.append((time.perf_counter() - started) / window)
                for _ in range(window):
                    await anext(pipe)
        print(f"  executor={executor}: {statistics.median(costs) * 1e9:.0f} ns per put()")


async def ready_pipeline(items: int) -> inorder.OrderedPipeline:
    pipe = inorder.OrderedPipeline(workers=2, window=items, executor="thread")
    await pipe.__aenter__()
    for i in range(items):
        await pipe.put(inc, i)
    pipe.close()
    # Wait, without iterating, until every result has arrived (nothing to wake us).
    while (stats := pipe.statistics()).queued or stats.in_flight:  # noqa: ASYNC110
        await anyio.sleep(0.01)
    return pipe


async def by_async_for(pipe: inorder.OrderedPipeline, items: int) -> float:
    started = time.perf_counter()
    total = 0
    async for result in pipe:
        total += result
    assert total == items * (items + 1) // 2
    return time.perf_counter() - started


async def by_chunks(pipe: inorder.OrderedPipeline, items: int) -> float:
    started = time.perf_counter()
    total = 0
    async for results in pipe.chunks():
        for result in results:
            total += result
    assert total == items * (items + 1) // 2
    return time.perf_counter() - started


async def async_generator(values: list[int]) -> AsyncIterator[int]:
    for value in values:
        yield value


async def by_async_generator(values: list[int]) -> float:
    started = time.perf_counter()
    total = 0
    async for result in async_generator(values):
        total += result
    return time.perf_counter() - started


def by_generator(values: list[int]) -> float:
    flattened: Iterator[int] = (value for chunk in [values] for value in chunk)
    started = time.perf_counter()
    total = 0
    for result in flattened:
        total += result
    return time.perf_counter() - started


async def consume_costs(rounds: int, items: int) -> None:
    print(f"consumer: {items} ready results, median of {rounds} rounds")
    rows: dict[str, list[float]] = {
        "async for over an OrderedPipeline": [],
        "chunks() and a plain for": [],
        "async for over an async generator": [],
        "plain for over a generator": [],
    }
    values = list(range(1, items + 1))
    for _ in range(rounds):
        for name, way in (
            ("async for over an OrderedPipeline", by_async_for),
            ("chunks() and a plain for", by_chunks),
        ):
            pipe = await ready_pipeline(items)
            try:
                rows[name].append(await way(pipe, items))
            finally:
                await pipe.aclose()
        rows["async for over an async generator"].append(await by_async_generator(values))
        rows["plain for over a generator"].append(by_generator(values))
    for name, seconds in rows.items():
        print(f"  {name:36} {statistics.median(seconds) / items * 1e9:5.0f} ns per item")


def _cpu_ms_and_faults(pid: int) -> tuple[float, int]:
    """A process's CPU time so far (all its threads, ms) and its minor page faults."""
    cpu_ns = 0
    for thread in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{thread}/schedstat") as f:
            cpu_ns += int(f.read().split()[0])
    with open(f"/proc/{pid}/stat") as f:
        faults = int(f.read().rsplit(")", 1)[1].split()[7])
    return cpu_ns / 1e6, faults


async def worker_costs(rounds: int, items: int) -> None:
    import psutil

    print(f"pipe.map(inc, range({items})).chunks() on a shared pool, median of {rounds} runs")
    rows: dict[str, list[float]] = {
        "workers: CPU ms": [],
        "workers: minor page faults": [],
        "parent: CPU ms": [],
        "parent: minor page faults": [],
        "run: wall ms": [],
        "parent's main thread: CPU ms": [],
        "parent's main thread: not running ms": [],
    }
    async with inorder.WorkerPool(2) as pool:
        async with inorder.OrderedPipeline(executor=pool) as pipe:
            await warm_up_every_worker(pipe, 2)
        me = os.getpid()
        for _ in range(rounds):
            # The pool's processes: its fork server and the workers it started.
            pids = [p.pid for p in psutil.Process(me).children(recursive=True)]
            before = {pid: _cpu_ms_and_faults(pid) for pid in [me, *pids]}
            wall_started, thread_started = time.perf_counter(), time.thread_time()
            async with inorder.OrderedPipeline(executor=pool) as pipe:
                async for results in pipe.map(inc, range(items)).chunks():
                    for _ in results:
                        pass
            wall = (time.perf_counter() - wall_started) * 1e3
            thread = (time.thread_time() - thread_started) * 1e3
            rows["run: wall ms"].append(wall)
            rows["parent's main thread: CPU ms"].append(thread)
            rows["parent's main thread: not running ms"].append(wall - thread)
            after = {pid: _cpu_ms_and_faults(pid) for pid in before}
            spent = {
                pid: (after[pid][0] - cpu, after[pid][1] - faults)
                for pid, (cpu, faults) in before.items()
            }
            rows["parent: CPU ms"].append(spent[me][0])
            rows["parent: minor page faults"].append(spent[me][1])
            rows["workers: CPU ms"].append(sum(spent[pid][0] for pid in pids))
            rows["workers: minor page faults"].append(sum(spent[pid][1] for pid in pids))
    for name, values in rows.items():
        print(f"  {name:38} {statistics.median(values):8.1f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", help="put, consume, workers (default: all)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--window", type=int, default=16384)
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--runs-of", type=int, default=200_000, help="items (workers)")
    parser.add_argument("--executors", default="process,thread")
    parser.add_argument("--bound-method", action="store_true")
    args = parser.parse_args(argv)
    what = args.what or ["put", "consume", "workers"]
    if set(what) - {"put", "consume", "workers"}:
        parser.error(f"choose from put, consume, workers; got {' '.join(what)}")
    print(f"Python {sys.version.split()[0]}")
    if "put" in what:
        anyio.run(
            put_costs, args.executors.split(","), args.rounds, args.window, args.bound_method
        )
    if "consume" in what:
        anyio.run(consume_costs, args.rounds, args.items)
    if "workers" in what:
        anyio.run(worker_costs, args.rounds, args.runs_of)


if __name__ == "__main__":
    main()
