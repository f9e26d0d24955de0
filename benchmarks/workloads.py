"""The functions the benchmark runs in workers, and the workloads built from them.

CPU-bound items burn a fixed amount of *CPU time* (``time.process_time``), not a fixed
loop count: this machine's CPU speed wobbles between two levels about 1.7x apart, and a
fixed loop would make "4 ms" mean different things from one item to the next.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MIB = 1 << 20


def inc(x: int) -> int:
    return x + 1


def pid_after(seconds: float) -> int:
    """Sleep ``seconds``; return the pid of the worker that ran it."""
    time.sleep(seconds)
    return os.getpid()


def burn(index: int, seconds: float) -> int:
    """Spend ``seconds`` of CPU time in pure Python; return ``index``."""
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return index


def pid_after_burning(seconds: float) -> int:
    """Spend ``seconds`` of CPU time; return the worker's pid (to see which one ran it)."""
    burn(0, seconds)
    return os.getpid()


def burn_skewed(index: int) -> int:
    """1 ms of CPU, except every 100th item: 50 ms."""
    return burn(index, 0.05 if index % 100 == 99 else 0.001)


def burn_4ms(index: int) -> int:
    return burn(index, 0.004)


def burn_1ms(index: int) -> int:
    return burn(index, 0.001)


def timed_burn_1ms(index: int) -> tuple[float, float]:
    """``burn_1ms``, returning when it started and ended (``time.perf_counter``, which
    all processes of this machine share)."""
    started = time.perf_counter()
    burn(index, 0.001)
    return started, time.perf_counter()


async def warm_up_every_worker(pipe: Any, workers: int) -> None:
    """Before the clock starts, every worker of ``pipe`` runs a call from this module,
    so it imports the module then, not during a measured item. (The peers' workers
    import it as they start: multiprocessing's children import the main module, which
    imports this one; inorder's workers do not import the main module.) Calls that
    take 20 ms each, one per worker at a time, reach every worker."""
    seen: set[int] = set()
    while len(seen) < workers:
        for _ in range(workers):
            await pipe.put(pid_after_burning, 0.02)
        for _ in range(workers):
            seen.add(await anext(pipe))


def warm_up_every_worker_sync(pipe: Any, workers: int) -> None:
    """``warm_up_every_worker`` for an ``inorder.SyncPipeline``."""
    seen: set[int] = set()
    while len(seen) < workers:
        for _ in range(workers):
            pipe.put(pid_after_burning, 0.02)
        for _ in range(workers):
            seen.add(next(pipe))


async def call_async(fn: Callable[[Any], Any], item: Any) -> Any:
    """aiomultiprocess runs coroutine functions only: the same call, wrapped."""
    return fn(item)


def size_of(payload: bytes) -> int:
    return len(payload)


class Offset:
    """``Offset(1).add`` is a bound method: ``put(offset.add, x)`` makes a new one per call."""

    def __init__(self, offset: int) -> None:
        self.offset = offset

    def add(self, x: int) -> int:
        return x + self.offset


