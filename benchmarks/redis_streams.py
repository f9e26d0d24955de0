"""Redis stream to stream: ``inorder.redis.run`` against a plain loop, side by side.

A redis-server of its own on a free port of 127.0.0.1 (Debian's package), an input
stream of ``--entries`` entries, and two ways to take every entry through a function
into an output stream, alternating, medians of ``--runs``:

* a plain loop in one process: XREADGROUP of 1000 entries, the function on each, then
  one MULTI/EXEC with an XADD per entry and one XACK (what a hand-written consumer does);
* ``inorder.redis.run`` with 2 workers: the same entries, outputs and acknowledgements,
  each chunk written with its inputs' acknowledgement by one script.

Workloads: ``tiny`` (the text upper-cased) and ``wordcount`` (each entry 200 lines of a
bundled sample text, its 5 most common words; examples/wordcount.py's counting).

    python -m benchmarks redis_streams [--entries 200000] [--runs 3]
"""

from __future__ import annotations

import argparse
import collections
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import redis

import inorder.redis

ROOT = Path(__file__).resolve().parent.parent


def tiny(text: str) -> str:
    return text.upper()


def top_words(text: str) -> str:
    words = collections.Counter(text.lower().split())
    return " ".join(word for word, _ in words.most_common(5))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _items(workload: str, entries: int) -> list[str]:
    if workload == "tiny":
        return [f"entry {i}" for i in range(entries)]
    lines = []
    for path in sorted((ROOT / "examples" / "data").glob("*.txt")):
        lines.extend(path.read_text().splitlines())
    chunks = ["\n".join(lines[i : i + 200]) for i in range(0, len(lines) - 200, 200)]
    return [chunks[i % len(chunks)] for i in range(entries)]


def _fill(client: Any, stream: str, items: list[str]) -> None:
    for start in range(0, len(items), 10_000):
        with client.pipeline(transaction=False) as batch:
            for item in items[start : start + 10_000]:
                batch.xadd(stream, {"data": item})
            batch.execute()


def plain_loop(client: Any, fn: Callable[[str], str], source: str, sink: str) -> None:
    client.xgroup_create(source, "g", id="0")
    while True:
        reply = client.xreadgroup("g", "c", {source: ">"}, count=1000)
        if not reply:
            return
        (_, messages), *_ = reply
        with client.pipeline(transaction=True) as batch:
            for entry_id, fields in messages:
                batch.xadd(sink, {"id": entry_id, "data": fn(fields[b"data"].decode())})
            batch.xack(source, "g", *[entry_id for entry_id, _ in messages])
            batch.execute()


async def with_inorder(client: Any, fn: Callable[[str], str], source: str, sink: str) -> None:
    await inorder.redis.run(
        fn,
        inorder.redis.StreamSource(client, source, "g", "c"),
        inorder.redis.StreamSink(sink),
        workers=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit("needs redis-server (apt-get install redis-server)")
    port = _free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder,
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.05)
            print(f"{args.entries:,} entries, medians of {args.runs} alternating runs")
            print("| workload | plain loop | inorder.redis.run, 2 workers | ratio |")
            print("| --- | --- | --- | --- |")
            for workload, fn in (("tiny", tiny), ("wordcount", top_words)):
                items = _items(workload, args.entries)
                rates: dict[str, list[float]] = {"plain": [], "inorder": []}
                for run in range(args.runs):
                    for name in rates:
                        tag = f"{workload}-{name}-{run}"
                        source, sink = f"in-{tag}", f"out-{tag}"
                        _fill(client, source, items)
                        started = time.perf_counter()
                        if name == "plain":
                            plain_loop(client, fn, source, sink)
                        else:
                            anyio.run(with_inorder, client, fn, source, sink)
                        rates[name].append(args.entries / (time.perf_counter() - started))
                        assert client.xlen(sink) == args.entries
                        client.delete(source, sink)
                plain, ours = (statistics.median(rates[n]) for n in ("plain", "inorder"))
                print(
                    f"| {workload} | {plain:,.0f} entries/s | {ours:,.0f} entries/s "
                    f"| {ours / plain:.2f}x |"
                )
        finally:
            process.terminate()
            process.wait(20)


if __name__ == "__main__":
    main()
