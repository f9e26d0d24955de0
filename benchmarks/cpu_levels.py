"""How this machine's CPU speed wobbles: the levels, and how long each one lasts.

    python benchmarks/cpu_levels.py [--seconds 20] [--every 0.005]

Times a fixed pure-Python loop every ``--every`` seconds for ``--seconds`` and sorts the
samples into a fast and a slow level, split halfway between the 10th and the 90th
percentile. Prints both levels, the share of samples in the slow one, and the longest
stretches spent in each. Run it alone: it measures the CPU it gets, and anything else
running changes that.

A measurement shorter than a stretch lands in one level, so a benchmark run of 100-150 ms
is fast or slow as a whole: run many of each and compare medians, alternating.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time

LOOP = 20_000


def one_sample() -> float:
    """Microseconds a fixed loop takes now."""
    started = time.perf_counter()
    total = 0
    for i in range(LOOP):
        total += i
    return (time.perf_counter() - started) * 1e6


def stretches(levels: list[str], level: str, period: float) -> list[float]:
    """The lengths, in ms, of the runs of consecutive samples at ``level``."""
    return sorted(
        len(list(run)) * period * 1e3 for key, run in itertools.groupby(levels) if key == level
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=0.005)
    options = parser.parse_args()
    samples: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < options.seconds:
        samples.append(one_sample())
        time.sleep(options.every)
    period = (time.perf_counter() - started) / len(samples)
    ordered = sorted(samples)
    low, high = ordered[len(ordered) // 10], ordered[9 * len(ordered) // 10]
    split = (low + high) / 2
    levels = ["slow" if s > split else "fast" for s in samples]
    fast = [s for s in samples if s <= split]
    slow = [s for s in samples if s > split]
    print(f"{len(samples)} samples, one every {period * 1e3:.1f} ms, of a {LOOP}-step loop:")
    for name, values in (("fast", fast), ("slow", slow)):
        if values:
            longest = stretches(levels, name, period)[-3:]
            print(
                f"  {name}: median {statistics.median(values):.0f} us, "
                f"{len(values) / len(samples):.0%} of samples, longest stretches "
                + ", ".join(f"{ms:.0f}" for ms in longest)
                + " ms"
            )
    if fast and slow:
        print(f"  slow/fast: {statistics.median(slow) / statistics.median(fast):.2f}x")


if __name__ == "__main__":
    main()
