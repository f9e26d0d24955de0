"""Shared fixtures: every async test runs on asyncio, asyncio+uvloop and trio."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from collections.abc import Iterator
from typing import Any

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
    # every worker start recompiles them (see FIELD-NOTES: start-up 3-6x slower).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
