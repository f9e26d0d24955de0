"""Where a stream of items spends its time in inorder: one of suite.py's workloads, traced.

    python benchmarks/stream_hops.py [--runs 7] [--workload trivial] [--peer 'inorder put()']

Each run is suite.py's own measurement of the workload (``suite.measure``: the same
runner, items, consumer and warm-up as ``suite.py --one``), in this process, traced. It
reports, as medians over the runs:

* items/s, and the batches the stream took;
* how busy the workers were: the seconds of work the batches report, over 2 x the wall;
* the share of the stream's wall time the event loop's thread spent on a CPU;
* how long the event loop waited with nothing to run (its selector blocking on the main
  thread): the consumer found no result ready;
* for full-size batches (at least half the largest), the trip from the batch being cut
  to its completion on the event loop, split where the pool sends the job and where the
  pool reads the result, and the share of jobs the event loop's thread sent itself
  (the others went through the pool's manager thread).

Private hooks (this is a diagnostic): the pipeline's batch cutter and completion, the
pool's send and message handler, the selector class. To compare two versions, run it
alternately with ``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import selectors
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

from inorder import _batching, _pipeline, _pool

sys.path.insert(0, str(Path(__file__).parent))

import suite

FULL_SIZE = _batching.MAX_BATCH_SIZE // 2


class Trace:
    """What the hooks saw during one measured stream."""

    def __init__(self) -> None:
        self.started = 0.0  # 0 until the measured stream starts
        self.loop_cpu = 0.0  # the event loop thread's CPU seconds, from the start
        self.ended = 0.0  # the stream ended (the pipeline's async with exits)
        self.batches = 0
        self.work_seconds = 0.0
        self.loop_waits = 0
        self.loop_waited = 0.0
        self.cut: dict[int, float] = {}  # first sequence number of a batch -> cut at
        self.sent: dict[int, tuple[float, bool]] = {}  # id(future) -> at, by the loop?
        self.read: dict[int, float] = {}  # id(future) -> the manager read its result at
        self.trips: list[tuple[float, float, float, bool]] = []


trace = Trace()
_cut_batch = _pipeline.OrderedPipeline._cut_batch
_job_done = _pipeline.OrderedPipeline._job_done
_send = _pool.WorkerPool._send
_handle = _pool.WorkerPool._handle


def _traced_cut_batch(self: Any, size: int) -> Any:
    cut = _cut_batch(self, size)
    if trace.started:
        trace.batches += 1
        trace.cut[cut[1][0][0]] = time.perf_counter()
    return cut


def _traced_send(self: Any, worker: Any, job: Any) -> None:
    loop_thread = threading.current_thread() is threading.main_thread()
    trace.sent[id(job.future)] = (time.perf_counter(), loop_thread)
    _send(self, worker, job)


def _traced_handle(self: Any, worker: Any, message: tuple[Any, ...]) -> None:
    if message[0] == _pool.DONE and worker.jobs:
        trace.read[id(worker.jobs[0].future)] = time.perf_counter()
    _handle(self, worker, message)


def _traced_job_done(
    self: Any, runs: Any, parts: Any, attempts: int, count: int, full: bool, future: Any
) -> None:
    now = time.perf_counter()
    if trace.started and not future.cancelled() and future.exception() is None:
        trace.work_seconds += future.result()[1]
        cut = trace.cut.get(runs[0][0])
        sent = trace.sent.get(id(future))
        read = trace.read.get(id(future))
        if count >= FULL_SIZE and cut and sent and read:
            trace.trips.append((sent[0] - cut, read - sent[0], now - read, sent[1]))
    _job_done(self, runs, parts, attempts, count, full, future)


_pipeline.OrderedPipeline._cut_batch = _traced_cut_batch  # type: ignore[method-assign]
_pipeline.OrderedPipeline._job_done = _traced_job_done  # type: ignore[method-assign]
_pool.WorkerPool._send = _traced_send  # type: ignore[method-assign]
_pool.WorkerPool._handle = _traced_handle  # type: ignore[method-assign]


_select = selectors.DefaultSelector.select
_warm_up = suite.warm_up_every_worker


def _traced_select(self: Any, timeout: float | None = None) -> Any:
    began = time.perf_counter()
    try:
        return _select(self, timeout)
    finally:
        if (
            trace.started
            and timeout != 0
            and threading.current_thread() is threading.main_thread()
        ):
            trace.loop_waits += 1
            trace.loop_waited += time.perf_counter() - began


async def _warm_up_then_trace(pipe: Any, workers: int) -> None:
    await _warm_up(pipe, workers)
    trace.loop_cpu = time.thread_time()
    trace.started = time.perf_counter()


_aexit = _pipeline.OrderedPipeline.__aexit__


async def _traced_aexit(self: Any, *exc_info: Any) -> None:
    if trace.started and not trace.ended:
        trace.ended = time.perf_counter()
        trace.loop_cpu = time.thread_time() - trace.loop_cpu
    await _aexit(self, *exc_info)


selectors.DefaultSelector.select = _traced_select  # type: ignore[method-assign]
suite.warm_up_every_worker = _warm_up_then_trace
_pipeline.OrderedPipeline.__aexit__ = _traced_aexit  # type: ignore[method-assign]


def one_run(workload: str, peer: str) -> dict[str, float]:
    global trace
    trace = Trace()
    measured = suite.measure(workload, peer)
    if not measured["ok"]:
        raise AssertionError(f"{peer} gave wrong results on {workload}")
    elapsed = measured["elapsed"]
    trips = trace.trips
    return {
        "items/s": suite.WORKLOADS[workload].count / elapsed,
        "batches": trace.batches,
        "worker busy": trace.work_seconds / (suite.WORKERS * elapsed),
        "loop thread on CPU": trace.loop_cpu / (trace.ended - trace.started),
        "loop waited, ms": trace.loop_waited * 1e3,
        "loop waits": trace.loop_waits,
        "full batches": len(trips),
        "cut -> sent, ms": _median_ms(t[0] for t in trips),
        "sent -> read, ms": _median_ms(t[1] for t in trips),
        "read -> done on the loop, ms": _median_ms(t[2] for t in trips),
        "cut -> done, ms": _median_ms(sum(t[:3]) for t in trips),
        "sent by the loop": sum(t[3] for t in trips) / len(trips) if trips else 0.0,
    }


def _median_ms(values: Any) -> float:
    values = list(values)
    return statistics.median(values) * 1e3 if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--workload", default="trivial", choices=list(suite.WORKLOADS))
    # The runners that warm up (which starts the trace) on asyncio's own loop (whose
    # selector is traced).
    parser.add_argument(
        "--peer", default="inorder pipe.map", choices=["inorder pipe.map", "inorder put()"]
    )
    options = parser.parse_args()
    runs = [one_run(options.workload, options.peer) for _ in range(options.runs)]
    print(f"{options.workload}, {options.peer}, {options.runs} runs: medians")
    for name in runs[0]:
        values = sorted(run[name] for run in runs)
        low, high = values[0], values[-1]
        print(f"  {name:30} {statistics.median(values):12,.2f}  ({low:,.2f}-{high:,.2f})")


if __name__ == "__main__":
    main()
