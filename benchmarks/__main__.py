"""The benchmarks' one entry point: ``python -m benchmarks COMMAND [OPTIONS]``.

Each command is a module of this folder with its own options (``python -m benchmarks
COMMAND --help``). Figures in the docs name the command that produced them.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

COMMANDS = {
    "suite": "inorder against its peers on every workload; writes docs/performance.md",
    "micro": "per-item costs alone: put(), the consumer's step, a run's cost to the workers",
    "startup": "cold start: from async with to the first result, fresh interpreters",
    "cli": "inorder map against a plain loop and GNU parallel",
    "server": "a pipeline per connection: workers of its own or a shared WorkerPool",
    "soak": "100k items with 1 % faults of every kind: nothing lost, doubled or reordered",
    "chaos": "workers SIGKILLed at random while a stream runs: nothing lost",
    "redis_streams": "Redis stream to stream: inorder.redis.run against a plain loop",
    "cluster": "a Dask LocalCluster against inorder's own pool: per-item cost, CPU efficiency",
    "under_load": "run a command while busy loops hold every CPU (make test-loaded)",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        width = max(map(len, COMMANDS))
        print("usage: python -m benchmarks COMMAND [OPTIONS]\n\ncommands:", file=sys.stderr)
        for name, what in COMMANDS.items():
            print(f"  {name:{width}}  {what}", file=sys.stderr)
        sys.exit(0 if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help") else 2)
    name = sys.argv[1]
    script = HERE / f"{name}.py"
    sys.argv = [str(script), *sys.argv[2:]]
    sys.path.insert(0, str(HERE))
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
