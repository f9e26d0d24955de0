"""One bad item never takes the stream down: crashes, timeouts, retries, worker set-up.

The crash-injection matrix follows CPython's ``test_deadlock.py``: a failure at every
stage of an item's trip (unpickling its call in the worker, running it, pickling its
result), each expected at the item's own position with its neighbours' results intact.
Every test runs under pytest's per-test timeout, so a hang fails instead of stalling.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import inorder
from inorder import OrderedPipeline, TaskTimeoutError, WorkerCrashedError
from inorder._retry import RetryPolicy

from . import workloads
from .helpers import alive, wait_until

pytestmark = pytest.mark.anyio

ITEMS = 10
BAD = 5


def _exit_code(code: int, seq: int = BAD) -> Any:
    def check(error: object) -> None:
        assert isinstance(error, WorkerCrashedError), error
        assert (error.exitcode, error.signal) == (code, None)
        assert "died while running this item" in str(error)
        assert f"inorder: item {seq} failed in" in error.__notes__[-1]

    return check


def _signal(number: int) -> Any:
    def check(error: object) -> None:
        assert isinstance(error, WorkerCrashedError), error
        assert (error.exitcode, error.signal) == (None, number)
        assert signal.Signals(number).name in str(error)

    return check


def _exception(kind: type[BaseException], text: str) -> Any:
    def check(error: object) -> None:
        assert isinstance(error, kind), error
        assert text in str(error)

    return check


def _run_faults(x: int, seq: int) -> list[tuple[str, str, Any, bool]]:
    """(stage, fault kind, check of the outcome at the bad position, whether a worker
    dies), for a fault in item ``x`` (the function's argument) numbered ``seq``."""
    return [
        ("running: exception", "raise", _exception(ValueError, f"item {x} raised"), False),
        ("running: sys.exit", "exit", _exception(RuntimeError, "SystemExit"), False),
        ("running: os._exit", "os_exit", _exit_code(7, seq), True),
        ("running: SIGKILL", "sigkill", _signal(signal.SIGKILL), True),
        ("running: segfault", "segfault", _signal(signal.SIGSEGV), True),
        (
            "pickling the result: exception",
            "bad_result",
            _exception(TypeError, "could not be pickled"),
            False,
        ),
        ("pickling the result: crash", "crash_result", _exit_code(9, seq), True),
    ]


RUN_FAULTS = _run_faults(BAD, BAD)


async def _run_with_fault(kind: str, batch: Any, via_map: bool) -> tuple[list[Any], Any]:
    kinds = ["ok"] * ITEMS
    kinds[BAD] = kind
    async with OrderedPipeline(workers=2, on_error="return", batch=batch) as pipe:
        if via_map:
            pipe.map(workloads.fault, range(ITEMS), kinds)
        else:
            for x, k in enumerate(kinds):
                await pipe.put(workloads.fault, x, k)
            pipe.close()
        outcomes = [outcome async for outcome in pipe]
        return outcomes, pipe.statistics()


@pytest.mark.parametrize("via_map", [False, True], ids=["put", "map"])
@pytest.mark.parametrize("batch", ["auto", 4])
@pytest.mark.parametrize(
    ("stage", "kind", "check", "dies"), RUN_FAULTS, ids=[f[0] for f in RUN_FAULTS]
)
async def test_a_fault_yields_its_error_in_place_and_the_stream_goes_on(
    anyio_backend: Any, stage: str, kind: str, check: Any, dies: bool, batch: Any, via_map: bool
) -> None:
    outcomes, stats = await _run_with_fault(kind, batch, via_map)
    assert len(outcomes) == ITEMS
    assert [o for i, o in enumerate(outcomes) if i != BAD] == [x for x in range(ITEMS) if x != BAD]
    check(outcomes[BAD])
    assert stats.failed == 1
    assert (stats.restarts >= 1) == dies


# One batch of thousands of items: a fault deep in it is found at its own position.
LARGE = 4196
DEEP = 2548


@pytest.mark.parametrize(
    ("stage", "kind", "check", "dies"),
    _run_faults(DEEP, DEEP + 1),
    ids=[f[0] for f in _run_faults(DEEP, DEEP + 1)],
)
async def test_a_fault_deep_in_a_large_batch_yields_its_error_in_place(
    anyio_backend: Any, tmp_path: Path, stage: str, kind: str, check: Any, dies: bool
) -> None:
    gate = tmp_path / "open"
    kinds = ["ok"] * LARGE
    kinds[DEEP] = kind
    options: dict[str, Any] = {"batch": LARGE, "window": LARGE + 1}
    async with OrderedPipeline(workers=1, on_error="return", **options) as pipe:
        # The one worker waits at the gate while every other item queues, and then
        # takes at most one item ahead of the rest, which go as a single batch.
        await pipe.put(workloads.wait_for_file, -1, str(gate))
        for x, k in enumerate(kinds):
            await pipe.put(workloads.fault, x, k)
        pipe.close()
        gate.touch()
        outcomes = [outcome async for outcome in pipe]
        stats = pipe.statistics()
    assert outcomes[0] == -1
    assert [o for x, o in enumerate(outcomes[1:]) if x != DEEP] == [
        x for x in range(LARGE) if x != DEEP
    ]
    check(outcomes[1 + DEEP])
    assert stats.failed == 1
    assert (stats.restarts >= 1) == dies
    if not dies:
        assert stats.batches <= 3  # the gate, maybe one item, and the rest in one


LOAD_FAULTS = [
    (
        "unpickling the call: exception",
        workloads.FailsWhenLoaded,
        _exception(ValueError, "cannot be loaded"),
    ),
    ("unpickling the call: crash", workloads.CrashesWhenLoaded, _exit_code(11)),
]


@pytest.mark.parametrize("via_map", [False, True], ids=["put", "map"])
@pytest.mark.parametrize("batch", ["auto", 4])
@pytest.mark.parametrize(
    ("stage", "argument", "check"), LOAD_FAULTS, ids=[f[0] for f in LOAD_FAULTS]
)
async def test_an_argument_that_fails_to_load_in_the_worker_fails_alone(
    anyio_backend: Any, stage: str, argument: type, check: Any, batch: Any, via_map: bool
) -> None:
    items: list[Any] = [*range(BAD), argument(), *range(BAD + 1, ITEMS)]
    async with OrderedPipeline(workers=2, on_error="return", batch=batch) as pipe:
        if via_map:
            pipe.map(workloads.identity, items)
        else:
            for item in items:
                await pipe.put(workloads.identity, item)
            pipe.close()
        outcomes = [outcome async for outcome in pipe]
    assert [o for i, o in enumerate(outcomes) if i != BAD] == [x for x in range(ITEMS) if x != BAD]
    check(outcomes[BAD])


async def test_items_that_fail_together_each_get_an_exception_of_their_own(
    anyio_backend: Any,
) -> None:
    async with OrderedPipeline(workers=1, batch=3, on_error="return") as pipe:
        errors = [e async for e in pipe.map(workloads.FunctionThatFailsToLoad(), range(3))]
        assert pipe.statistics().batches == 1  # one batch, one load, one error for three
    assert len({id(error) for error in errors}) == 3
    for seq, error in enumerate(errors):
        assert isinstance(error, RuntimeError)
        assert "could not unpickle the function" in str(error)
        assert "this function cannot be loaded" in str(error)
        (note,) = error.__notes__  # its own item's, and no other's
        assert note.startswith(f"inorder: item {seq} failed in ")


@pytest.mark.parametrize("batch", ["auto", 1, 4])
async def test_an_outcome_that_fails_to_load_in_the_parent_fails_alone(
    anyio_backend: Any, batch: Any
) -> None:
    functions = [workloads.square] * ITEMS
    functions[BAD] = workloads.raise_needs_two  # its exception cannot be unpickled here
    functions[BAD + 2] = workloads.returns_unloadable  # nor can this result
    async with OrderedPipeline(workers=2, on_error="return", batch=batch) as pipe:
        for x, fn in enumerate(functions):
            await pipe.put(fn, x)
        pipe.close()
        outcomes = [outcome async for outcome in pipe]
    good = [i for i in range(ITEMS) if i not in (BAD, BAD + 2)]
    assert [outcomes[i] for i in good] == [i * i for i in good]
    for i, what in ((BAD, "exception"), (BAD + 2, "result")):
        assert isinstance(outcomes[i], RuntimeError)
        assert f"the item's {what} could not be unpickled in the parent" in str(outcomes[i])
    assert "TypeError: NeedsTwoArguments.__init__()" in str(outcomes[BAD])
    assert isinstance(outcomes[BAD].__cause__, inorder.RemoteTraceback)  # where it raised
    assert isinstance(outcomes[BAD + 2].__cause__, ValueError)  # why it did not load


async def test_crash_raises_at_its_position_with_on_error_raise(anyio_backend: Any) -> None:
    kinds = ["ok", "ok", "os_exit", "ok"]
    async with OrderedPipeline(workers=2) as pipe:
        pipe.map(workloads.fault, range(4), kinds)
        assert [await anext(pipe), await anext(pipe)] == [0, 1]
        with pytest.raises(WorkerCrashedError) as caught:
            await anext(pipe)
        assert "inorder: item 2 failed" in "".join(caught.value.__notes__)
        assert await anext(pipe) == 3
        # The worker that crashed is gone, and another took its place.
        assert caught.value.pid is not None
        assert alive({caught.value.pid}) == set()
        assert pipe.statistics().restarts == 1


async def _crash_codes(crashes: int) -> list[int | None]:
    kinds = ["os_exit", "ok"] * crashes
    async with inorder.map(
        workloads.fault, range(2 * crashes), kinds, workers=2, on_error="return"
    ) as results:
        return [r.exitcode async for r in results if isinstance(r, WorkerCrashedError)]


def test_a_program_polling_its_children_meanwhile_leaves_each_crash_its_exit_code() -> None:
    """``multiprocessing.active_children()``, like any ``Process.start()``, polls every
    child of the program; a forkserver worker's exit status can be read once, and a
    reader other than the pool would leave it 255. The pool alone reads its workers'
    statuses."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            multiprocessing.active_children()

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        codes = anyio.run(_crash_codes, 40)
    finally:
        stop.set()
        poller.join()
    assert codes == [7] * 40


FAULT_KINDS = ["raise", "exit", "os_exit", "sigkill", "segfault", "bad_result", "crash_result"]


# A stream's faults: where they fall is free, how many is bounded, so no example can
# cost much more than another.
MOST_FAULTS = 4
MOST_HANGS = 2  # each waits out the 0.25 s timeout, then a new worker starts
HANG_TIMEOUT = 0.25


@st.composite
def fault_streams(draw: st.DrawFn) -> list[str]:
    kinds = ["ok"] * draw(st.integers(1, 24))
    faults = draw(
        st.lists(
            st.tuples(st.integers(0, len(kinds) - 1), st.sampled_from([*FAULT_KINDS, "hang"])),
            max_size=MOST_FAULTS,
        )
    )
    for position, kind in faults:
        if kind != "hang" or kinds.count("hang") < MOST_HANGS:
            kinds[position] = kind
    return kinds


# Each example starts a pool (about 0.1 s), then at most MOST_FAULTS crashes (a worker
# start each, about 0.1 s) of which MOST_HANGS wait out HANG_TIMEOUT: about 1 s at
# worst, a few times that with every core busy. 25 examples on each of 3 loops cover
# every kind many times; the test's own timeout is that worst case with room to spare.
@pytest.mark.timeout(240)
@settings(max_examples=25)
@given(
    kinds=fault_streams(),
    batch=st.sampled_from(["auto", 1, 3, 8]),
    workers=st.integers(1, 2),
)
async def test_faults_anywhere_give_exactly_one_outcome_per_item_in_order(
    anyio_backend: Any, kinds: list[str], batch: Any, workers: int
) -> None:
    expected_type = {
        "raise": ValueError,
        "exit": RuntimeError,
        "os_exit": WorkerCrashedError,
        "sigkill": WorkerCrashedError,
        "segfault": WorkerCrashedError,
        "bad_result": TypeError,
        "crash_result": WorkerCrashedError,
        "hang": TaskTimeoutError,
    }
    options: dict[str, Any] = {"timeout": HANG_TIMEOUT} if "hang" in kinds else {}
    async with OrderedPipeline(workers=workers, on_error="return", batch=batch, **options) as pipe:
        outcomes = [o async for o in pipe.map(workloads.fault, range(len(kinds)), kinds)]
        stats = pipe.statistics()
    assert len(outcomes) == len(kinds)
    for x, (kind, outcome) in enumerate(zip(kinds, outcomes, strict=True)):
        if kind == "ok":
            assert outcome == x
        else:
            assert type(outcome) is expected_type[kind], (x, kind, outcome)
    assert stats.yielded == len(kinds)
    assert stats.failed == sum(kind != "ok" for kind in kinds)


# -- timeouts --------------------------------------------------------------------------


async def test_an_item_over_its_timeout_is_stopped_and_fails_in_place(anyio_backend: Any) -> None:
    kinds = ["ok", "hang", "ok", "ok"]
    with anyio.fail_after(30):  # the hanging item sleeps 600 s: only the timeout ends it
        async with OrderedPipeline(workers=2, on_error="return", timeout=0.5) as pipe:
            outcomes = [o async for o in pipe.map(workloads.fault, range(4), kinds)]
            stats = pipe.statistics()
    assert [outcomes[0], *outcomes[2:]] == [0, 2, 3]
    error = outcomes[1]
    assert isinstance(error, TaskTimeoutError)
    assert isinstance(error, TimeoutError)
    assert error.timeout == 0.5
    assert "this item ran longer than the timeout of 0.5 s" in str(error)
    assert "inorder: item 1 failed in tests.workloads.fault" in error.__notes__[-1]
    assert (stats.timeouts, stats.restarts) == (1, 1)


async def test_the_worker_of_an_item_over_its_timeout_dies_while_the_stream_runs(
    anyio_backend: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "hung.pid"
    async with OrderedPipeline(workers=1, on_error="return", timeout=1.0) as pipe:
        await pipe.put(workloads.report_pid_then_sleep, 0, str(pid_file))
        await pipe.put(workloads.square, 3)  # queued behind the hung item
        await wait_until(pid_file.exists)
        hung = int(pid_file.read_text())
        await wait_until(lambda: not alive({hung}))
        # The stream goes on: nothing was taken yet, and it takes more.
        await pipe.put(workloads.square, 4)
        pipe.close()
        outcomes = [o async for o in pipe]
    assert isinstance(outcomes[0], TaskTimeoutError)
    assert outcomes[0].pid == hung
    assert outcomes[1:] == [9, 16]


async def test_a_timeout_also_stops_the_processes_the_item_started(
    anyio_backend: Any, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    async with OrderedPipeline(workers=1, on_error="return", timeout=1.0) as pipe:
        await pipe.put(workloads.spawn_child_then_sleep, 0, str(pid_file))
        pipe.close()
        [outcome] = [o async for o in pipe]
    assert isinstance(outcome, TaskTimeoutError)
    child = int(pid_file.read_text())
    await wait_until(lambda: not alive({child}))


async def test_timeout_does_not_touch_items_that_finish_in_time(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2, timeout=5) as pipe:
        results = [r async for r in pipe.map(workloads.square, range(2000))]
        stats = pipe.statistics()
    assert results == [x * x for x in range(2000)]
    assert (stats.timeouts, stats.restarts) == (0, 0)


# -- retries ---------------------------------------------------------------------------


async def test_retries_rerun_a_failing_item_in_its_place(executor: Any, tmp_path: Path) -> None:
    folder = str(tmp_path)
    failures = {0: 0, 1: 2, 2: 0, 3: 1, 4: 0}  # item -> attempts that fail before success
    async with OrderedPipeline(workers=2, retries=2, executor=executor) as pipe:
        for x, n in failures.items():
            await pipe.put(workloads.flaky, x, folder, n)
        pipe.close()
        results = [r async for r in pipe]
        stats = pipe.statistics()
    assert results == list(failures)
    assert [workloads.attempts(folder, x) for x in failures] == [n + 1 for n in failures.values()]
    assert stats.retries == 3
    assert stats.failed == 0


async def test_an_item_failing_every_attempt_yields_its_last_error(
    executor: Any, tmp_path: Path
) -> None:
    folder = str(tmp_path)
    async with OrderedPipeline(workers=2, retries=2, on_error="return", executor=executor) as pipe:
        outcomes = [o async for o in pipe.map(workloads.flaky, [0, 1, 2], [folder] * 3, [0, 9, 0])]
    assert outcomes[0] == 0
    assert outcomes[2] == 2
    assert isinstance(outcomes[1], KeyError)
    assert "attempt 3 at item 1" in str(outcomes[1])
    assert "failed 3 times" in "".join(outcomes[1].__notes__)
    assert workloads.attempts(folder, 1) == 3


@pytest.mark.parametrize(
    ("retry_on", "retried"),
    [
        ((ValueError,), False),  # flaky raises KeyError: another type is not retried
        ((ValueError, KeyError), True),  # a listed type is
        (LookupError, True),  # and so is a subclass of one
    ],
)
async def test_retry_on_retries_the_listed_exceptions_only(
    executor: Any, tmp_path: Path, retry_on: Any, retried: bool
) -> None:
    folder = str(tmp_path)
    async with OrderedPipeline(
        workers=1, retries=3, retry_on=retry_on, on_error="return", executor=executor
    ) as pipe:
        outcomes = [o async for o in pipe.map(workloads.flaky, [0, 1], [folder] * 2, [1, 0])]
        stats = pipe.statistics()
    if retried:
        assert outcomes == [0, 1]
        assert (workloads.attempts(folder, 0), stats.retries, stats.failed) == (2, 1, 0)
    else:
        assert isinstance(outcomes[0], KeyError)
        assert outcomes[1] == 1
        assert (workloads.attempts(folder, 0), stats.retries, stats.failed) == (1, 0, 1)


def test_system_exit_is_retried_as_the_runtime_error_it_is_delivered_as() -> None:
    policy = RetryPolicy(retries=1)
    assert policy.should_retry(SystemExit(3), 1)
    assert not policy.should_retry(SystemExit(3), 2)
    assert not RetryPolicy(retries=1, retry_on=ValueError).should_retry(SystemExit(3), 1)


@given(attempt=st.integers(0, 100))
def test_retry_back_off_grows_and_stays_short(attempt: int) -> None:
    policy = RetryPolicy(retries=100)
    assert 0 <= policy.delay(attempt) <= policy.delay(attempt + 1) <= policy.backoff_max


async def test_retries_cover_worker_crashes(anyio_backend: Any, tmp_path: Path) -> None:
    folder = str(tmp_path)
    async with OrderedPipeline(workers=2, retries=1) as pipe:
        results = [
            r
            async for r in pipe.map(
                workloads.flaky, range(6), [folder] * 6, [0, 0, 1, 0, 0, 0], ["crash"] * 6
            )
        ]
        stats = pipe.statistics()
    assert results == list(range(6))
    assert workloads.attempts(folder, 2) == 2
    assert (stats.retries, stats.restarts) == (1, 1)


# -- worker set-up ----------------------------------------------------------------------


async def test_initializer_runs_in_every_worker_before_items(anyio_backend: Any) -> None:
    async with OrderedPipeline(
        workers=2, initializer=workloads.remember, initargs=("ready",), max_tasks_per_child=3
    ) as pipe:
        results = [r async for r in pipe.map(workloads.initialized, range(12))]
    assert results == ["ready"] * 12  # replacement workers are initialized too


async def test_a_failing_initializer_fails_async_with(anyio_backend: Any) -> None:
    with pytest.raises(
        RuntimeError, match="the initializer given to the pipeline raised"
    ) as caught:
        async with OrderedPipeline(workers=1, initializer=workloads.fail_to_initialize):
            pass
    assert "the database is not there" in str(caught.value)


async def test_items_start_on_the_first_worker_up_while_the_others_start(
    anyio_backend: Any, tmp_path: Path
) -> None:
    # The second worker's initializer waits until the first item's result is back.
    async with OrderedPipeline(
        workers=2, initializer=workloads.start_first_or_wait, initargs=(str(tmp_path),)
    ) as pipe:
        await pipe.put(workloads.pid_of_worker, 0)
        first_pid = await anext(pipe)
        (tmp_path / "go").touch()
        pids = {first_pid}
        while len(pids) < 2:  # the other worker comes up and takes items too
            for _ in range(4):
                await pipe.put(workloads.sleep_then_pid)
            pids |= {await anext(pipe) for _ in range(4)}
    assert len(pids) == 2


async def test_a_worker_failing_to_start_later_fails_the_items_not_yet_sent(
    anyio_backend: Any, tmp_path: Path
) -> None:
    async with OrderedPipeline(
        workers=2,
        on_error="return",
        initializer=workloads.start_first_or_wait,
        initargs=(str(tmp_path), True),
    ) as pipe:
        await pipe.put(workloads.square, 3)
        assert await anext(pipe) == 9
        (tmp_path / "go").touch()  # the second worker's initializer raises now
        outcome: object = 0
        for i in range(2000):  # items run on the first worker until the pool breaks
            await pipe.put(workloads.sleep_then_return, i, 0.01)
            outcome = await anext(pipe)
            if isinstance(outcome, Exception):
                break
    assert isinstance(outcome, RuntimeError), outcome
    assert "the initializer given to the pipeline raised" in str(outcome)
    assert "the second database is not there" in str(outcome)


async def test_max_tasks_per_child_replaces_workers(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2, max_tasks_per_child=2) as pipe:
        pids = [r async for r in pipe.map(workloads.pid_of_worker, range(12))]
        stats = pipe.statistics()
    assert len(set(pids)) >= 6
    assert all(pids.count(pid) <= 2 for pid in set(pids))
    assert stats.restarts >= 4


@pytest.mark.parametrize(
    "options",
    [{"timeout": 1.0}, {"initializer": print}, {"max_tasks_per_child": 5}],
    ids=["timeout", "initializer", "max_tasks_per_child"],
)
def test_process_only_options_are_refused_for_threads(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="need\\(s\\) executor='process'"):
        OrderedPipeline(executor="thread", **options)


@pytest.mark.parametrize(
    ("options", "error", "text"),
    [
        ({"timeout": 0}, ValueError, "timeout must be a positive"),
        ({"timeout": "1"}, TypeError, "timeout must be a number"),
        ({"retries": -1}, ValueError, "retries must be 0 or more"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on must be an exception class"),
        ({"initializer": 3}, TypeError, "initializer must be callable"),
        ({"max_tasks_per_child": 0}, ValueError, "max_tasks_per_child must be at least 1"),
    ],
)
def test_bad_reliability_options_are_refused(
    options: dict[str, Any], error: type, text: str
) -> None:
    with pytest.raises(error, match=text):
        OrderedPipeline(**options)


def test_reliability_errors_are_public() -> None:
    assert issubclass(inorder.WorkerCrashedError, inorder.InorderError)
    assert issubclass(inorder.TaskTimeoutError, inorder.InorderError)
    assert issubclass(inorder.TaskTimeoutError, TimeoutError)


async def test_a_borrowed_process_pool_that_breaks_fails_its_items_without_hanging(
    anyio_backend: Any, tmp_path: Path
) -> None:
    """Crash isolation is inorder's own pool's: a borrowed one breaks, as documented."""
    never = str(tmp_path / "never")  # a gate nobody opens: those items cannot finish
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as executor:
        async with OrderedPipeline(executor=executor, on_error="return", batch=1) as pipe:
            for x in range(3):
                await pipe.put(workloads.square, x)
            assert [await anext(pipe) for _ in range(3)] == [0, 1, 4]
            await pipe.put(workloads.fault, 3, "os_exit")
            for x in range(4, 6):
                await pipe.put(workloads.wait_for_file, x, never)
            pipe.close()
            outcomes = [o async for o in pipe]
    # The crash breaks the pool: the item that crashed it and every item not done fail
    # with BrokenProcessPool, each once, and the stream ends.
    assert len(outcomes) == 3
    assert all(isinstance(outcome, BrokenProcessPool) for outcome in outcomes), outcomes
