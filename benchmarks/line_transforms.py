"""The per-line functions benchmarks/cli.py runs (importable: workers load them by name)."""

from __future__ import annotations

import hashlib

# sha256 rounds per line in `heavy`: about 12-14 us per line on this machine, reading and
# writing included (the plain loop of benchmarks/cli.py: 71-83k lines/s).
HEAVY_ROUNDS = 40


def upper(line: str) -> str:
    """The cheap transform: reading and writing dominate."""
    return line.upper()


def heavy(line: str) -> str:
    """The CPU-heavy transform: a hash chain over the line."""
    digest = line.encode()
    for _ in range(HEAVY_ROUNDS):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]
