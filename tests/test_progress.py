"""The live progress line: drawn on a terminal, silent otherwise, clear when rich is missing."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from inorder import OrderedPipeline

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys, time
sys.path.insert(0, {root!r})
import anyio, inorder
from tests import workloads

async def main():
    async with inorder.OrderedPipeline(workers=2, progress=True) as pipe:
        results = [r async for r in pipe.map(workloads.sleep_then_return, range(20), [0.05] * 20)]
    print(len(results))

if __name__ == "__main__":
    anyio.run(main)
"""


def _run_script(tmp_path: Path, stderr: Any) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "progress.py"
    script.write_text(textwrap.dedent(SCRIPT.format(root=str(ROOT))))
    return subprocess.run(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=60
    )


def test_progress_is_drawn_on_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        done = _run_script(tmp_path, terminal)
        os.close(terminal)
        terminal = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    assert done.returncode == 0
    assert done.stdout == "20\n"
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))  # no styles
    assert "20 done" in text  # the final redraw shows every item
    assert "/s" in text
    assert "in flight" in text


def test_progress_is_silent_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    done = _run_script(tmp_path, subprocess.PIPE)
    assert done.returncode == 0
    assert (done.stdout, done.stderr) == ("20\n", "")


def test_progress_without_rich_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'inorder\[progress\]'"):
        OrderedPipeline(progress=True)


def test_progress_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="progress must be a bool"):
        OrderedPipeline(progress="yes")  # type: ignore[arg-type]
