"""inorder against its peers on the same workloads, side by side in one run.

Every (workload, peer) pair runs in a fresh subprocess, so memory figures are not
polluted by earlier runs; the peers take turns, one run each, run after run. Pools are
created and warmed before the clock starts (except ``inorder.map (cold)`` and
``inorder.imap (cold)``, which include start-up). Every peer's results go through the
same Python consumer loop, which checks each value and its order. The parent's RSS is
sampled (every 2 ms, by a thread) only in the workloads that report it: elsewhere the
sampler would only take CPU from the peers. The garbage collector runs once just before
the clock starts. Medians of ``--runs`` (at least 9 for the
latency workload, whose runs give one sample each).

    python -m benchmarks suite                      # everything, writes docs/performance.md
    python -m benchmarks suite --workloads trivial,cpu --peers "inorder*,Pool.imap*"
    # and, added to the saved results, the 20M-item stream for inorder and Pool.imap:
    python -m benchmarks suite --merge --workloads stream_20m --peers "inorder pipe.map,Pool*1024"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import contextlib
import fnmatch
import gc
import json
import multiprocessing
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import workloads
from workloads import (
    WORKLOADS,
    Workload,
    call_async,
    fresh_process_env,
    inc,
    warm_up_every_worker,
    warm_up_every_worker_sync,
)

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results.json"
WORKERS = 2
CHUNKSIZES = (1, 16, 128, 1024)
Mark = Callable[[], None]
Consume = Callable[[Any], None]
Runner = Callable[[Workload, Consume, Mark], None]


def _forkserver() -> Any:
    return multiprocessing.get_context("forkserver")


# -- peers -------------------------------------------------------------------------------


def pool_imap(chunksize: int) -> Runner:
    def run(w: Workload, consume: Consume, mark: Mark) -> None:
        with _forkserver().Pool(WORKERS) as pool:
            list(pool.imap(inc, range(64)))
            mark()
            for result in pool.imap(w.fn, w.items(w.count), chunksize=chunksize):
                consume(result)

    return run


def executor_map(chunksize: int) -> Runner:
    def run(w: Workload, consume: Consume, mark: Mark) -> None:
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=_forkserver()) as ex:
            list(ex.map(inc, range(64)))
            mark()
            for result in ex.map(w.fn, w.items(w.count), chunksize=chunksize):
                consume(result)

    return run


def no_ipc_ceiling(w: Workload, consume: Consume, mark: Mark) -> None:
    workloads.no_ipc_ceiling(w, WORKERS, consume, mark)


CEILING = "no IPC: equal shares, one call per worker (ceiling)"


def in_consumer_async_for(w: Workload, consume: Consume, mark: Mark) -> None:
    """Not a peer: no worker at all. Each item's function runs in an async generator
    that the consumer's ``async for`` drives on asyncio, as inorder hands out its
    results: the most any pipeline consumed with ``async for`` could reach here."""

    async def results() -> Any:
        fn = w.fn
        for item in w.items(w.count):
            yield fn(item)

    async def main() -> None:
        mark()
        async for result in results():
            consume(result)

    asyncio.run(main())


def in_consumer_for(w: Workload, consume: Consume, mark: Mark) -> None:
    """Not a peer: each item's function runs in the consumer's plain ``for`` loop, as
    the generator ``Pool.imap`` returns is consumed: the most any such peer could reach."""
    mark()
    fn = w.fn
    for item in w.items(w.count):
        consume(fn(item))


ASYNC_FOR_CEILING = "no workers: fn in the consumer's async for (ceiling)"
FOR_CEILING = "no workers: fn in the consumer's for (ceiling)"
# Not peers, and each only where it bounds the peers: the equal shares for CPU-bound
# items, the consumer's own loop for items that cost less than their trip.
CEILINGS: dict[str, Callable[[Workload], bool]] = {
    CEILING: lambda w: bool(w.serial_seconds),
    ASYNC_FOR_CEILING: lambda w: w.parent_bound,
    FOR_CEILING: lambda w: w.parent_bound,
}


def joblib_generator(w: Workload, consume: Consume, mark: Mark) -> None:
    from joblib import Parallel, delayed

    with Parallel(n_jobs=WORKERS, return_as="generator") as parallel:
        list(parallel(delayed(inc)(i) for i in range(64)))
        mark()
        for result in parallel(delayed(w.fn)(x) for x in w.items(w.count)):
            consume(result)


def mpire_imap(w: Workload, consume: Consume, mark: Mark) -> None:
    from mpire import WorkerPool

    with WorkerPool(n_jobs=WORKERS, start_method="forkserver") as pool:
        list(pool.imap(inc, range(64)))
        mark()
        for result in pool.imap(w.fn, w.items(w.count)):
            consume(result)


def pebble_map(w: Workload, consume: Consume, mark: Mark) -> None:
    import pebble

    with pebble.ProcessPool(max_workers=WORKERS, context=_forkserver()) as pool:
        list(pool.map(inc, range(64)).result())
        mark()
        for result in pool.map(w.fn, w.items(w.count)).result():
            consume(result)


def aiomultiprocess_map(w: Workload, consume: Consume, mark: Mark) -> None:
    import aiomultiprocess

    async def main() -> None:
        async with aiomultiprocess.Pool(processes=WORKERS) as pool:
            await pool.starmap(call_async, [(inc, i) for i in range(4)])
            mark()
            async for result in pool.starmap(call_async, ((w.fn, x) for x in w.items(w.count))):
                consume(result)

    asyncio.run(main())


def naive_run_in_executor(w: Workload, consume: Consume, mark: Mark) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        with concurrent.futures.ProcessPoolExecutor(WORKERS, mp_context=_forkserver()) as ex:
            await asyncio.gather(*(loop.run_in_executor(ex, inc, i) for i in range(8)))
            mark()
            window: collections.deque[asyncio.Future[Any]] = collections.deque()
            for item in w.items(w.count):
                window.append(loop.run_in_executor(ex, w.fn, item))
                if len(window) >= 64:
                    consume(await window.popleft())
            while window:
                consume(await window.popleft())

    asyncio.run(main())


def _anyio_run(main: Callable[[], Any], loop: str) -> None:
    import anyio

    options = {"use_uvloop": True} if loop == "uvloop" else {}
    anyio.run(main, backend="asyncio", backend_options=options)


def inorder_pipe_map(loop: str = "asyncio") -> Runner:
    def run(w: Workload, consume: Consume, mark: Mark) -> None:
        import inorder

        async def main() -> None:
            async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
                await warm_up_every_worker(pipe, WORKERS)
                mark()
                async for result in pipe.map(w.fn, w.items(w.count)):
                    consume(result)

        _anyio_run(main, loop)

    return run


def inorder_pipe_map_chunks(loop: str = "asyncio") -> Runner:
    """pipe.map, its results taken a list at a time (``pipe.chunks()``)."""

    def run(w: Workload, consume: Consume, mark: Mark) -> None:
        import inorder

        async def main() -> None:
            async with inorder.OrderedPipeline(workers=WORKERS) as pipe:
                await warm_up_every_worker(pipe, WORKERS)
                mark()
                async for results in pipe.map(w.fn, w.items(w.count)).chunks():
                    for result in results:
                        consume(result)

        _anyio_run(main, loop)

    return run


def inorder_put(loop: str = "asyncio") -> Runner:
    def run(w: Workload, consume: Consume, mark: Mark) -> None:
        import anyio

        import inorder

        async def main() -> None:
            async with inorder.OrderedPipeline(workers=WORKERS) as pipe:

                async def produce() -> None:
                    for item in w.items(w.count):
                        await pipe.put(w.fn, item)
                    pipe.close()

                await warm_up_every_worker(pipe, WORKERS)
                mark()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(produce)
                    async for result in pipe:
                        consume(result)

        _anyio_run(main, loop)

    return run


def inorder_map_cold(w: Workload, consume: Consume, mark: Mark) -> None:
    import inorder

    async def main() -> None:
        mark()
        async with inorder.map(w.fn, w.items(w.count), workers=WORKERS) as results:
            async for result in results:
                consume(result)

    _anyio_run(main, "asyncio")


def inorder_sync_pipeline_map(w: Workload, consume: Consume, mark: Mark) -> None:
    """``SyncPipeline.map`` from a plain ``for``: its workers warmed before the clock."""
    import inorder

    with inorder.SyncPipeline(workers=WORKERS) as pipe:
        warm_up_every_worker_sync(pipe, WORKERS)
        mark()
        for result in pipe.map(w.fn, w.items(w.count)):
            consume(result)


def inorder_imap_on_a_pool(w: Workload, consume: Consume, mark: Mark) -> None:
    """``inorder.imap`` from a plain ``for``, on a ``WorkerPool`` entered with ``with``
    (workers started and warmed before the clock, as the pools of the peers are)."""
    import inorder

    with inorder.WorkerPool(WORKERS) as pool:
        with inorder.SyncPipeline(executor=pool) as pipe:
            warm_up_every_worker_sync(pipe, WORKERS)
        mark()
        for result in inorder.imap(w.fn, w.items(w.count), executor=pool):
            consume(result)


def inorder_imap_cold(w: Workload, consume: Consume, mark: Mark) -> None:
    import inorder

    mark()
    with inorder.imap(w.fn, w.items(w.count), workers=WORKERS) as results:
        for result in results:
            consume(result)


PEERS: dict[str, Runner] = {
    "inorder pipe.map": inorder_pipe_map(),
    "inorder pipe.map, chunks()": inorder_pipe_map_chunks(),
    "inorder put()": inorder_put(),
    "inorder.map (cold)": inorder_map_cold,
    "inorder SyncPipeline.map": inorder_sync_pipeline_map,
    "inorder.imap on a WorkerPool": inorder_imap_on_a_pool,
    "inorder.imap (cold)": inorder_imap_cold,
    "inorder pipe.map, uvloop": inorder_pipe_map("uvloop"),
    "inorder put(), uvloop": inorder_put("uvloop"),
    **{f"Pool.imap chunksize={c}": pool_imap(c) for c in CHUNKSIZES},
    **{f"ProcessPoolExecutor.map chunksize={c}": executor_map(c) for c in CHUNKSIZES},
    "run_in_executor per item, 64 in flight": naive_run_in_executor,
    "joblib generator": joblib_generator,
    "mpire imap": mpire_imap,
    "pebble map": pebble_map,
    "aiomultiprocess map": aiomultiprocess_map,
    CEILING: no_ipc_ceiling,
    ASYNC_FOR_CEILING: in_consumer_async_for,
    FOR_CEILING: in_consumer_for,
}


# -- one measurement, in a subprocess ----------------------------------------------------


def measure(workload: str, peer: str) -> dict[str, Any]:
    import psutil

    w = WORKLOADS[workload]
    me = psutil.Process()
    state: dict[str, Any] = {"index": 0, "first": None, "ok": True, "peak": 0}
    started = threading.Event()
    finished = threading.Event()

    def sample() -> None:
        started.wait()
        while not finished.wait(0.002):
            state["peak"] = max(state["peak"], me.memory_info().rss)

    def mark() -> None:
        # Garbage left by the set-up (imports, the warm-up) is collected now, so that a
        # collection it would trigger does not land in a peer's first milliseconds.
        gc.collect()
        state["baseline"] = me.memory_info().rss
        state["peak"] = state["baseline"]
        state["t0"] = time.perf_counter()
        started.set()

    def consume(result: Any) -> None:
        index = state["index"]
        if state["first"] is None:
            state["first"] = time.perf_counter() - state["t0"]
        if not w.check(index, result):
            state["ok"] = False
        state["index"] = index + 1
        if w.consumer_delay:
            time.sleep(w.consumer_delay)

    sampler = threading.Thread(target=sample, daemon=True)
    if w.measures_memory:
        sampler.start()
    PEERS[peer](w, consume, mark)
    elapsed = time.perf_counter() - state["t0"]
    finished.set()
    if w.measures_memory:
        sampler.join()
    return {
        "elapsed": elapsed,
        "first": state["first"],
        "ok": state["ok"] and state["index"] == w.count,
        "rss_growth_mib": (state["peak"] - state["baseline"]) / 2**20
        if w.measures_memory
        else None,
    }


def run_isolated(workload: str, peer: str, timeout: float) -> dict[str, Any]:
    """One measurement in a fresh interpreter; ``{"error": ...}`` if it produced none.

    The interpreter runs in a session of its own, and every process left in it is killed
    when it ends or overruns: a peer stopped mid-run leaves its pool's workers behind
    (seen: aiomultiprocess, and forkserver pools on a timeout), and orphans that keep
    polling would take CPU from every later measurement.
    """
    with subprocess.Popen(
        [sys.executable, __file__, "--one", workload, peer],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=fresh_process_env(),
        start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stdout = None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if stdout is None:
            process.communicate()  # its pipes close once the whole session is gone
            return {"error": f"did not finish in {timeout:.0f} s"}
    if process.returncode != 0:
        errors = [line.strip() for line in stderr.splitlines() if "Error" in line]
        return {"error": "failed: " + (errors[-1] if errors else f"exit {process.returncode}")}
    return dict(json.loads(stdout.strip().splitlines()[-1]))


# -- orchestration and report ------------------------------------------------------------


def summarise(workload: Workload, runs: list[dict[str, Any]]) -> dict[str, Any]:
    elapsed = statistics.median(r["elapsed"] for r in runs)
    summary: dict[str, Any] = {
        "elapsed": elapsed,
        "items_per_s": workload.count / elapsed,
        "first_ms": statistics.median(r["first"] for r in runs) * 1e3,
        "rss_mib": statistics.median(r["rss_growth_mib"] for r in runs)
        if workload.measures_memory
        else None,
        "ok": all(r["ok"] for r in runs),
    }
    if workload.serial_seconds:
        summary["efficiency"] = efficiency(workload, elapsed)
    if workload.name.startswith("payload"):
        summary["mib_per_s"] = summary["items_per_s"]  # its items are 1 MiB each
    values = sorted(figure(workload, r["elapsed"], r["first"]) for r in runs)
    summary["range"] = [values[0], values[-1]]
    return summary


def efficiency(workload: Workload, elapsed: float) -> float:
    """Serial CPU time over the wall time of all workers."""
    return workload.serial_seconds / (elapsed * WORKERS)


def figure(workload: Workload, elapsed: float, first: float) -> float:
    """The number a table shows for one run: ms to the first result (latency),
    efficiency (cpu, skew), or items (MiB for payloads, whose items are 1 MiB) per second."""
    if workload.name == "latency":
        return first * 1e3
    if workload.serial_seconds:
        return efficiency(workload, elapsed)
    return workload.count / elapsed


def spread(workload: Workload, s: dict[str, Any] | None) -> str:
    """The lowest and highest run of a row, in the unit of its result."""
    if s is None or "range" not in s or s.get("runs", 1) < 2:
        return ""
    low, high = s["range"]
    if workload.name == "latency":
        return f"{low:.1f}-{high:.1f} ms"
    if workload.serial_seconds:
        return f"{low:.2f}-{high:.2f}"
    unit = "MiB/s" if workload.name.startswith("payload") else "items/s"
    return f"{low:,.0f}-{high:,.0f} {unit}"


def headline(workload: Workload, s: dict[str, Any] | None) -> str:
    if s is None:
        return "not run"
    if "error" in s:
        return str(s["error"])
    check = "" if s["ok"] else " (WRONG RESULTS)"
    if workload.serial_seconds:
        return f"efficiency {s['efficiency']:.2f}{check}"
    if workload.name.startswith("payload"):
        return f"{s['mib_per_s']:,.0f} MiB/s{check}"
    if workload.name == "latency":
        return f"{s['first_ms']:.1f} ms to first{check}"
    if workload.measures_memory:
        return f"{s['items_per_s']:,.0f} items/s, +{s['rss_mib']:,.0f} MiB RSS{check}"
    return f"{s['items_per_s']:,.0f} items/s{check}"


def score(workload: Workload, s: dict[str, Any] | None) -> float:
    """Higher is better, for picking a peer's best chunksize and computing ratios."""
    if s is None or "error" in s:
        return 0.0
    if workload.name == "latency":
        return 1.0 / s["first_ms"]
    return 1.0 / s["elapsed"]


