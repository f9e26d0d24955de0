"""Run a command while busy loops hold every CPU: the tests must pass on a loaded machine.

    python -m benchmarks under_load -- .venv/bin/python -m pytest
    python -m benchmarks under_load --loops 4 -- make test

Starts ``--loops`` processes (default: one per usable CPU) that spin until the command
ends, runs the command, stops them, and exits with the command's status.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def spin(stop: multiprocessing.synchronize.Event) -> None:
    """Burn CPU until ``stop`` is set (checked every few milliseconds)."""
    while not stop.is_set():
        deadline = time.perf_counter() + 0.005
        while time.perf_counter() < deadline:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG ...]")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    stop = multiprocessing.Event()
    loops = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(args.loops)]
    for loop in loops:
        loop.start()
    print(f"under_load: {args.loops} busy loop(s) running; {' '.join(command)}", flush=True)
    started = time.monotonic()
    try:
        status = subprocess.call(command)
    finally:
        stop.set()
        for loop in loops:
            loop.join()
    print(f"under_load: exit status {status} after {time.monotonic() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
