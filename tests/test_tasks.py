"""_tasks: the task group a pipeline owns, and the one clock its timers run on."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

import anyio
import pytest

from inorder._eventloop import current_bridge
from inorder._tasks import Clock, OwnedTasks

from .helpers import wait_until

pytestmark = pytest.mark.anyio


async def test_a_timer_cancelled_in_time_never_calls(anyio_backend: Any) -> None:
    tasks = OwnedTasks(current_bridge())
    clock = Clock(tasks, current_bridge())
    calls: list[str] = []
    cancel = clock.call_later(0.01, lambda: calls.append("cancelled"))
    clock.call_later(0.02, lambda: calls.append("kept"))
    cancel()  # as a pipeline that stops while it holds a batch does
    await wait_until(lambda: bool(calls), limit=10)
    await wait_until(lambda: not tasks.running, limit=10)
    assert calls == ["kept"]
    await tasks.aclose()


async def test_timers_fire_in_deadline_order_whenever_they_were_set(anyio_backend: Any) -> None:
    bridge = current_bridge()
    tasks = OwnedTasks(bridge)
    clock = Clock(tasks, bridge)
    calls: list[str] = []
    clock.call_later(5.0, lambda: calls.append("late"))
    clock.call_later(0.0, lambda: calls.append("tick"))
    # Once "tick" is seen, the clock sleeps until the late timer: a timer set now must
    # wake it, also one set from a completion callback, outside any task, as the
    # pipeline sets them. Without the wake it would fire with "late", 5 s on.
    await wait_until(lambda: calls == ["tick"], limit=10)
    with concurrent.futures.ThreadPoolExecutor(1) as executor:
        bridge.submit(
            executor, int, (), lambda _: clock.call_later(0.0, lambda: calls.append("first"))
        )
        await wait_until(lambda: "first" in calls, limit=10)
    assert calls == ["tick", "first"]
    clock.call_later(0.04, lambda: calls.append("third"))
    clock.call_later(0.02, lambda: calls.append("second"))  # set later, due sooner
    await wait_until(lambda: len(calls) == 4, limit=10)
    assert calls == ["tick", "first", "second", "third"]
    await tasks.aclose()  # the 5 s timer never fires
    assert "late" not in calls
    assert not tasks.running


async def test_aclose_cancels_the_tasks_and_waits_for_them(anyio_backend: Any) -> None:
    tasks = OwnedTasks(current_bridge())
    ended: list[int] = []

    async def forever(n: int) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.sleep(0.01)  # cleanup that takes a moment
            ended.append(n)

    for n in range(3):
        tasks.start_soon(lambda n=n: forever(n))
    await wait_until(lambda: tasks.running, limit=10)
    await tasks.aclose()
    assert sorted(ended) == [0, 1, 2]
    assert not tasks.running
    tasks.start_soon(lambda: forever(9))  # after aclose: refused quietly
    assert not tasks.running


async def test_the_keeper_ends_with_its_last_task_and_comes_back(anyio_backend: Any) -> None:
    tasks = OwnedTasks(current_bridge())
    done = anyio.Event()

    async def quick() -> None:
        done.set()

    tasks.start_soon(quick)
    await done.wait()
    await wait_until(lambda: not tasks.running, limit=10)  # nothing left behind
    again = anyio.Event()

    async def second() -> None:
        again.set()

    tasks.start_soon(second)
    with anyio.fail_after(10):
        await again.wait()
    await tasks.aclose()


async def test_a_keeper_that_comes_and_goes_leaves_nothing_behind(anyio_backend: Any) -> None:
    # On a long stream the hold timer's task starts and ends the keeper again and again.
    tasks = OwnedTasks(current_bridge())
    for _ in range(50):
        done = anyio.Event()

        async def quick(done: anyio.Event = done) -> None:
            done.set()

        tasks.start_soon(quick)
        await done.wait()
        await wait_until(lambda: not tasks.running, limit=10)
    assert len(tasks._keepers) <= 2  # the ended ones are let go
    await tasks.aclose()


async def test_a_failing_task_is_logged_and_the_others_go_on(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = OwnedTasks(current_bridge())
    finished = anyio.Event()

    async def broken() -> None:
        raise ZeroDivisionError("a bug")

    async def slower() -> None:
        await anyio.sleep(0.05)
        finished.set()

    with caplog.at_level(logging.ERROR, logger="inorder"):
        tasks.start_soon(slower)
        tasks.start_soon(broken)
        with anyio.fail_after(10):
            await finished.wait()
    assert "a task of an inorder pipeline failed" in caplog.text
    await tasks.aclose()


async def test_closing_the_clock_cancels_every_timer(anyio_backend: Any) -> None:
    bridge = current_bridge()
    tasks = OwnedTasks(bridge)
    clock = Clock(tasks, bridge)
    calls: list[str] = []
    for delay in (0.0, 0.01, 0.02):
        clock.call_later(delay, lambda: calls.append("closed"))
    clock.close()
    clock.call_later(0.0, lambda: calls.append("after close"))
    witness = Clock(tasks, bridge)  # a timer set last, on another clock, fires after them
    witness.call_later(0.05, lambda: calls.append("witness"))
    await wait_until(lambda: bool(calls), limit=10)
    assert calls == ["witness"]
    await tasks.aclose()
