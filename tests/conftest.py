"""Shared fixtures: every async test runs on asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import hypothesis.core
import pytest
from hypothesis import HealthCheck, settings

from .helpers import LOOPS

# Property tests drive real event loops (and sometimes processes): no deadline, and
# function-scoped fixtures are fine because every example is self-contained.
settings.register_profile(
    "inorder",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("inorder")


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # Every run draws its examples from one seed, printed in the header and again after
    # failures, so a failure in CI replays with `pytest --hypothesis-seed=N`.
    if hypothesis.core.global_force_seed is None:
        hypothesis.core.global_force_seed = random.getrandbits(32)


def _seed_line() -> str:
    seed = hypothesis.core.global_force_seed
    return f"hypothesis seed: {seed} (replay: python -m pytest --hypothesis-seed={seed})"


def pytest_report_header() -> str:
    return _seed_line()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: Any) -> None:
    if terminalreporter.stats.get("failed") or terminalreporter.stats.get("error"):
        terminalreporter.write_line(_seed_line())


BACKENDS: list[Any] = [
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("trio", {}), id="trio"),
]
if sys.platform != "win32":
    BACKENDS.insert(1, pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture(params=LOOPS)
def loop(request: pytest.FixtureRequest) -> str:
    """The event loop a child script runs on (``helpers.run_arguments``)."""
    return str(request.param)


@pytest.fixture(params=["process", "thread", "borrowed"])
def executor(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The ``executor`` option: inorder's own processes, threads, or a borrowed
    ``concurrent.futures.ProcessPoolExecutor`` (used by the pipeline, shut down here)."""
    if request.param != "borrowed":
        yield request.param
        return
    context = multiprocessing.get_context("forkserver" if sys.platform == "linux" else "spawn")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as borrowed:
        yield borrowed


@pytest.fixture(autouse=True, scope="session")
def _bytecode_for_workers() -> None:
    # Worker processes re-import inorder and the test helpers; without bytecode caching
    # every worker start recompiles them, which makes it 3-6x slower.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_redis(client: Any, server: subprocess.Popen[bytes]) -> None:
    """Return once the redis-server ``server`` answers ``client`` (20 s at most; it may
    be loading its append-only file)."""
    import redis

    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            return
        except (redis.ConnectionError, redis.BusyLoadingError):
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.02)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of the test session's own, on a free port of 127.0.0.1 (Debian's
    package: `make test` installs it); its URL."""
    import redis

    server = shutil.which("redis-server")
    assert server, (
        "redis-server is missing: `make test` installs it (apt-get install redis-server)"
    )
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    wait_for_redis(client, process)
    client.close()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(20)
