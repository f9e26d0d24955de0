"""How much of a sync iterable ``inorder.map`` holds at once: the parent's peak RSS growth.

    python benchmarks/readahead.py [--items 2000] [--runs 3]

Each run is a fresh interpreter that streams ``--items`` arguments of 1 MiB each (the
payload_in workload's, made by a generator one at a time) through ``inorder.map`` on 2
workers and reports how far its peak RSS (``ru_maxrss``) rose above where it stood before
the stream. The automatic window holds about 32 MiB of pickled items; anything far above
that is input read ahead of the window. To compare two versions, run it with
``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def one_run(items: int) -> float:
    import anyio

    import inorder
    from workloads import MIB, make_payload, size_of

    async def main() -> float:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        count = 0
        payloads = (make_payload(index) for index in range(items))
        async with inorder.map(size_of, payloads, workers=2) as results:
            async for size in results:
                assert size == MIB
                count += 1
        assert count == items
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    return anyio.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        print(json.dumps(one_run(options.items)))
        return
    from workloads import runs_in_fresh_processes

    growths = runs_in_fresh_processes(__file__, ["--items", str(options.items)], options.runs)
    print(
        f"{options.items} x 1 MiB through inorder.map, {options.runs} fresh "
        f"processes: parent peak RSS growth median {statistics.median(growths):.0f} MiB "
        f"(range {min(growths):.0f}-{max(growths):.0f})"
    )


if __name__ == "__main__":
    main()
