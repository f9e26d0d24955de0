"""Functions the command-line tests name as MODULE:FUNC (``tests.cli_functions:upper``)."""

from __future__ import annotations

import gzip
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
    """A spool task: log the file name to $SPOOL_LOG, then do what the file says: ``sleep
    S``; ``fail``; ``meet N``: wait until N logs beside $SPOOL_LOG have a line (20 s at
    most). Return the file's name and size."""
    text = Path(path).read_text()
    log_path = Path(os.environ["SPOOL_LOG"])
    with log_path.open("a", errors="surrogateescape") as log:  # a name may not be UTF-8
        log.write(Path(path).name + "\n")
    if text.startswith("sleep"):
        time.sleep(float(text.split()[1]))
    if text.startswith("meet"):
        logs = log_path.parent
        count = int(text.split()[1])
        _wait_for(lambda: sum(p.stat().st_size > 0 for p in logs.iterdir()) >= count, 20)
    if text.startswith("fail"):
        raise ValueError(f"cannot process {Path(path).name}")
    return {"name": Path(path).name, "size": len(text)}


not_callable = 42


def _wait_for(condition: Any, limit: float) -> bool:
    """Poll ``condition`` in a worker until it holds or ``limit`` seconds pass."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def meet(line: str) -> str:
    """Say which worker runs this line, once $MEET_COUNT workers are running lines at once
    (each leaves its pid in $MEET_DIR), or after 10 s."""
    folder = Path(os.environ["MEET_DIR"])
    (folder / str(os.getpid())).touch()
    _wait_for(lambda: len(os.listdir(folder)) >= int(os.environ["MEET_COUNT"]), 10)
    return str(os.getpid())


def probe(line: str) -> str:
    """Leave ``started-LINE`` in $PROBE_DIR; line 0 then waits for the line named by
    $PROBE_WAIT_FOR to start (at most $PROBE_SECONDS) and says whether it did and which
    lines had started then. Every line answers with its worker's pid."""
    folder = Path(os.environ["PROBE_DIR"])
    (folder / f"started-{line}").touch()
    if line != "0":
        return f"{line} {os.getpid()}"
    awaited = folder / f"started-{os.environ['PROBE_WAIT_FOR']}"
    seen = _wait_for(awaited.exists, float(os.environ["PROBE_SECONDS"]))
    started = sorted(int(p.name.split("-")[1]) for p in folder.glob("started-*"))
    return f"0 {os.getpid()} {'seen' if seen else 'not seen'} {started}"


def slow_behind_gate(line: str) -> str:
    """``slow`` waits for the file $GATE (at most 20 s); any other line returns at once."""
    if line == "slow":
        _wait_for(Path(os.environ["GATE"]).exists, 20)
    return line


def announce_then_sleep(line: str) -> str:
    """Leave a file named after the line in $STARTED_DIR, then sleep for ten minutes."""
    (Path(os.environ["STARTED_DIR"]) / line).touch()
    time.sleep(600)
    return line


def crash_on_boom(line: str) -> str:
    if line == "boom":
        os._exit(9)
    return line


def first_key(item: Any) -> str:
    return next(iter(item))


def as_float(line: str) -> float:
    return float(line)


def gzip_line(line: str) -> bytes:
    return gzip.compress(f"{line}\n".encode())


def length(line: str) -> int:
    return len(line)


def parent_pid(line: str) -> str:
    return str(os.getppid())
