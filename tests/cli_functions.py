"""Functions the command-line tests name as MODULE:FUNC (``tests.cli_functions:upper``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def upper(line: str) -> str:
    return line.upper()


def number(line: str) -> int:
    return int(line)


def square_json(item: Any) -> Any:
    return {"n": item["n"], "square": item["n"] ** 2}


def words(line: str) -> list[str]:
    return line.split()


def flaky(line: str) -> str:
    """Fails the first attempt at each line (counted in files under $FLAKY_DIR)."""
    marker = Path(os.environ["FLAKY_DIR"]) / line
    if not marker.exists():
        marker.touch()
        raise ConnectionError(f"first attempt at {line}")
    return line


def slow(line: str) -> str:
    if line == "hang":
        time.sleep(600)
    return line


def sleep_long(line: str) -> str:
    time.sleep(600)
    return line


def record(path: str) -> dict[str, Any]:
    """A spool task: log the file name to $SPOOL_LOG, sleep as the file says, return its size."""
    text = Path(path).read_text()
    with open(os.environ["SPOOL_LOG"], "a") as log:
        log.write(Path(path).name + "\n")
    if text.startswith("sleep"):
        time.sleep(float(text.split()[1]))
    if text.startswith("fail"):
        raise ValueError(f"cannot process {Path(path).name}")
    return {"name": Path(path).name, "size": len(text)}


not_callable = 42
