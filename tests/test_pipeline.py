"""OrderedPipeline behaviour, on every event loop and with processes and threads."""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import inorder
from inorder import OrderedPipeline, PipelineClosedError, RemoteTraceback

from . import workloads
from .helpers import wait_until

pytestmark = pytest.mark.anyio


async def collect(pipe: OrderedPipeline) -> list[Any]:
    return [result async for result in pipe]


async def test_results_come_back_in_submission_order(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=8, executor=executor) as pipe:

        async def produce() -> None:
            for i in range(40):
                # Later items finish first: item i sleeps longer the smaller i is.
                await pipe.put(workloads.sleep_then_return, i, (40 - i) * 0.0005)
            pipe.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            results = await collect(pipe)
    assert results == list(range(40))


async def test_put_returns_sequence_numbers_in_acceptance_order(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        seqs = [await pipe.put(workloads.square, i) for i in range(5)]
        seqs.append(await pipe.put("marker"))
        pipe.close()
        assert seqs == [0, 1, 2, 3, 4, 5]
        assert await collect(pipe) == [0, 1, 4, 9, 16, "marker"]


async def test_concurrent_producers_are_served_first_come_first_served(executor: Any) -> None:
    """With the window full, blocked producers are admitted in the order they arrived."""
    async with OrderedPipeline(workers=2, window=1, executor=executor) as pipe:
        assert await pipe.put("first") == 0
        order: list[tuple[str, int]] = []

        async def producer(name: str) -> None:
            order.append((name, await pipe.put(name)))

        async with anyio.create_task_group() as tg:
            for queued, name in enumerate("abcde", start=1):
                tg.start_soon(producer, name)
                # Let each producer queue up before the next one arrives.
                await wait_until(lambda n=queued: pipe.statistics().producers_waiting == n)  # type: ignore[misc]
            results = [await anext(pipe) for _ in range(6)]
        assert results == ["first", *"abcde"]
        assert order == [(name, i) for i, name in enumerate("abcde", start=1)]


async def test_markers_keep_their_place_without_visiting_a_worker(executor: Any) -> None:
    class BatchDone(int):
        pass

    marker = BatchDone(3)
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        for batch in range(2):
            for _ in range(3):
                await pipe.put(workloads.pid_of_worker)
            await pipe.put(marker if batch == 0 else None)
        pipe.close()
        results = await collect(pipe)
    assert results[3] is marker  # the very object: it was never pickled
    assert results[7] is None
    assert all(isinstance(r, int) and not isinstance(r, BatchDone) for r in results[:3])


async def test_non_callable_with_arguments_is_a_type_error(executor: Any) -> None:
    async with OrderedPipeline(workers=1, executor=executor) as pipe:
        with pytest.raises(TypeError, match=r"non-callable int \(42\) with 1 positional"):
            await pipe.put(42, "extra")
        with pytest.raises(TypeError, match="1 keyword"):
            await pipe.put("text", key=1)
        assert pipe.statistics().accepted == 0


async def test_lambdas_and_closures_run_in_workers(executor: Any) -> None:
    offset = 100

    def add_offset(x: int) -> int:  # a closure, defined inside the test
        return x + offset

    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        await pipe.put(lambda x: x * 3, 5)
        await pipe.put(add_offset, 1)
        await pipe.put(workloads.add, 2, y=3)
        pipe.close()
        assert await collect(pipe) == [15, 101, 5]


async def test_a_function_is_serialised_once_not_per_item(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        calls = 0
        import cloudpickle

        original_dumps = cloudpickle.dumps

        def counting_dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
            nonlocal calls
            if callable(obj):
                calls += 1
            return original_dumps(obj, *args, **kwargs)

        cloudpickle.dumps = counting_dumps
        try:
            fn = lambda x: x + 1  # noqa: E731 - a lambda goes by value
            for i in range(20):
                await pipe.put(fn, i)
        finally:
            cloudpickle.dumps = original_dumps
        pipe.close()
        assert await collect(pipe) == list(range(1, 21))
    assert calls == 1


async def test_a_bound_method_is_serialised_once_per_instance(anyio_backend: Any) -> None:
    # put(obj.method, x) makes a new bound method at every call: equal ones (same
    # instance, same function) share one cache entry, and the instance's state is the one
    # it had when its method was first sent.
    import cloudpickle

    pickled: list[Any] = []
    original_dumps = cloudpickle.dumps

    def recording_dumps(obj: Any, *args: Any, **kwargs: Any) -> bytes:
        if callable(obj):
            pickled.append(obj)
        return original_dumps(obj, *args, **kwargs)

    double, triple = workloads.Scale(2), workloads.Scale(3)
    async with OrderedPipeline(workers=2) as pipe:
        cloudpickle.dumps = recording_dumps
        try:
            for i in range(20):
                await pipe.put(double.apply, i)
                await pipe.put(triple.apply, i)
            double.factor = 5  # too late: its method was sent with factor 2
            await pipe.put(double.apply, 100)
        finally:
            cloudpickle.dumps = original_dumps
        pipe.close()
        results = await collect(pipe)
    assert results == [f * i for i in range(20) for f in (2, 3)] + [200]
    assert pickled == [double.apply, triple.apply]


async def test_unpicklable_argument_fails_at_put_and_pipeline_stays_usable(
    anyio_backend: Any,
) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        await pipe.put(workloads.square, 2)
        with pytest.raises(TypeError, match=r"argument 1 to tests\.workloads\.add, a lock"):
            await pipe.put(workloads.add, 1, threading.Lock())
        with pytest.raises(TypeError, match=r"keyword argument 'y'.*a generator"):
            await pipe.put(workloads.add, 1, y=(i for i in range(3)))
        await pipe.put(workloads.square, 3)
        pipe.close()
        assert await collect(pipe) == [4, 9]
        assert pipe.statistics().accepted == 2


async def test_threads_take_unpicklable_arguments_as_they_are(anyio_backend: Any) -> None:
    lock = threading.Lock()
    async with OrderedPipeline(workers=2, executor="thread") as pipe:
        await pipe.put(lambda held: held is lock, lock)
        pipe.close()
        assert await collect(pipe) == [True]


async def test_error_keeps_its_type_with_worker_traceback_and_note(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        for i in range(5):
            await pipe.put(workloads.fail_if, i, {2})
        pipe.close()
        assert [await anext(pipe), await anext(pipe)] == [0, 1]
        with pytest.raises(ValueError, match="item 2 is bad") as caught:
            await anext(pipe)
        error = caught.value
        assert "inorder: item 2 failed in tests.workloads.fail_if" in error.__notes__[0]
        if executor != "thread":  # a worker process: its traceback as text
            assert "worker process" in error.__notes__[0]
            assert isinstance(error.__cause__, RemoteTraceback)
            assert 'in fail_if\n    raise ValueError(f"item {x} is bad")' in str(error.__cause__)
        else:  # a thread keeps the live traceback
            assert error.__traceback__ is not None
        # The consumer may catch the error and keep iterating.
        assert await collect(pipe) == [3, 4]
        stats = pipe.statistics()
        assert (stats.failed, stats.yielded, stats.skipped) == (1, 5, 0)


async def test_custom_exception_type_survives_the_trip(executor: Any) -> None:
    async with OrderedPipeline(workers=1, executor=executor) as pipe:
        await pipe.put(workloads.raise_custom, 7)
        pipe.close()
        with pytest.raises(workloads.CustomError) as caught:
            await collect(pipe)
    assert caught.value.code == 7


async def test_on_error_return_yields_the_exception_in_place(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor, on_error="return") as pipe:
        for i in range(4):
            await pipe.put(workloads.fail_if, i, {0, 3})
        pipe.close()
        results = await collect(pipe)
    assert [type(r) for r in results] == [ValueError, int, int, ValueError]
    assert results[1:3] == [1, 2]
    assert "inorder: item 3 failed" in results[3].__notes__[0]


async def test_on_error_skip_drops_and_logs(
    executor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="inorder")
    async with OrderedPipeline(workers=2, executor=executor, on_error="skip") as pipe:
        for i in range(5):
            await pipe.put(workloads.fail_if, i, {1, 2})
        pipe.close()
        assert await collect(pipe) == [0, 3, 4]
        stats = pipe.statistics()
    assert (stats.failed, stats.skipped, stats.yielded, stats.accepted) == (2, 2, 3, 5)
    records = [r for r in caplog.records if r.name == "inorder"]
    assert [r.getMessage() for r in records] == [
        "item 1 failed in tests.workloads.fail_if and was skipped (on_error='skip')",
        "item 2 failed in tests.workloads.fail_if and was skipped (on_error='skip')",
    ]
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)


async def test_system_exit_in_an_item_does_not_end_the_parent(executor: Any) -> None:
    async with OrderedPipeline(workers=1, executor=executor) as pipe:
        await pipe.put(workloads.exit_item, 3)
        await pipe.put(workloads.square, 3)
        pipe.close()
        with pytest.raises(RuntimeError, match=r"item 0 raised SystemExit\(3\)") as caught:
            await anext(pipe)
        assert isinstance(caught.value.__cause__, SystemExit)
        assert await collect(pipe) == [9]


@pytest.mark.parametrize("batch", [1, 4])
async def test_unpicklable_result_and_exception_fail_at_their_position(
    anyio_backend: Any, batch: int
) -> None:
    async with OrderedPipeline(workers=2, on_error="return", batch=batch) as pipe:
        await pipe.put(workloads.square, 1)
        await pipe.put(workloads.returns_unpicklable, None)
        await pipe.put(workloads.raise_unpicklable_error, None)
        await pipe.put(workloads.square, 2)
        pipe.close()
        results = await collect(pipe)
    assert results[0] == 1
    assert results[3] == 4
    assert isinstance(results[1], TypeError)
    assert "the result, a Unpicklable, could not be pickled" in str(results[1])
    assert (
        "inorder: item 1 failed in tests.workloads.returns_unpicklable"
        in (results[1].__notes__[0])
    )
    assert isinstance(results[2], TypeError)
    assert "raised RuntimeError: holds a lock" in str(results[2])
    assert "raise error" in str(results[2].__cause__)  # the worker traceback survived


async def test_a_result_only_cloudpickle_can_send_arrives_by_value(anyio_backend: Any) -> None:
    # Workers import cloudpickle only for such a result (see the next test).
    async with OrderedPipeline(workers=1) as pipe:
        await pipe.put(workloads.returns_adder, 10)
        adder = await anext(pipe)
    assert adder(5) == 15


async def test_workers_import_cloudpickle_only_when_a_result_needs_it(
    anyio_backend: Any,
) -> None:
    # It costs a starting worker 11-14 ms. The functions here travel by reference, so
    # only the closure returned by returns_adder needs it.
    async with OrderedPipeline(workers=1) as pipe:
        await pipe.put(workloads.imported, "cloudpickle")
        await pipe.put(workloads.returns_adder, 1)
        await pipe.put(workloads.imported, "cloudpickle")
        pipe.close()
        before, _, after = await collect(pipe)
    assert (before, after) == (False, True)


async def test_put_after_close_raises_pipeline_closed(executor: Any) -> None:
    async with OrderedPipeline(workers=1, window=8, executor=executor) as pipe:
        # The one worker's dispatch slots fill up: the last items are queued, which is
        # when put() takes its fast path for the same function. Closing must end it too.
        for i in range(4):
            await pipe.put(workloads.square, i)
        pipe.close()
        pipe.close()  # idempotent
        with pytest.raises(PipelineClosedError, match=r"closed with close\(\)"):
            await pipe.put(workloads.square, 5)
        with pytest.raises(PipelineClosedError):
            await pipe.put("marker")
        assert await collect(pipe) == [0, 1, 4, 9]
        assert await collect(pipe) == []  # exhausted stays exhausted


async def test_put_after_aclose_raises_pipeline_closed(executor: Any) -> None:
    async with OrderedPipeline(workers=1, window=8, executor=executor) as pipe:
        for i in range(4):  # the last ones queued, as above
            await pipe.put(workloads.square, i)
        await pipe.aclose()
        with pytest.raises(PipelineClosedError):
            await pipe.put(workloads.square, 5)


@pytest.mark.parametrize("window", ["auto", 16])
async def test_put_while_map_feeds_keeps_each_item_at_its_number(
    executor: Any, window: int | str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    spec = f"{gate}|1"
    more = anyio.Event()

    async def numbers() -> Any:
        for i in range(3):
            yield i
        await more.wait()
        yield 3

    async with OrderedPipeline(workers=1, window=window, executor=executor) as pipe:
        gate.touch()
        assert await pipe.put(workloads.bytes_after_file, spec) == 0
        assert await anext(pipe) == b"\0"  # measured: put() may take its fast path
        gate.unlink()
        # The worker holds two of these (its dispatch slots), two stay queued.
        put_seqs = [await pipe.put(workloads.bytes_after_file, spec) for _ in range(4)]
        pipe.map(workloads.identity, numbers())
        await wait_until(lambda: pipe.statistics().accepted == 8)  # the feeder took 3
        put_seqs.append(await pipe.put(workloads.bytes_after_file, spec))
        more.set()
        gate.touch()
        with anyio.fail_after(20):  # an item filed under the wrong number never comes
            results = await collect(pipe)
    assert put_seqs == [1, 2, 3, 4, 8]
    assert results == [b"\0"] * 4 + [0, 1, 2, b"\0", 3]


async def test_close_refuses_producers_waiting_for_room(executor: Any) -> None:
    async with OrderedPipeline(workers=1, window=1, executor=executor) as pipe:
        await pipe.put("only")
        refused = anyio.Event()

        async def blocked_producer() -> None:
            with pytest.raises(PipelineClosedError):
                await pipe.put("never")
            refused.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_producer)
            await wait_until(lambda: pipe.statistics().producers_waiting == 1)
            pipe.close()
            await refused.wait()
        assert await collect(pipe) == ["only"]


async def test_unordered_yields_in_completion_order(executor: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with OrderedPipeline(workers=2, executor=executor, ordered=False) as pipe:
        await pipe.put(workloads.wait_for_file, 0, str(gate))  # held until we open the gate
        for i in range(1, 6):
            await pipe.put(workloads.square, i)
        pipe.close()
        first = [await anext(pipe) for _ in range(5)]
        gate.touch()
        rest = await collect(pipe)
    assert sorted(first) == [1, 4, 9, 16, 25]
    assert rest == [0]


async def test_ordered_stream_waits_for_a_slow_head_only(executor: Any, tmp_path: Path) -> None:
    """Items behind a slow head still run and finish: only yielding waits for the head."""
    gate = tmp_path / "gate"
    async with OrderedPipeline(workers=2, window=6, executor=executor) as pipe:
        await pipe.put(workloads.wait_for_file, 0, str(gate))
        for i in range(1, 6):
            await pipe.put(workloads.square, i)
        await wait_until(lambda: pipe.statistics().buffered == 5)
        stats = pipe.statistics()
        assert (stats.in_flight, stats.buffered, stats.yielded) == (1, 5, 0)
        gate.touch()
        pipe.close()
        assert await collect(pipe) == [0, 1, 4, 9, 16, 25]


async def test_backpressure_window_plus_one_put_waits_for_consumption(executor: Any) -> None:
    window = 4
    async with OrderedPipeline(workers=2, window=window, executor=executor) as pipe:
        for i in range(window):
            await pipe.put(workloads.square, i)
        admitted = anyio.Event()

        async def one_more() -> None:
            await pipe.put(workloads.square, window)
            admitted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(one_more)
            # Every accepted item finishes and waits in the buffer; the window is full.
            await wait_until(lambda: pipe.statistics().buffered == window)
            await wait_until(lambda: pipe.statistics().producers_waiting == 1)
            assert not admitted.is_set()
            assert pipe.statistics().accepted == window
            assert await anext(pipe) == 0
            await admitted.wait()
        pipe.close()
        assert await collect(pipe) == [1, 4, 9, 16]


async def test_put_nowait_takes_what_fits_and_refuses_the_rest_at_once(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=3, executor=executor) as pipe:
        assert pipe.put_nowait(workloads.square, 2) == 0
        assert pipe.put_nowait("marker") == 1
        assert pipe.put_nowait(workloads.square, 3) == 2
        with pytest.raises(inorder.WindowFullError, match=r"window is full \(3 slots.*put\(\)"):
            pipe.put_nowait(workloads.square, 4)
        with pytest.raises(inorder.WindowFullError):
            pipe.put_nowait("another marker")
        assert pipe.statistics().accepted == 3  # nothing of the refused ones
        assert await anext(pipe) == 4
        assert pipe.put_nowait(workloads.square, 5) == 3  # the result taken freed a slot
        with pytest.raises(TypeError, match="put_nowait\\(\\) takes a callable"):
            pipe.put_nowait(42, "extra")
        pipe.close()
        with pytest.raises(PipelineClosedError, match="put_nowait"):
            pipe.put_nowait(workloads.square, 6)
        assert await collect(pipe) == ["marker", 9, 25]


async def test_put_nowait_does_not_jump_producers_waiting_for_room(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=1, executor=executor) as pipe:
        await pipe.put("first")
        async with anyio.create_task_group() as tg:
            tg.start_soon(pipe.put, "waiting")
            await wait_until(lambda: pipe.statistics().producers_waiting == 1)
            assert await anext(pipe) == "first"  # a slot frees: it goes to the waiter
            with pytest.raises(inorder.WindowFullError):
                pipe.put_nowait("late")
        pipe.close()
        assert await collect(pipe) == ["waiting"]


async def test_buffered_never_exceeds_window_with_a_paused_consumer(executor: Any) -> None:
    window = 5
    peak = 0
    async with OrderedPipeline(workers=2, window=window, executor=executor) as pipe:

        async def produce() -> None:
            for i in range(30):
                await pipe.put(workloads.square, i)
            pipe.close()

        results = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async for result in pipe:
                results.append(result)
                if len(results) % 7 == 0:  # pause, so the buffer fills up
                    await wait_until(lambda: pipe.statistics().in_flight == 0)
                stats = pipe.statistics()
                peak = max(peak, stats.buffered + stats.in_flight + stats.queued)
                assert stats.accepted - stats.yielded <= window
    assert results == [i * i for i in range(30)]
    assert peak <= window


class _Token:
    """An argument whose lifetime a weak reference can watch."""

    def __init__(self, number: int) -> None:
        self.number = number


def _number_slowly(token: _Token) -> int:
    time.sleep(0.001)
    return token.number


@pytest.mark.parametrize("feed", ["put", "map"])
async def test_arguments_are_let_go_once_dispatched_while_the_producer_stays_ahead(
    anyio_backend: Any, feed: str
) -> None:
    # The producer is always ahead of the workers, so queued items never run out: the
    # items already handed to a worker must not stay referenced by the queue meanwhile
    # (on an endless stream that would be memory growing without bound).
    window, count, workers = 8, 300, 2
    refs: list[weakref.ref[_Token]] = []

    def tokens() -> Any:
        for i in range(count):
            token = _Token(i)
            refs.append(weakref.ref(token))
            yield token

    peak = 0
    pipe = OrderedPipeline(workers=workers, window=window, batch=1, executor="thread")
    async with pipe, anyio.create_task_group() as tg:
        if feed == "map":
            pipe.map(_number_slowly, tokens())
        else:

            async def produce() -> None:
                for token in tokens():
                    await pipe.put(_number_slowly, token)
                pipe.close()

            tg.start_soon(produce)
        results = []
        async for result in pipe:
            results.append(result)
            peak = max(peak, sum(ref() is not None for ref in refs))
    assert results == list(range(count))
    # The window's items, the one the producer holds while it waits for room, and for a
    # moment each worker thread's last batch: the thread drops its call only after the
    # result it set has been handed over (seen on a loaded machine).
    assert peak <= window + 1 + workers


async def test_statistics_snapshot_is_frozen_and_adds_up(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=10, executor=executor) as pipe:
        for i in range(6):
            await pipe.put(workloads.square, i)
        await pipe.put("m")
        stats = pipe.statistics()
        assert stats.accepted == 7
        assert stats.workers == 2
        assert stats.window == 10
        assert (
            stats.queued + stats.in_flight + stats.buffered + stats.yielded + stats.skipped
            == stats.accepted
        )
        with pytest.raises(AttributeError):
            stats.accepted = 0  # type: ignore[misc]
        pipe.close()
        await collect(pipe)
        assert pipe.statistics().yielded == 7


# -- misuse ------------------------------------------------------------------------------


async def test_misuse_raises_runtime_error_with_one_clear_sentence(executor: Any) -> None:
    pipe = OrderedPipeline(workers=1, executor=executor)
    with pytest.raises(RuntimeError, match="not entered"):
        await pipe.put(workloads.square, 1)
    with pytest.raises(RuntimeError, match="inside 'async with"):
        await anext(pipe)
    async with pipe:
        with pytest.raises(RuntimeError, match="already entered"):
            await pipe.__aenter__()
    with pytest.raises(PipelineClosedError, match="shut down"):
        await pipe.put(workloads.square, 1)
    with pytest.raises(RuntimeError, match="shut down"):
        await anext(pipe)
    with pytest.raises(RuntimeError, match="already entered"):
        async with pipe:
            pass


async def test_two_concurrent_consumers_are_refused(executor: Any, tmp_path: Path) -> None:
    async with OrderedPipeline(workers=1, executor=executor) as pipe:
        await pipe.put(workloads.wait_for_file, 0, str(tmp_path / "gate"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(anext, pipe)
            await wait_until(lambda: pipe.statistics().consumer_waiting)
            with pytest.raises(RuntimeError, match="another task is already iterating"):
                await anext(pipe)
            (tmp_path / "gate").touch()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"workers": 0}, ValueError, "workers must be at least 1, got 0"),
        ({"workers": 2.0}, TypeError, "workers must be an int, got float 2.0"),
        ({"window": 0}, ValueError, "window must be at least 1, got 0"),
        ({"window": True}, TypeError, "window must be .auto. or an int, got bool True"),
        (
            {"executor": "gpu"},
            ValueError,
            "executor must be 'process', 'thread', an inorder.WorkerPool",
        ),
        ({"on_error": "ignore"}, ValueError, "on_error must be 'raise', 'return' or 'skip'"),
        ({"ordered": "yes"}, TypeError, "ordered must be True or False, got str 'yes'"),
        ({"batch": 0}, ValueError, "batch must be at least 1, got 0"),
        ({"batch": "big"}, TypeError, "batch must be 'auto' or an int, got str 'big'"),
        ({"retries": -1}, ValueError, "retries must be 0 or more, got -1"),
        ({"retry_on": "KeyError"}, TypeError, "retry_on must be an exception class"),
        ({"timeout": 0}, ValueError, "timeout must be a positive, finite number"),
        ({"initializer": 3}, TypeError, "initializer must be callable or None, got int"),
        ({"initargs": "ab"}, TypeError, "initargs must be a tuple of arguments"),
        ({"max_tasks_per_child": 0}, ValueError, "max_tasks_per_child must be at least 1"),
        ({"start_method": "fork"}, ValueError, "start_method='fork' is not offered"),
        ({"start_method": "vfork"}, ValueError, "start_method must be 'forkserver', 'spawn'"),
        ({"progress": 1}, TypeError, "progress must be True or False, got int 1"),
        (
            {"executor": "thread", "timeout": 1, "start_method": "spawn"},
            ValueError,
            r"timeout, start_method need\(s\) executor='process'",
        ),
    ],
)
def test_bad_options_fail_at_construction(options: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        inorder.Options(**options)
    with pytest.raises(error, match=message):
        OrderedPipeline(**options)
    with pytest.raises(error, match=message):
        inorder.map(workloads.square, [1], **options)


# -- map ---------------------------------------------------------------------------------


async def test_pipe_map_feeds_from_an_owned_task_and_closes(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=16, executor=executor) as pipe:
        results = await collect(pipe.map(workloads.square, range(100)))
        assert results == [i * i for i in range(100)]
        assert pipe.closed
        with pytest.raises(RuntimeError, match="already called"):
            pipe.map(workloads.square, range(3))


async def test_map_zips_sync_and_async_iterables_to_the_shortest(executor: Any) -> None:
    async def numbers(n: int) -> Any:
        for i in range(n):
            await anyio.lowlevel.checkpoint()
            yield i

    results = [
        r
        async for r in inorder.map(
            workloads.add, numbers(50), range(10, 30), workers=2, executor=executor
        )
    ]
    assert results == [i + 10 + i for i in range(20)]


async def test_map_raises_an_input_error_in_place_then_ends(executor: Any) -> None:
    def rows() -> Any:
        yield from range(3)
        raise OSError("disk on fire")

    stream = inorder.map(workloads.square, rows(), workers=2, executor=executor)
    assert [await anext(stream) for _ in range(3)] == [0, 1, 4]
    with pytest.raises(OSError, match="disk on fire") as caught:
        await anext(stream)
    assert "stopped reading its input after 3 item(s)" in caught.value.__notes__[0]
    assert [r async for r in stream] == []


async def test_map_item_with_unpicklable_arguments_fails_in_place(anyio_backend: Any) -> None:
    rows = [1, threading.Lock(), 3]
    results = [r async for r in inorder.map(workloads.square, rows, workers=2, on_error="return")]
    assert results[0] == 1
    assert results[2] == 9
    assert isinstance(results[1], TypeError)
    assert "argument 0 to tests.workloads.square, a lock" in str(results[1])


async def test_map_rejects_bad_arguments_before_starting() -> None:
    with pytest.raises(TypeError, match="needs a callable first"):
        inorder.map(3, [1])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="at least one iterable"):
        inorder.map(workloads.square)
    with pytest.raises(TypeError, match="argument 3 must be an iterable or an async iterable"):
        inorder.map(workloads.add, [1], 5)  # type: ignore[arg-type]


async def test_map_closes_the_generators_it_was_given(executor: Any) -> None:
    closed = []

    def rows() -> Any:
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    async with inorder.map(workloads.square, rows(), workers=1, window=4, executor=executor) as s:
        assert await anext(s) == 0
    assert closed == [True]


async def test_map_stream_is_scoped_and_reports_statistics(executor: Any) -> None:
    async with inorder.map(workloads.square, range(10), workers=2, executor=executor) as stream:
        assert [r async for r in stream] == [i * i for i in range(10)]
        assert stream.statistics().yielded == 10
    assert [r async for r in stream] == []


async def test_borrowed_executor_is_used_but_not_shut_down(anyio_backend: Any) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        async with OrderedPipeline(executor=pool) as pipe:
            assert pipe.statistics().workers == 2
            assert await collect(pipe.map(workloads.square, range(5))) == [0, 1, 4, 9, 16]
        assert pool.submit(workloads.square, 3).result() == 9


async def test_unordered_marker_waits_for_everything_put_before_it(
    executor: Any, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    async with OrderedPipeline(workers=2, executor=executor, ordered=False) as pipe:
        await pipe.put(workloads.wait_for_file, 0, str(gate))
        await pipe.put(workloads.square, 1)
        await pipe.put("done with 0 and 1")
        await pipe.put(workloads.square, 3)
        pipe.close()
        early = [await anext(pipe), await anext(pipe)]
        assert sorted(early) == [1, 9]  # item 3 may pass the marker, the marker waits
        gate.touch()
        assert await collect(pipe) == [0, "done with 0 and 1"]


async def test_a_function_is_unpickled_once_per_worker_process(anyio_backend: Any) -> None:
    counting = workloads.CountingCallable()
    async with OrderedPipeline(workers=2) as pipe:
        results = await collect(pipe.map(counting, range(50)))
    loads_per_worker: dict[int, set[int]] = {}
    for pid, loads in results:
        loads_per_worker.setdefault(pid, set()).add(loads)
    assert all(loads == {1} for loads in loads_per_worker.values()), loads_per_worker


# -- iteration ------------------------------------------------------------------------------


async def test_a_consumer_that_puts_what_it_takes_never_waits_on_itself(executor: Any) -> None:
    # A yielded item frees its slot, even though slots are counted in bulk: a consumer
    # that feeds results back (a crawler) must find room for them in a full window.
    async with OrderedPipeline(workers=2, window=2, executor=executor) as pipe:
        await pipe.put(workloads.square, 2)
        await pipe.put(workloads.square, 3)
        seen = []
        with anyio.fail_after(20):
            async for result in pipe:
                seen.append(result)
                if result < 1000:
                    await pipe.put(workloads.square, result)
                elif len(seen) == 6:
                    break
    assert seen == [4, 9, 16, 81, 256, 6561]


async def test_put_after_taking_a_full_window_with_anext_finds_room(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=8, executor=executor) as pipe:
        with anyio.fail_after(20):
            for round_ in range(3):
                for i in range(8):  # fills the window, nobody consumes meanwhile
                    await pipe.put(workloads.square, i)
                assert [await anext(pipe) for _ in range(8)] == [i * i for i in range(8)], round_


async def test_a_loop_left_early_goes_on_in_the_next_loop(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        pipe.map(workloads.square, range(50))
        first = []
        async for result in pipe:
            first.append(result)
            if len(first) == 10:
                break
        assert await anext(pipe) == 100  # anext() shares the loop's state
        rest = [r async for r in pipe]
    assert [*first, 100, *rest] == [i * i for i in range(50)]


async def test_iteration_goes_on_after_a_failure_is_raised(executor: Any) -> None:
    async with OrderedPipeline(workers=2, executor=executor) as pipe:
        pipe.map(workloads.fail_if, range(6), [frozenset({2})] * 6)
        seen: list[int] = []

        async def read_into_seen() -> None:
            async for result in pipe:
                seen.append(result)

        with pytest.raises(ValueError, match="2"):
            await read_into_seen()
        seen += [r async for r in pipe]
    assert seen == [0, 1, 3, 4, 5]


async def test_leaving_loops_early_leaves_no_unfinished_generator_behind(
    anyio_backend: Any,
) -> None:
    """trio warns (ResourceWarning) about async generators collected unfinished."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with OrderedPipeline(workers=1, executor="thread") as pipe:
            pipe.map(workloads.square, range(10))
            async for _ in pipe:
                break
        stream = inorder.map(workloads.square, range(10), workers=1, executor="thread")
        async with stream:
            async for _ in stream:
                break
        del pipe, stream
        gc.collect()
        # trio finalizes collected generators in a task of its own (and warns there):
        # once every task is blocked, it has run.
        await anyio.wait_all_tasks_blocked()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def test_statistics_count_each_item_of_a_batch_as_it_is_handed_out(
    anyio_backend: Any,
) -> None:
    async with OrderedPipeline(workers=1, batch=100, executor="thread") as pipe:
        pipe.map(workloads.square, range(100))
        await wait_until(lambda: pipe.statistics().buffered == 100)  # one batch, done
        handed = 0
        async for _ in pipe:
            handed += 1
            stats = pipe.statistics()
            assert (stats.yielded, stats.buffered) == (handed, 100 - handed)
            if handed == 40:
                break
        assert await anext(pipe) == 40 * 40
        assert pipe.statistics().yielded == 41


@pytest.mark.skipif(sys.platform != "linux", reason="the fork server is the Linux default")
async def test_workers_come_from_a_fork_server_and_inherit_none_of_the_parents_files(
    anyio_backend: Any,
) -> None:
    # Forked from this process, workers would share its open files (a client's socket in
    # a server would never close) and its state; the fork server started them clean.
    reader, writer = os.pipe()
    try:
        status = os.fstat(writer)
        async with OrderedPipeline(workers=2) as pipe:
            await pipe.put(workloads.parent_command_line)
            await pipe.put(workloads.inherited, writer, status.st_dev, status.st_ino)
            pipe.close()
            (parent, command_line), inherited = [r async for r in pipe]
    finally:
        os.close(reader)
        os.close(writer)
    assert parent != os.getpid()
    assert "multiprocessing.forkserver" in command_line
    assert inherited is False


# -- a producer that waits for ever ------------------------------------------------------


async def test_a_producer_stalled_with_no_consumer_gets_one_warning(
    anyio_backend: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from inorder import _pipeline

    monkeypatch.setattr(_pipeline, "STALL_WARNING_SECONDS", 0.2)

    def warnings_logged() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]

    with caplog.at_level(logging.WARNING, logger="inorder"):
        pipe = OrderedPipeline(workers=1, window=2, executor="thread")
        async with pipe, anyio.create_task_group() as tasks:

            async def produce() -> None:
                for i in range(6):
                    await pipe.put(workloads.square, i)  # the third waits: nobody takes
                pipe.close()

            tasks.start_soon(produce)
            await wait_until(lambda: bool(warnings_logged()))
            # The consumer the warning asks for: the stream goes on, and once the
            # producer waits again, no second warning.
            assert [r async for r in pipe] == [i * i for i in range(6)]
    (message,) = warnings_logged()
    assert "put() has waited 0.2 s for room in the window (2 items" in message
    assert "is a task iterating over the pipeline" in message


@pytest.mark.parametrize(
    ("delay", "calls", "expected"),
    [
        # A slow consumer: the producer always waits (75 items of 20 ms: 1.5 s).
        (0.5, [(workloads.sleep_then_return, i, 0.02) for i in range(75)], list(range(75))),
        # The window is full and no result is taken for longer than the delay, but the
        # consumer is there, waiting for a slow first item (1 s).
        (
            0.2,
            [(workloads.sleep_then_return, 0, 1.0)] + [(workloads.square, i) for i in range(1, 5)],
            [0, 1, 4, 9, 16],
        ),
    ],
    ids=["slow consumer", "slow first item"],
)
async def test_a_producer_waiting_on_a_consumer_that_is_there_gets_no_warning(
    anyio_backend: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    delay: float,
    calls: list[tuple[Any, ...]],
    expected: list[int],
) -> None:
    from inorder import _pipeline

    monkeypatch.setattr(_pipeline, "STALL_WARNING_SECONDS", delay)
    with caplog.at_level(logging.WARNING, logger="inorder"):
        pipe = OrderedPipeline(workers=1, window=2, executor="thread")
        async with pipe, anyio.create_task_group() as tasks:

            async def produce() -> None:
                for call in calls:
                    await pipe.put(*call)
                pipe.close()

            tasks.start_soon(produce)
            assert [r async for r in pipe] == expected
    assert [r for r in caplog.records if r.levelno == logging.WARNING] == []
