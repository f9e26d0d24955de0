"""Cold start: how long a new process takes to its first result, and where it goes.

    python -m benchmarks startup [--workers 2] [--runs 9] [--main-imports trio,rich]

Each run is a fresh interpreter that opens an ``OrderedPipeline`` of ``--workers``
worker processes and puts one call of ``x + 1``, then calls that each take 10 ms and
return their worker's pid. It reports, from the start of ``async with``: when
``async with`` returned (the first worker is ready), when the first result arrived, and
when every worker had returned a result (the last worker's start plus up to an item's
10 ms). Medians and ranges in ms. To compare two versions, run it alternately with
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
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

MAIN_IMPORTS = "STARTUP_MAIN_IMPORTS"  # set by --main-imports; seen by the workers too
for name in filter(None, os.environ.get(MAIN_IMPORTS, "").split(",")):
    importlib.import_module(name)

STAGES = ("async with returned", "first result", "every worker's result")


def one_run(workers: int) -> dict[str, float]:
    import anyio

    import inorder
    from workloads import inc, pid_after  # not at the top: spawn workers import this module

    async def main() -> dict[str, float]:
        started = time.perf_counter()
        async with inorder.OrderedPipeline(workers=workers) as pipe:
            entered = time.perf_counter()
            await pipe.put(inc, 0)
            assert await anext(pipe) == 1
            first = time.perf_counter()
            pids: set[int] = set()
            async with anyio.create_task_group() as tasks:

                async def produce() -> None:
                    while True:
                        await pipe.put(pid_after, 0.01)

                tasks.start_soon(produce)
                async for pid in pipe:
                    pids.add(pid)
                    if len(pids) == workers:
                        break
                every = time.perf_counter()
                tasks.cancel_scope.cancel()
        marks = (entered, first, every)
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