def run_share(fn: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    """A whole share of the items in one call: the no-IPC ceiling of CPU-bound workloads."""
    return [fn(item) for item in items]


def equal_shares(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` cut into ``parts`` contiguous shares of equal length (each share of the
    skew workload holds as many slow items)."""
    return [items[len(items) * i // parts : len(items) * (i + 1) // parts] for i in range(parts)]


def no_ipc_ceiling(
    w: Workload, workers: int, consume: Callable[[Any], None], mark: Callable[[], None]
) -> None:
    """Not a peer: what this machine allows a CPU-bound workload at the time. On a warm
    pool, each worker runs an equal contiguous share of the items in one call and sends
    its results back once, at the end; ``mark()`` is called when the clock starts."""
    shares = equal_shares(list(w.items(w.count)), workers)
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as ex:
        list(ex.map(inc, range(64)))
        mark()
        for future in [ex.submit(run_share, w.fn, share) for share in shares]:
            for result in future.result():
                consume(result)


def make_payload(index: int) -> bytes:
    return index.to_bytes(4, "little") * (MIB // 4)


def small_result(index: int) -> bytes:
    return index.to_bytes(4, "little") * (32 * 1024 // 4)  # 32 KiB


@dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable[..., Any]
    count: int
    items: Callable[[int], Iterator[Any]]
    check: Callable[[int, Any], bool]
    serial_seconds: float = 0.0  # CPU seconds of work in all items, for efficiency
    consumer_delay: float = 0.0  # seconds the consumer spends per result (slow consumer)
    # Sample the parent's RSS while it runs. Only where the report shows it: the sampling
    # thread wakes every 2 ms and takes CPU from every peer (suite.py --one cpu, 4 runs
    # each alternating: no-IPC ceiling median 0.935 with it, 0.982 without).
    measures_memory: bool = False
    description: str = ""
    only_when_named: bool = False  # too long for every peer: run with --workloads NAME
    # Runs per peer at least, whatever --runs says: a run gives the latency workload one
    # sample, and on this VM the first result of the same peer varies by 2x or more from
    # run to run (suite.py --one latency, 10 runs each: inorder pipe.map 2.1-4.8 ms,
    # Pool.imap chunksize=1 2.3-33 ms), so a median of 3 moved by a millisecond between
    # suite runs.
    min_runs: int = 1
    # Tiny items: the parent's own loop (reading the input, consuming the results) limits
    # every peer, so the suite adds that loop alone, with no worker, as ceilings.
    parent_bound: bool = False


def fresh_process_env(**extra: str) -> dict[str, str]:
    """The environment for a benchmark's fresh interpreter: this one's, with ``extra``,
    and with bytecode caches allowed (without them workers start 3-6x slower)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra)
    return env


def runs_in_fresh_processes(script: str, args: list[str], runs: int, **env: str) -> list[Any]:
    """Run ``script --one *args`` in ``runs`` fresh interpreters, one after the other;
    what each printed last, as JSON."""
    command = [sys.executable, script, "--one", *args]
    return [
        json.loads(
            subprocess.run(
                command, capture_output=True, text=True, check=True, env=fresh_process_env(**env)
            ).stdout.splitlines()[-1]
        )
        for _ in range(runs)
    ]


def _range(n: int) -> Iterator[int]:
    return iter(range(n))


def _payloads(n: int) -> Iterator[bytes]:
    return (make_payload(i) for i in range(n))


WORKLOADS = {
    w.name: w
    for w in [
        Workload(
            "trivial",
            inc,
            200_000,
            _range,
            lambda i, r: r == i + 1,
            description="200k x `x + 1`: pure overhead",
            parent_bound=True,
        ),
        Workload(
            "cpu",
            burn_4ms,
            400,
            _range,
            lambda i, r: r == i,
            serial_seconds=400 * 0.004,
            description="400 x 4 ms of pure-Python CPU",
        ),
        Workload(
            "skew",
            burn_skewed,
            2_000,
            _range,
            lambda i, r: r == i,
            serial_seconds=1_980 * 0.001 + 20 * 0.05,
            description="2,000 x 1 ms, every 100th item 50 ms",
        ),
        Workload(
            "payload_in",
            size_of,
            300,
            _payloads,
            lambda i, r: r == MIB,
            description="300 x 1 MiB argument",
        ),
        Workload(
            "payload_out",
            make_payload,
            300,
            _range,
            lambda i, r: len(r) == MIB and r[:4] == i.to_bytes(4, "little"),
            description="300 x 1 MiB result",
        ),
        Workload(
            "stream",
            inc,
            2_000_000,
            _range,
            lambda i, r: r == i + 1,
            description="2M tiny items from a generator: items/s and parent peak RSS growth",
            measures_memory=True,
            parent_bound=True,
        ),
        Workload(
            "latency",
            burn_1ms,
            200,
            _range,
            lambda i, r: r == i,
            description="time to the first result of 1 ms items on a warm pool",
            min_runs=9,
        ),
        Workload(
            "slow_consumer",
            small_result,
            20_000,
            _range,
            lambda i, r: r[:4] == i.to_bytes(4, "little"),
            consumer_delay=0.0001,
            measures_memory=True,
            description="20k x 32 KiB results, consumer busy 0.1 ms per result: parent RSS",
        ),
    ]
}

# The stream again, ten times as long: too long for every peer, so run only when named.
WORKLOADS["stream_20m"] = dataclasses.replace(
    WORKLOADS["stream"],
    name="stream_20m",
    count=20_000_000,
    description="20M tiny items from a generator: parent peak RSS growth stays flat",
    only_when_named=True,
)
