"""What workers log reaches the parent's logging; what they print stays whole lines."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from inorder import OrderedPipeline

from . import workloads
from .helpers import run_arguments

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _forwarded(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("inorder.worker")]


async def test_worker_log_records_arrive_tagged_with_pid_and_sequence_number(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        await pipe.put(workloads.square, 1)  # seq 0 logs nothing
        for x in (10, 20, 30):
            await pipe.put(workloads.log_and_return, x)
        pipe.close()
        assert [r async for r in pipe] == [1, 10, 20, 30]
    records = _forwarded(caplog)
    # WARNING and above by default (the level of the parent's inorder.worker logger).
    assert sorted(r.getMessage() for r in records) == [f"working on {x}" for x in (10, 20, 30)]
    for record in records:
        assert record.name == "inorder.worker.tests.workloads"
        assert record.levelno == logging.WARNING
        assert record.worker_pid == record.process  # type: ignore[attr-defined]
        assert record.worker_pid != __import__("os").getpid()  # type: ignore[attr-defined]
    seqs = {r.getMessage(): r.item_seq for r in records}  # type: ignore[attr-defined]
    assert seqs == {"working on 10": 1, "working on 20": 2, "working on 30": 3}


async def test_worker_logs_follow_the_level_of_the_inorder_worker_logger(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="inorder.worker")
    async with OrderedPipeline(workers=1) as pipe:
        assert [r async for r in pipe.map(workloads.log_and_return, [5])] == [5]
    messages = sorted(r.getMessage() for r in _forwarded(caplog))
    assert messages == ["info about 5", "working on 5"]


async def test_worker_log_records_in_a_batch_carry_each_items_own_number(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with OrderedPipeline(workers=1, batch=50) as pipe:
        assert [r async for r in pipe.map(workloads.log_and_return, range(50))] == list(range(50))
    records = _forwarded(caplog)
    assert {r.getMessage(): r.item_seq for r in records} == {  # type: ignore[attr-defined]
        f"working on {x}": x for x in range(50)
    }


PRINTER = """
import json, sys
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

async def main():
    async with inorder.OrderedPipeline(workers=2, batch=1) as pipe:
        async for _ in pipe.map(workloads.print_lines, range(8), [300] * 8, [{width}] * 8):
            pass

if __name__ == "__main__":
    anyio.run(main, **json.loads(sys.argv[1]))
"""


@pytest.mark.parametrize("width", [80, 3000])
def test_lines_printed_by_different_workers_never_interleave(
    tmp_path: Path, width: int, loop: str
) -> None:
    script = tmp_path / "printer.py"
    script.write_text(textwrap.dedent(PRINTER.format(root=str(ROOT), width=width)))
    done = subprocess.run(
        [sys.executable, str(script), run_arguments(loop)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 8 * 300
    whole = re.compile(rf"<\d:\d+:x{{{width}}}>")
    assert [line for line in lines if not whole.fullmatch(line)] == []
