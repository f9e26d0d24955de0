"""The tests' own plumbing: child scripts run on the event loop a test asks for."""

from __future__ import annotations

import subprocess
import sys

from .helpers import run_arguments

SCRIPT = """
import asyncio, json, sys
import anyio, sniffio

async def main():
    library = sniffio.current_async_library()
    loop = type(asyncio.get_running_loop()).__module__ if library == "asyncio" else None
    print(library, loop)

anyio.run(main, **json.loads(sys.argv[1]))
"""


def test_a_child_script_runs_on_the_loop_asked_for(loop: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, run_arguments(loop)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    library, module = done.stdout.split()
    assert library == ("trio" if loop == "trio" else "asyncio")
    assert (module == "uvloop") is (loop == "uvloop")
