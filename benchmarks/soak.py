"""Soak run: a long stream with faults of every kind, checked item by item (`make soak`).

1 % of the items fail on their first attempt, the kinds taking turns: an exception,
``sys.exit``, ``os._exit``, SIGKILL, a segfault, an unpicklable result, a crash while
pickling the result, and a hang stopped by the timeout. The stream runs twice, with
retries off (every fault must come out as its own error, in place) and on (every item
must come out as its result). Prints items in, outcomes out, lost, duplicated, out of
order, wrong outcomes, restarts, retries, timeouts and wall time, as a Markdown table
(docs/reliability.md quotes it).

``--no-timeout`` leaves out the hang and the timeout: without a timeout the event loop
sends small jobs to the workers itself, where with one the pool's manager thread sends
every job (see ``_pool``), so the two runs cover both ways.

    python -m benchmarks soak [--items 100000] [--fault-every 100] [--workers 2] [--no-timeout]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

import inorder

KINDS = ["raise", "exit", "os_exit", "sigkill", "segfault", "bad_result", "crash_result", "hang"]
TIMEOUT = 0.5  # seconds; a "hang" item sleeps far longer

# The error each kind yields when it is not retried.
EXPECTED = {
    "raise": ValueError,
    "exit": RuntimeError,
    "os_exit": inorder.WorkerCrashedError,
    "sigkill": inorder.WorkerCrashedError,
    "segfault": inorder.WorkerCrashedError,
    "bad_result": TypeError,
    "crash_result": inorder.WorkerCrashedError,
    "hang": inorder.TaskTimeoutError,
}


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("refuses to be pickled")


class _CrashesWhenPickled:
    def __reduce__(self) -> Any:
        os._exit(9)


def item(x: int, kind: str, folder: str) -> Any:
    """``x``, except on the first attempt at a faulty item, which fails as ``kind`` says."""
    if kind == "ok":
        return x
    marker = Path(folder) / str(x)
    if marker.exists():
        return x  # a retry: the fault was transient
    marker.touch()
    if kind == "raise":
        raise ValueError(x)
    if kind == "exit":
        sys.exit(3)
    if kind == "os_exit":
        os._exit(7)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "bad_result":
        return _Unpicklable()
    if kind == "crash_result":
        return _CrashesWhenPickled()
    time.sleep(600)  # "hang"
    return x


def kind_of(x: int, fault_every: int, kinds: list[str]) -> str:
    if x % fault_every != fault_every // 2:
        return "ok"
    return kinds[(x // fault_every) % len(kinds)]


async def soak(
    items: int, fault_every: int, workers: int, retries: int, item_timeout: float | None
) -> dict[str, Any]:
    folder = tempfile.mkdtemp(prefix="inorder-soak-")
    faults = KINDS if item_timeout is not None else [k for k in KINDS if k != "hang"]
    kinds = (kind_of(x, fault_every, faults) for x in range(items))
    outcomes = 0
    wrong: Counter[str] = Counter()
    seen_results: set[int] = set()
    duplicated = out_of_order = rerun_by_a_crash = 0
    last = -1
    started = time.perf_counter()
    async with inorder.OrderedPipeline(
        workers=workers, on_error="return", timeout=item_timeout, retries=retries
    ) as pipe:
        pipe.map(item, range(items), kinds, [folder] * items)
        async for outcome in pipe:
            x = outcomes  # the position of this outcome is the item it belongs to
            outcomes += 1
            kind = kind_of(x, fault_every, faults)
            if isinstance(outcome, int) and not isinstance(outcome, bool):
                if outcome in seen_results:
                    duplicated += 1
                seen_results.add(outcome)
                if outcome < last:
                    out_of_order += 1
                last = outcome
                if outcome != x:
                    wrong[f"{kind}: result {outcome} at {x}"] += 1
                elif kind != "ok" and not retries:
                    # Its fault is transient: it ran again, without retries, because
                    # another item crashed the worker running them both.
                    rerun_by_a_crash += 1
            elif retries or kind == "ok" or not isinstance(outcome, EXPECTED[kind]):
                wrong[f"{kind}: {type(outcome).__name__}"] += 1
        stats = pipe.statistics()
    wall = time.perf_counter() - started
    errors = outcomes - len(seen_results) - duplicated
    lost = items - len(seen_results) - errors
    return {
        "retries": retries,
        "items in": items,
        "outcomes out": outcomes,
        "lost": lost,
        "duplicated": duplicated,
        "out of order": out_of_order,
        "wrong outcomes": sum(wrong.values()),
        "faults injected": sum(kind_of(x, fault_every, faults) != "ok" for x in range(items)),
        "errors yielded": stats.failed,
        "faults cured by a re-run": rerun_by_a_crash,
        "restarts": stats.restarts,
        "retries made": stats.retries,
        "timeouts": stats.timeouts,
        "wall s": round(wall, 1),
        "details": dict(wrong.most_common(5)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--fault-every", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-timeout", action="store_true", help="no timeout, no hang faults")
    args = parser.parse_args()
    timeout = None if args.no_timeout else TIMEOUT
    rows = [
        anyio.run(soak, args.items, args.fault_every, args.workers, retries, timeout)
        for retries in (0, 2)
    ]
    limit = "no timeout (no hangs)" if timeout is None else f"timeout={timeout} s"
    print(
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"workers={args.workers}, {limit}, one fault per {args.fault_every} items"
    )
    print()
    columns = [c for c in rows[0] if c != "details"]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    failed = [
        row
        for row in rows
        if row["lost"] or row["duplicated"] or row["out of order"] or row["wrong outcomes"]
    ]
    for row in failed:
        print(f"\nretries={row['retries']}: {row['details']}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