def machine() -> str:
    import psutil

    freq = psutil.cpu_freq()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs"
        + (f" at up to {freq.max:.0f} MHz" if freq and freq.max else "")
        + f", {psutil.virtual_memory().total / 2**30:.0f} GiB, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=2, metavar=("WORKLOAD", "PEER"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--workloads", default=",".join(n for n, w in WORKLOADS.items() if not w.only_when_named)
    )
    parser.add_argument("--peers", default="*", help="comma-separated glob patterns")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the saved results (benchmarks/results.json) instead of starting afresh",
    )
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return

    patterns = args.peers.split(",")
    peers = [p for p in PEERS if any(fnmatch.fnmatch(p, pat) for pat in patterns)]
    saved = {"commands": [], "results": {}}
    if args.merge and RESULTS.exists():
        saved = json.loads(RESULTS.read_text())
    results: dict[str, dict[str, Any]] = saved["results"]
    for name in args.workloads.split(","):
        workload = WORKLOADS[name]
        print(f"{name}: {workload.description}", file=sys.stderr)
        results.setdefault(name, {})
        measured = [p for p in peers if p not in CEILINGS or CEILINGS[p](workload)]
        # Run after run, every peer once each, so that a slower spell of the machine
        # falls on all of them alike.
        runs: dict[str, list[dict[str, Any]]] = {peer: [] for peer in measured}
        for _ in range(max(args.runs, workload.min_runs)):
            for peer in measured:
                if runs[peer] and "error" in runs[peer][0]:
                    continue
                run = run_isolated(name, peer, args.timeout)
                runs[peer] = [run] if "error" in run else [*runs[peer], run]
        for peer in measured:
            done = runs[peer]
            summary = done[0] if "error" in done[0] else summarise(workload, done)
            summary["runs"] = len(done)  # merged tables may come from other --runs
            results[name][peer] = summary
            print(f"  {peer:42} {headline(workload, summary)}", file=sys.stderr)
    command = shlex.join(["python", "-m", "benchmarks", "suite", *sys.argv[1:]])
    saved["commands"] = [*saved["commands"], command] if args.merge else [command]
    RESULTS.write_text(json.dumps(saved, indent=1))
    write_report(saved, args.output)


