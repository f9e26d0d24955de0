"""Test helpers: waiting for conditions, finding worker processes, running child scripts."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import threading
from collections.abc import Callable
from typing import Any

import anyio
import psutil


async def wait_until(condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll ``condition`` until it holds; ``limit`` seconds only guards against hangs.

    Tests observe the pipeline from outside, where no event signals these states, so
    polling is the honest way to wait for them. The pipeline itself never polls.
    """
    with anyio.fail_after(limit):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.005)


def _is_helper(process: psutil.Process) -> bool:
    """multiprocessing's own long-lived helpers (not workers) started for this session."""
    try:
        cmdline = " ".join(process.cmdline())
    except psutil.Error:
        return False
    forkserver = "multiprocessing.forkserver" in cmdline and process.ppid() == psutil.Process().pid
    return forkserver or "multiprocessing.resource_tracker" in cmdline


def worker_processes() -> set[int]:
    """Live descendant processes of this test process that are pool workers."""
    pids = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() == psutil.STATUS_ZOMBIE or _is_helper(child):
                continue
        except psutil.Error:
            continue
        pids.add(child.pid)
    return pids


def alive(pids: set[int]) -> set[int]:
    living = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.add(pid)
        except psutil.NoSuchProcess:
            pass
    return living


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("inorder-worker")]


def run_on_a_terminal(argv: list[str], **options: Any) -> tuple[int, str, str]:
    """Run ``argv`` with its stderr on a pseudo-terminal: (exit status, stdout, what was
    drawn on the terminal with its control sequences taken out)."""
    controller, terminal = pty.openpty()
    try:
        done = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=60, **options
        )
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
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", drawn.decode(errors="replace"))
    return done.returncode, done.stdout, text


# Child scripts end with ``anyio.run(main, **json.loads(sys.argv[1]))`` and are given
# ``run_arguments(loop)``, so that they run on the event loop the test chose.
LOOPS = ["asyncio", "uvloop", "trio"]


def run_arguments(loop: str) -> str:
    """The keyword arguments of ``anyio.run()`` that run on ``loop``, as JSON."""
    if loop == "trio":
        return json.dumps({"backend": "trio"})
    return json.dumps({"backend": "asyncio", "backend_options": {"use_uvloop": loop == "uvloop"}})


def loop_of(anyio_backend: Any) -> str:
    """The loop an async test runs on (its ``anyio_backend``), by the name LOOPS gives it."""
    name, options = anyio_backend
    return "uvloop" if options.get("use_uvloop") else str(name)
