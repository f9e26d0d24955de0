"""Chaos run: random SIGKILLs of the workers during a long stream (`make chaos`).

A thread SIGKILLs a random worker process of the pipeline every 50-200 ms: running items,
idle, or still starting (a replacement is a process from its first moment); one time
in three it kills the replacement too, as soon as it exists. The stream
of ``--items`` items (each sleeps ``--item-ms``) runs with retries off and on, on asyncio
and trio, and every outcome is checked: one per item, in order, a result or the
``WorkerCrashedError`` of a killed worker. Prints a Markdown table (docs/reliability.md
quotes it).

    python -m benchmarks chaos [--items 50000] [--item-ms 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import threading
import time
from typing import Any

import anyio
import psutil

import inorder


def item(x: int, seconds: float) -> tuple[int, int]:
    """``x`` and the pid of the worker that ran it, after ``seconds``."""
    time.sleep(seconds)
    return x, os.getpid()


def workers_of(parent: psutil.Process, before: set[int]) -> list[int]:
    """The pipeline's worker processes: descendants that are not multiprocessing's helpers."""
    pids = []
    for child in parent.children(recursive=True):
        if child.pid in before:
            continue
        try:
            command = " ".join(child.cmdline())
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        # The fork server and the resource tracker are children of this process; the
        # workers, forked from the fork server, carry its command line.
        helper = "forkserver" in command or "resource_tracker" in command
        if helper and child.ppid() == parent.pid:
            continue
        pids.append(child.pid)
    return pids


class Killer:
    """SIGKILLs a random worker every 50-200 ms until stopped; one time in three, its
    replacement too, as soon as it exists (while it starts)."""

    def __init__(self, before: set[int], seed: int) -> None:
        self._before = before
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self.killed: set[int] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        parent = psutil.Process()
        while not self._stop.wait(self._random.uniform(0.05, 0.2)):
            candidates = workers_of(parent, self._before | self.killed)
            if not candidates:
                continue
            self._kill(self._random.choice(candidates))
            if self._random.random() < 1 / 3:
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline and not self._stop.is_set():
                    fresh = set(workers_of(parent, self._before | self.killed)) - set(candidates)
                    if fresh:
                        self._kill(min(fresh))
                        break
                    time.sleep(0.001)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.killed.add(pid)


async def run(items: int, seconds: float, workers: int, retries: int, seed: int) -> dict[str, Any]:
    before = set(workers_of(psutil.Process(), set()))
    outcomes: list[Any] = []
    started = time.monotonic()
    with Killer(before, seed) as killer:
        async with inorder.OrderedPipeline(
            workers=workers, retries=retries, on_error="return"
        ) as pipe:
            async for outcome in pipe.map(item, range(items), [seconds] * items):
                outcomes.append(outcome)
            stats = pipe.statistics()
    wall = time.monotonic() - started
    values = [o[0] if isinstance(o, tuple) else None for o in outcomes]
    ran_in = {o[1] for o in outcomes if isinstance(o, tuple)}
    errors = [o for o in outcomes if not isinstance(o, tuple)]
    seen = [v for v in values if v is not None]
    crashed = [e for e in errors if isinstance(e, inorder.WorkerCrashedError)]
    return {
        "items in": items,
        "outcomes out": len(outcomes),
        "lost": len(set(range(items)) - set(seen)) - len(errors),
        "duplicated": len(seen) - len(set(seen)),
        "out of order": sum(v is not None and v != i for i, v in enumerate(values)),
        "kills": len(killer.killed),
        "of them while starting": len(killer.killed) - stats.restarts,
        "killed before an item came back": len(killer.killed - ran_in),
        "items failed": len(errors),
        "failed, of a killed worker": sum(e.pid in killer.killed for e in crashed),
        "other errors": len(errors) - len(crashed),
        "restarts": stats.restarts,
        "retries made": stats.retries,
        "wall s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--item-ms", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.getrandbits(32)
    print(
        f"{args.items:,} items of {args.item_ms:g} ms on {args.workers} workers, a random "
        f"worker SIGKILLed every 50-200 ms; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; seed {seed} (python -m benchmarks chaos --seed {seed})\n"
    )
    rows = []
    for backend in ("asyncio", "trio"):
        for retries in (0, 2):
            row = anyio.run(
                run, args.items, args.item_ms / 1000, args.workers, retries, seed, backend=backend
            )
            rows.append({"loop": backend, "retries": retries, **row})
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("| " + " | ".join("---" for _ in columns) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


if __name__ == "__main__":
    main()
