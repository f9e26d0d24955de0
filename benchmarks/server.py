"""A server with one ordered pipeline per connection: its own workers, or a shared pool.

20 clients connect at once to a local TCP server (127.0.0.1) and each sends 10 lines;
every connection gets an ``OrderedPipeline``. With ``executor="process"`` each pipeline
starts worker processes of its own; with an ``inorder.WorkerPool`` they all use the
pool's. Reports the time from connecting to the first reply (median and slowest client)
and the most child processes alive at once (the workers, the fork server and
multiprocessing's resource tracker)::

    python -m benchmarks server [--clients 20] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import anyio
import anyio.abc
import psutil
from anyio.streams.buffered import BufferedByteReceiveStream

import inorder


def work(line: str) -> str:
    return line.upper()


async def serve(executor: Any, client: anyio.abc.ByteStream) -> None:
    async with client, inorder.OrderedPipeline(executor=executor, workers=2) as pipe:

        async def read_requests() -> None:
            buffered = BufferedByteReceiveStream(client)
            try:
                while True:
                    line = await buffered.receive_until(b"\n", 65536)
                    await pipe.put(work, line.decode())
            except anyio.IncompleteRead:
                pipe.close()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_requests)
            async for results in pipe.chunks():
                await client.send("".join(f"{r}\n" for r in results).encode())


async def one_run(shared: bool, clients: int) -> tuple[list[float], int]:
    firsts: list[float] = []
    peak = 0
    me = psutil.Process()

    async def count_workers() -> None:
        nonlocal peak
        while True:
            peak = max(peak, len(me.children(recursive=True)))
            await anyio.sleep(0.01)

    async def client(port: int) -> None:
        started = time.perf_counter()
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            await stream.send(b"".join(b"line %d\n" % i for i in range(10)))
            await stream.send_eof()
            first = True
            async for _ in stream:
                if first:
                    firsts.append(time.perf_counter() - started)
                    first = False

    async def run(executor: Any) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with anyio.create_task_group() as server:
            server.start_soon(count_workers)
            server.start_soon(listener.serve, lambda c: serve(executor, c))
            async with anyio.create_task_group() as group:
                for _ in range(clients):
                    group.start_soon(client, port)
            server.cancel_scope.cancel()

    if shared:
        async with inorder.WorkerPool(workers=2) as pool:
            await run(pool)
    else:
        await run("process")
    return firsts, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{args.clients} clients at once, 10 lines each; runs alternate")
    rows: dict[str, list[tuple[float, float, int]]] = {"own workers": [], "shared pool": []}
    for _ in range(args.runs):
        for name, shared in (("own workers", False), ("shared pool", True)):
            firsts, peak = anyio.run(one_run, shared, args.clients)
            rows[name].append((statistics.median(firsts), max(firsts), peak))
    for name, runs in rows.items():
        median = statistics.median(r[0] for r in runs) * 1000
        slowest = statistics.median(r[1] for r in runs) * 1000
        peak = max(r[2] for r in runs)
        print(
            f"  {name:12}  first reply: median {median:6.1f} ms, slowest client "
            f"{slowest:6.1f} ms; child processes at once: {peak}"
        )


if __name__ == "__main__":
    main()
