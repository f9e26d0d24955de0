"""inorder.Options: one checked, frozen set of options for the pipeline, map, CLI and spool."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import anyio
import pytest

import inorder
from inorder import OrderedPipeline

from . import workloads


def test_defaults_are_resolved_and_round_trip() -> None:
    options = inorder.Options()
    assert options.workers >= 1
    assert (options.window, options.batch) == ("auto", "auto")
    assert (options.executor, options.on_error) == ("process", "raise")
    assert options.start_method is None
    assert inorder.Options(**options.as_kwargs()) == options


def test_workers_default_is_the_cpus_this_process_may_use() -> None:
    expected = len(os.sched_getaffinity(0))
    assert inorder.Options().workers == expected
    assert OrderedPipeline().options.workers == expected


def test_workers_default_follows_a_borrowed_executor() -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=5) as executor:
        assert inorder.Options(executor=executor).workers == 5


def test_options_are_frozen_and_replace_checks_again() -> None:
    options = inorder.Options(workers=2, timeout=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.workers = 3  # type: ignore[misc]
    changed = options.replace(window=8)
    assert (changed.workers, changed.timeout, changed.window) == (2, 3.0, 8)
    assert options.window == "auto"
    with pytest.raises(ValueError, match="timeout need\\(s\\) executor='process'"):
        options.replace(executor="thread")


def test_initargs_are_kept_as_a_tuple() -> None:
    assert inorder.Options(initargs=[1, 2]).initargs == (1, 2)


def test_a_pipeline_takes_options_or_keywords_not_both() -> None:
    options = inorder.Options(workers=1, window=4)
    assert OrderedPipeline(options).options is options
    with pytest.raises(TypeError, match=r"not both: pass options.replace\(window=...\)"):
        OrderedPipeline(options, window=8)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"takes an inorder\.Options, got dict"):
        OrderedPipeline({"workers": 1})  # type: ignore[arg-type]


def test_options_show_where_users_import_them() -> None:
    assert repr(inorder.Options(workers=1)).startswith("Options(workers=1, window='auto'")
    assert inorder.Options.__module__ == "inorder"


async def test_pipeline_runs_on_the_options_it_was_given(anyio_backend: Any) -> None:
    options = inorder.Options(workers=1, window=3, executor="thread")
    async with OrderedPipeline(options) as pipe:
        results = [r async for r in pipe.map(workloads.square, range(10))]
        assert pipe.statistics().window == 3
    assert results == [i * i for i in range(10)]


def _parent_pid_of_worker(start_method: str | None) -> int:
    async def main() -> int:
        async with OrderedPipeline(workers=1, start_method=start_method) as pipe:  # type: ignore[arg-type]
            await pipe.put(os.getppid)
            pipe.close()
            [ppid] = [r async for r in pipe]
            return int(ppid)

    return anyio.run(main)


def test_start_method_spawn_starts_workers_from_this_process() -> None:
    # spawn: each worker is this process's child; forkserver: the fork server's.
    assert _parent_pid_of_worker("spawn") == os.getpid()
    assert _parent_pid_of_worker("forkserver") != os.getpid()
    assert _parent_pid_of_worker(None) != os.getpid()