def write_report(saved: dict[str, Any], output: Path) -> None:
    results: dict[str, dict[str, Any]] = saved["results"]
    commands = "\n".join(f"    {c}" for c in saved["commands"])
    lines = [
        "# Performance",
        "",
        "inorder against its peers on the same workloads, measured side by side. The",
        "figures below come from these runs (`make bench` reruns the whole suite; the raw",
        "medians are in `benchmarks/results.json`):",
        "",
        commands,
        "",
        f"Machine: {machine()}. This VM's CPU speed wobbles between two levels about 1.7x "
        "apart and the machine is shared, so read ratios within one table, not absolute "
        f"figures across tables. {WORKERS} workers everywhere; medians of the runs counted "
        "under each table, each run in a fresh process, the peers taking turns run after "
        "run; pools created and warmed before timing, except `inorder.map (cold)` and "
        "`inorder.imap (cold)`, which include start-up; the garbage collector runs once just "
        "before the clock starts; every peer's results go through the "
        "same Python loop, which checks each value and its order. inorder runs at its "
        "defaults. Each row gives the median of its runs and the lowest and highest of them: "
        "one peer's figure can vary severalfold from run to run on this VM. "
        "Ratios compare with `Pool.imap` at its best chunksize for the workload "
        "(higher is better). In the cpu and skew tables the last row is not a peer but the "
        "machine's ceiling at the time: each worker runs an equal share of the items in one "
        "call, with no IPC per item. In the trivial and stream tables the last two rows are "
        "not peers either: each item's function runs inside the consumer's own loop, with "
        "no worker, an `async for` over an async generator (how inorder's results are "
        "consumed) and a plain `for` (how `Pool.imap`'s are): the most a pipeline consumed "
        "either way could reach, since the parent's one thread limits these workloads. "
        "The parent's peak RSS is sampled every 2 ms in the "
        "workloads that report it, and only there. Written " + time.strftime("%Y-%m-%d") + ".",
        "",
    ]
    for name, by_peer in results.items():
        workload = WORKLOADS[name]
        imap = [p for p in by_peer if p.startswith("Pool.imap")]
        best_imap = max(imap, key=lambda p: score(workload, by_peer[p]), default=None)
        reference = score(workload, by_peer[best_imap]) if best_imap else 0.0
        counts = sorted({s.get("runs", 1) for s in by_peer.values() if "error" not in s})
        runs = (
            "One run per row."
            if counts == [1]
            else f"Median of {' or '.join(map(str, counts))} runs per row."
        )
        lines += [
            f"## {name}: {workload.description}",
            "",
            runs,
            "",
            "| peer | result | lowest-highest run | vs Pool.imap best |",
            "| --- | --- | --- | --- |",
        ]
        for peer in PEERS:
            if peer not in by_peer:
                continue
            s = by_peer[peer]
            ratio = (
                f"{score(workload, s) / reference:.2f}x"
                if reference and score(workload, s)
                else "-"
            )
            marker = " (best Pool.imap)" if peer == best_imap else ""
            lines.append(
                f"| {peer}{marker} | {headline(workload, s)} | {spread(workload, s)} | {ratio} |"
            )
        lines.append("")
    output.write_text("\n".join(lines))
    print(f"wrote {output}", file=sys.stderr)


if __name__ == "__main__":
    main()
