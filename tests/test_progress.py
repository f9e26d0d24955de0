"""The live progress line: drawn on a terminal, silent otherwise, clear when rich is missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from inorder import OrderedPipeline

from .helpers import run_arguments, run_on_a_terminal

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys, time
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

async def main():
    async with inorder.OrderedPipeline(workers=2, progress=True) as pipe:
        results = [r async for r in pipe.map(workloads.sleep_then_return, range(20), [0.05] * 20)]
    print(len(results))

if __name__ == "__main__":
    anyio.run(main, **json.loads(sys.argv[1]))
"""


def _script(tmp_path: Path) -> str:
    script = tmp_path / "progress.py"
    script.write_text(textwrap.dedent(SCRIPT.format(root=str(ROOT))))
    return str(script)


def test_progress_is_drawn_on_a_terminal(tmp_path: Path, loop: str) -> None:
    status, out, drawn = run_on_a_terminal(
        [sys.executable, _script(tmp_path), run_arguments(loop)]
    )
    assert (status, out) == (0, "20\n")
    assert "20 done" in drawn  # the final redraw shows every item
    assert "/s" in drawn
    assert "in flight" in drawn


def test_progress_is_silent_when_stderr_is_not_a_terminal(tmp_path: Path, loop: str) -> None:
    done = subprocess.run(
        [sys.executable, _script(tmp_path), run_arguments(loop)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert (done.stdout, done.stderr) == ("20\n", "")


def test_progress_without_rich_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'inorder\[progress\]'"):
        OrderedPipeline(progress=True)


def test_progress_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="progress must be True or False"):
        OrderedPipeline(progress="yes")  # type: ignore[arg-type]
