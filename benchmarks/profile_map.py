"""The parent's share of a tiny-item stream, for a profiler (figures in the issue notes).

    py-spy record -o profile.txt -f raw -r 250 -- python benchmarks/profile_map.py

Streams 2M `x + 1` items through `pipe.map` on 2 workers at the defaults and prints the
count, the window and the batch size it ended with.
"""

from __future__ import annotations

import anyio

import inorder


def inc(x: int) -> int:
    return x + 1


async def main() -> None:
    async with inorder.OrderedPipeline(workers=2) as pipe:
        count = 0
        async for _ in pipe.map(inc, range(2_000_000)):
            count += 1
        stats = pipe.statistics()
    print(count, stats.window, stats.batch_size)


if __name__ == "__main__":
    anyio.run(main)
