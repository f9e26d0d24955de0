"""`inorder map` against GNU parallel -k and a plain Python loop (docs/cli.md quotes it).

On a 1M-line file, for a cheap transform (`upper`) and a CPU-heavy one (`heavy`, a
sha256 chain, about 12-14 us per line), each command writing to /dev/null:

* a plain Python loop over the lines, in one process (the floor for `upper`);
* `inorder map line_transforms:FUNC FILE` at its defaults (2 workers on this machine);
* GNU `parallel -k` calling a Python one-liner per line, the usual way to use it, timed
  on the first 500 lines (a Python start-up per line makes the whole file take hours);
* GNU `parallel -k --pipe`, one Python one-liner per 1 MB block: parallel at its best.

Every command's output is checked against the plain loop's first (same bytes). Medians
of 3 runs (1 for the per-line parallel runs).

Then one long line (``--long-line-mib``, 50 by default) through ``upper``: the plain
loop and ``inorder map``, with the time and the peak memory of each command (the
largest process it ran): reading must be linear in the line's length.

    python -m benchmarks cli [--lines 1000000] [--runs 3] [--long-line-mib 50]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from workloads import fresh_process_env

HERE = Path(__file__).resolve().parent
PYTHON = sys.executable
PER_LINE_SAMPLE = 500

LOOP = (
    "import sys; from line_transforms import {fn} as f; "
    "sys.stdout.writelines(f(line.rstrip('\\n')) + '\\n' for line in sys.stdin)"
)
ONE_LINER = (
    "import sys; sys.path.insert(0, {here!r}); "
    "from line_transforms import {fn}; print({fn}(sys.argv[1]))"
)


def commands(fn: str, data: Path, sample: Path) -> dict[str, tuple[str, Path]]:
    """name -> (shell command writing to stdout, the input it reads)."""
    loop = LOOP.format(fn=fn)
    one_liner = ONE_LINER.format(here=str(HERE), fn=fn)
    return {
        "plain Python loop": (f"{PYTHON} -c {_quote(loop)} < {data}", data),
        "inorder map": (f"{PYTHON} -m inorder map line_transforms:{fn} {data}", data),
        "parallel -k --pipe (1 MB blocks)": (
            f"parallel -q -k --pipe --block 1M {PYTHON} -c {_quote(loop)} < {data}",
            data,
        ),
        f"parallel -k, one Python per line (first {PER_LINE_SAMPLE} lines)": (
            f"parallel -q -k {PYTHON} -c {_quote(one_liner)} :::: {sample}",
            sample,
        ),
    }


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def run(command: str, output: str = "/dev/null") -> float:
    started = time.perf_counter()
    env = fresh_process_env(PYTHONPATH=str(HERE))
    subprocess.run(f"{command} > {output}", shell=True, check=True, cwd=HERE, env=env)
    return time.perf_counter() - started


MEASURE = (
    "import resource, subprocess, sys, time; started = time.perf_counter(); "
    "subprocess.run(sys.argv[1], shell=True, check=True); "
    "print(time.perf_counter() - started, "
    "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def run_measured(command: str) -> tuple[float, float]:
    """Seconds, and the peak RSS in MiB of the largest process ``command`` ran."""
    env = fresh_process_env(PYTHONPATH=str(HERE))
    done = subprocess.run(
        [PYTHON, "-c", MEASURE, f"{command} > /dev/null"],
        check=True,
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds, kib = done.stdout.split()
    return float(seconds), int(kib) / 1024


def long_line(workdir: Path, mib: int, runs: int) -> None:
    data = workdir / "long-line.txt"
    with data.open("w") as f:
        for _ in range(mib):
            f.write("x" * (1 << 20))
        f.write("\n")
    print(f"\none line of {mib} MiB, upper:\n")
    print("| command | seconds | peak memory (MiB) |")
    print("| --- | --- | --- |")
    for name, (command, _) in commands("upper", data, data).items():
        if name not in ("plain Python loop", "inorder map"):
            continue
        measured = [run_measured(command) for _ in range(runs)]
        seconds = statistics.median(m[0] for m in measured)
        peak = statistics.median(m[1] for m in measured)
        print(f"| {name} | {seconds:.2f} | {peak:.0f} |")


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--long-line-mib", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("parallel") is None:
        sys.exit("GNU parallel is not installed (Debian: apt install parallel)")
    workdir = Path(tempfile.mkdtemp(prefix="inorder-cli-bench-"))
    data = workdir / "lines.txt"
    with data.open("w") as f:
        for i in range(args.lines):
            f.write(f"line {i:07} of the benchmark input, quick brown fox {i % 97}\n")
    sample = workdir / "sample.txt"
    with data.open() as source, sample.open("w") as target:
        for _ in range(PER_LINE_SAMPLE):
            target.write(source.readline())
    version = subprocess.run(
        ["parallel", "--version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    print(
        f"{args.lines:,} lines of {data.stat().st_size / args.lines:.0f} bytes; Python "
        f"{platform.python_version()}; {os.cpu_count()} CPUs; {version}; medians of {args.runs}"
    )
    for fn in ("upper", "heavy"):
        print(f"\n{fn}:\n")
        print("| command | lines/s | vs parallel -k per line | vs plain loop |")
        print("| --- | --- | --- | --- |")
        rates: dict[str, float] = {}
        for name, (command, source) in commands(fn, data, sample).items():
            lines = PER_LINE_SAMPLE if source == sample else args.lines
            reference = workdir / f"{fn}-reference.txt"
            checked = workdir / f"{fn}-check.txt"
            if name == "plain Python loop":
                run(command, str(reference))
            else:
                run(command, str(checked))
                expected = Path(reference).read_bytes()
                got = checked.read_bytes()
                if source == sample:
                    expected = b"".join(expected.splitlines(keepends=True)[:PER_LINE_SAMPLE])
                if got != expected:
                    sys.exit(f"{name}: output differs from the plain loop's")
            runs = 1 if source == sample else args.runs
            rates[name] = lines / statistics.median(run(command) for _ in range(runs))
        per_line = rates[f"parallel -k, one Python per line (first {PER_LINE_SAMPLE} lines)"]
        loop = rates["plain Python loop"]
        for name, rate in rates.items():
            print(f"| {name} | {rate:,.0f} | {rate / per_line:,.1f}x | {rate / loop:.2f}x |")
    long_line(workdir, args.long_line_mib, args.runs)
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
