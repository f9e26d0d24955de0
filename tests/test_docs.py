"""The docs' examples are programs: run each one and compare with the output shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
DOCS = [
    ROOT / "README.md",
    *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts),
]
EXAMPLE = re.compile(r"```python\n(.*?)```\n(?:\nOutput:\n\n```text\n(.*?)```)?", re.S)


def examples() -> list[object]:
    found = []
    for doc in DOCS:
        for number, match in enumerate(EXAMPLE.finditer(doc.read_text()), start=1):
            found.append(pytest.param(match[1], match[2], id=f"{doc.name}-{number}"))
    return found


def normalise(text: str) -> str:
    text = re.sub(r"worker process \d+", "worker process PID", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


@pytest.mark.parametrize(("code", "expected"), examples())
def test_example_runs_and_prints_what_the_docs_show(
    code: str, expected: str | None, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    env = dict(os.environ)
    if "REDIS_URL" in code:  # the examples on Redis get a server of their own
        env["REDIS_URL"] = request.getfixturevalue("redis_url")
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    if expected is not None:
        assert normalise(done.stdout) == normalise(expected)


def test_every_readme_example_shows_its_output() -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.count("```python") == len([m for m in EXAMPLE.finditer(readme) if m[2]])
