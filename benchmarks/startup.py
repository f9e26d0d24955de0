"""Cold start: how long a new process takes to its first result, and where it goes.

    python benchmarks/startup.py [--workers 2] [--runs 9] [--main-imports trio,rich]

Each run is a fresh interpreter that opens an ``OrderedPipeline`` of ``--workers``
worker processes and puts one call of ``x + 1``. It reports, from the start of
``async with``: when each worker said it was ready (the first and the last), when
``async with`` returned, and when the first result arrived. READY is timed by wrapping
the pool's message handler (a private method: this is a diagnostic). Medians and
ranges in ms. To compare two versions, run it alternately with
``PYTHONPATH=<other checkout>/src``.

``--main-imports`` makes this script's main module import those modules at its top
level, as a script that imports a big library would. inorder's Linux workers do not
import the main module, so they should not pay for them; multiprocessing's own
forkserver and spawn children (and inorder's before it skipped that step) do.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

MAIN_IMPORTS = "STARTUP_MAIN_IMPORTS"  # set by --main-imports; seen by the workers too
for name in filter(None, os.environ.get(MAIN_IMPORTS, "").split(",")):
    importlib.import_module(name)

STAGES = ("first worker ready", "last worker ready", "async with returned", "first result")


def one_run(workers: int) -> dict[str, float]:
    import anyio

    import inorder
    from inorder import _pool
    from workloads import inc  # not at the top: spawn workers import this main module

    ready: list[float] = []
    all_ready = threading.Event()
    handle = _pool.WorkerPool._handle

    def timed_handle(self: Any, worker: Any, message: tuple[Any, ...]) -> None:
        if message[0] == _pool.READY:
            ready.append(time.perf_counter())
            if len(ready) == workers:
                all_ready.set()
        handle(self, worker, message)

    _pool.WorkerPool._handle = timed_handle  # type: ignore[method-assign]

    async def main() -> dict[str, float]:
        started = time.perf_counter()
        async with inorder.OrderedPipeline(workers=workers) as pipe:
            entered = time.perf_counter()
            await pipe.put(inc, 0)
            assert await anext(pipe) == 1
            first = time.perf_counter()
            await anyio.to_thread.run_sync(all_ready.wait)  # others may still be starting
        marks = (ready[0], ready[-1], entered, first)
        return {stage: (t - started) * 1e3 for stage, t in zip(STAGES, marks, strict=True)}

    return anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument(
        "--main-imports", default="", help="modules the main module imports, comma-separated"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        print(json.dumps(one_run(options.workers)))
        return
    from workloads import runs_in_fresh_processes

    runs = runs_in_fresh_processes(
        __file__,
        ["--workers", str(options.workers)],
        options.runs,
        **{MAIN_IMPORTS: options.main_imports},
    )
    imports = f", main module imports {options.main_imports}" if options.main_imports else ""
    print(
        f"{options.workers} workers, {options.runs} fresh processes{imports}: ms from async with"
    )
    for stage in STAGES:
        values = sorted(run[stage] for run in runs)
        print(
            f"  {stage:22s} median {statistics.median(values):6.1f}"
            f"  range {values[0]:6.1f}-{values[-1]:6.1f}"
        )


if __name__ == "__main__":
    main()
