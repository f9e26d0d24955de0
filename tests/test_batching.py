"""The adaptive batch-size controller as pure code, and batching in the pipeline."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from inorder import OrderedPipeline
from inorder._batching import (
    END_SHARE_SECONDS,
    GROWTH,
    MAX_BATCH_SIZE,
    MAX_GROWTH,
    REMEMBERED_FUNCTIONS,
    TARGET_BATCH_SECONDS,
    BatchSizer,
    BatchSizers,
)
from inorder._feeding import FIRST_MAP_CHUNK
from inorder._pipeline import DISPATCHES_PER_WORKER, READ_AHEAD_ROUNDS
from inorder._window import (
    AUTO_WINDOW_MAX,
    AUTO_WINDOW_MIN_PER_WORKER,
    AUTO_WINDOW_START,
    WINDOW_BYTES,
    WindowSizer,
)

from . import workloads
from .helpers import wait_until

costs = st.floats(min_value=1e-8, max_value=1.0, allow_nan=False)


@given(st.lists(st.tuples(st.integers(1, 5000), costs), max_size=60), st.integers(1, 5000))
def test_size_stays_between_one_and_the_limit(
    batches: list[tuple[int, float]], limit: int
) -> None:
    sizer = BatchSizer(limit=limit)
    assert sizer.size == 1  # the first batch carries one item: lowest latency
    for items, per_item in batches:
        sizer.observe(items, items * per_item)
        assert 1 <= sizer.size <= limit


@given(costs)
def test_growth_is_gradual_and_reaches_the_target(per_item: float) -> None:
    sizer = BatchSizer(limit=10_000)
    ideal = max(1, min(10_000, int(TARGET_BATCH_SECONDS / per_item)))
    sizes = [sizer.size]
    for _ in range(40):
        full = sizer.size
        sizer.observe(full, full * per_item)
        sizes.append(sizer.size)
    for before, after in itertools.pairwise(sizes):
        assert after <= max(before, int(before * _growth(before, per_item)))
    # It settles within one step of the ideal size (integer rounding).
    assert abs(sizes[-1] - ideal) <= max(1, ideal // 50)


@given(st.floats(1e-7, 1e-5), st.floats(1e-3, 1.0))
def test_shrinks_at_once_when_items_get_slow(cheap: float, slow: float) -> None:
    sizer = BatchSizer(limit=100_000)
    for _ in range(30):
        sizer.observe(sizer.size, sizer.size * cheap)
    big = sizer.size
    sizer.observe(big, big * slow)
    assert abs(sizer.size - max(1, TARGET_BATCH_SECONDS / slow)) <= 1  # integer rounding


def test_a_short_batch_does_not_grow_the_size() -> None:
    sizer = BatchSizer(limit=1000)
    for _ in range(5):
        sizer.observe(sizer.size, sizer.size * 1e-6)
    size = sizer.size
    sizer.observe(1, 1e-6)  # little was queued: says nothing about larger batches
    assert sizer.size == size


def test_each_full_batch_grows_the_current_size() -> None:
    # Four batches of one item are in flight (two per worker) when the first comes back:
    # each one that was full grows the size further, not back to twice its own.
    # Items of 1 us are far cheaper than the target: each step grows by MAX_GROWTH.
    sizer = BatchSizer(limit=1000)
    for _ in range(4):
        sizer.observe(1, 1e-6, full=True)
    assert sizer.size == int(MAX_GROWTH**4)
    short = BatchSizer(limit=1000)
    for _ in range(4):
        short.observe(1, 1e-6)  # cut short: the queue held no more
    assert short.size == int(MAX_GROWTH)


@given(st.lists(st.tuples(st.integers(1, 5000), costs, st.booleans()), max_size=60))
def test_no_step_grows_by_more_than_the_growth_factor(
    batches: list[tuple[int, float, bool]],
) -> None:
    sizer = BatchSizer(limit=100_000)
    for items, per_item, full in batches:
        before = sizer.size
        sizer.observe(items, items * per_item, full=full)
        base = before if full else items
        assert 1 <= sizer.size <= max(before, int(base * _growth(base, per_item)))


def _growth(base: int, per_item: float) -> float:
    """The most a batch of ``base`` items that cost ``per_item`` each may grow the size:
    GROWTH, or more only as far as the evidence goes, at most MAX_GROWTH."""
    ideal = TARGET_BATCH_SECONDS / per_item
    return min(MAX_GROWTH, max(GROWTH, (ideal / base) ** 0.5))


@given(st.integers(1, 5000), st.floats(1e-8, 1.0))
def test_growth_beyond_doubling_needs_items_far_cheaper_than_the_target(
    items: int, per_item: float
) -> None:
    sizer = BatchSizer(limit=1_000_000)
    sizer.observe(items, items * per_item)
    sizer_size = sizer.size
    ideal = TARGET_BATCH_SECONDS / per_item
    if ideal < items * GROWTH**2:  # less than 4x cheaper than the target needs
        assert sizer_size <= max(1, int(items * GROWTH))
    assert sizer_size <= int(items * MAX_GROWTH)


@given(
    queued=st.integers(1, 1_000_000),
    workers=st.integers(1, 64),
    per_item=st.none() | st.just(0.0) | st.floats(1e-9, 10.0),
)
@example(queued=1000, workers=64, per_item=3e-5)  # 33 items: 0.99 ms, the floor of 33.3
def test_a_share_at_the_end_is_fair_and_worth_its_round_trip(
    queued: int, workers: int, per_item: float | None
) -> None:
    sizer = BatchSizer(limit=1_000_000)
    if per_item is not None:
        sizer.observe(100, 100 * per_item)
    share = sizer.share_at_end(queued, workers)
    equal = -(-queued // workers)
    assert equal <= share <= max(equal, queued)
    if per_item is None or per_item >= END_SHARE_SECONDS:
        assert share == equal  # unmeasured or costly items: the equal share
    elif per_item == 0.0 or queued * per_item <= END_SHARE_SECONDS * (1 - 1e-9):
        assert share == queued  # all that is left is less work than a round trip
    elif share not in (equal, queued):  # a piece of END_SHARE_SECONDS, to the item
        assert share * per_item <= END_SHARE_SECONDS * (1 + 1e-9)
        assert (share + 1) * per_item > END_SHARE_SECONDS * (1 - 1e-9)


def test_fixed_size_ignores_measurements() -> None:
    sizer = BatchSizer(7)
    sizer.observe(7, 10.0)
    sizer.observe(7, 1e-9)
    assert sizer.size == 7
    with pytest.raises(ValueError, match="at least 1"):
        BatchSizer(0)


class _InlineThreads(concurrent.futures.ThreadPoolExecutor):
    """Runs each executor call at submit() and records how many items it carried."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.batches: list[int] = []

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        (parts,) = args
        self.batches.append(sum(len(payloads) for _, _, payloads in parts))
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.mark.anyio
async def test_cheap_items_ramp_up_to_the_largest_batch_in_few_batches() -> None:
    executor = _InlineThreads()
    with executor:
        window = 4 * MAX_BATCH_SIZE
        async with OrderedPipeline(workers=2, window=window, executor=executor) as pipe:
            results = [r async for r in pipe.map(workloads.square, range(120_000))]
    assert results == [x * x for x in range(120_000)]
    # Four batches of one item go out at once; from then on every full batch that comes
    # back grows the size by MAX_GROWTH (the items cost next to nothing): 1 ->
    # MAX_BATCH_SIZE (32768) in 8 steps; batches cut short on the way (trio runs the
    # feeder and the completions in a random order) take up to two more (12-13 in 80
    # runs; growing by GROWTH alone takes 20 or more).
    assert MAX_BATCH_SIZE == 1 << 15 == 2 * MAX_GROWTH**7
    assert executor.batches.index(MAX_BATCH_SIZE) <= 4 + 8 + 3


@pytest.mark.anyio
async def test_a_lone_item_is_not_held_back_to_fill_a_batch(executor: Any) -> None:
    async with OrderedPipeline(workers=2, batch=100, executor=executor) as pipe:
        await pipe.put(workloads.square, 12)
        # Nothing else is put: the item must still come back.
        assert await anext(pipe) == 144
        assert pipe.statistics().batch_size == 100


@pytest.mark.anyio
async def test_cheap_items_travel_in_growing_batches(executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
        results = [r async for r in pipe.map(workloads.square, range(20_000))]
        assert results == [i * i for i in range(20_000)]
        assert pipe.statistics().batch_size > 16


@pytest.mark.anyio
async def test_slow_items_keep_batches_small(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2, window=64) as pipe:
        seconds = TARGET_BATCH_SECONDS * 2
        results = [
            r async for r in pipe.map(workloads.sleep_then_return, range(12), [seconds] * 12)
        ]
        assert results == list(range(12))
        # Items slower than the target batch time go one per batch.
        assert pipe.statistics().batch_size == 1


def test_each_function_has_its_own_batch_size() -> None:
    sizers = BatchSizers()
    cheap, costly = object(), object()
    for _ in range(20):
        sizers.of(cheap).observe(sizers.of(cheap).size, 1e-7)
    assert sizers.of(cheap).size == MAX_BATCH_SIZE
    assert sizers.of(costly).size == 1  # a new function starts at one item
    assert sizers.size == 1  # statistics report the function used last
    sizers.limit_to(8)
    assert sizers.of(cheap).size == 8
    assert sizers.of(object()).size == 1
    assert BatchSizers(5).of(cheap).size == 5


def test_remembered_functions_are_bounded() -> None:
    sizers = BatchSizers()
    functions = [object() for _ in range(REMEMBERED_FUNCTIONS + 10)]
    for function in functions:
        sizers.of(function).observe(1, 1e-7)
    assert len(sizers._sizers) == REMEMBERED_FUNCTIONS
    assert sizers.of(functions[-1]).size > 1  # the newest are remembered
    assert sizers.of(functions[0]).size == 1  # the oldest were forgotten


class _BatchRecorder(concurrent.futures.ThreadPoolExecutor):
    """A borrowed thread pool that records the function and item count of each call."""

    def __init__(self) -> None:
        super().__init__(2)
        self.calls: list[tuple[Any, int]] = []

    @property
    def sizes(self) -> list[int]:
        return [count for _, count in self.calls]

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        for function, _, payloads in args[0]:
            self.calls.append((function, len(payloads)))
        return super().submit(fn, *args, **kwargs)


class _Gate:
    """Holds items run in threads until it is opened; each then takes ``pause`` seconds."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.pause = 0.0

    def held(self, x: int) -> int:
        self.open.wait(10)
        time.sleep(self.pause)
        return x


class _Turnstile:
    """Lets items run only below an index that the test raises: a file, so that items
    in worker processes see it too."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "turnstile"
        self.open_to(0)

    def open_to(self, limit: int) -> None:
        staged = self.path.with_name("turnstile.new")
        staged.write_text(str(limit))
        staged.replace(self.path)  # items never read a half-written number


@pytest.fixture(params=["inline", "process"])
def hold_executor(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Where the batching tests of a consumer that falls behind run: an executor that
    runs each call as it is submitted, and inorder's own worker processes."""
    if request.param == "process":
        yield "process"
    else:
        with _InlineThreads() as executor:
            yield executor


def _most_batches(executor: Any, items: int, batch: int) -> int:
    """The most batches ``items`` may take with a consumer that awaits per result.

    Inline, results are back before the next step, so the consumer is behind at every
    step and the count is exact: whole batches but for the first steps. With worker
    processes, how far behind the consumer is depends on when results come back, and
    on a loaded machine the same run takes 29-57 batches of 16 for 400 items (python
    -m pytest on both, 15 runs each, idle and with both cores busy): what holds there is
    that items are not sent one by one (400 batches)."""
    return items // batch + 8 if executor != "process" else items // 4


async def _async_range(n: int) -> AsyncIterator[int]:
    """``range(n)`` as an async generator that has every item at hand (never suspends)."""
    for i in range(n):
        yield i


# map()'s two feeders: a sync input is read in chunks, an async one an item at a time.
INPUTS = pytest.mark.parametrize("make_input", [range, _async_range], ids=["sync", "async"])


async def _take_a_batch_at_a_time(
    on_result: Callable[[OrderedPipeline, int], None],
    make_input: Callable[[int], Iterable[int] | AsyncIterable[int]],
    executor: Any,
    folder: Path,
) -> tuple[list[int], int, int]:
    """map() 40 items with a window of 16 and batches of 4, letting one batch run at a
    time (the later ones stay in flight), to a consumer that calls ``on_result(pipe,
    result)`` and lets other tasks run after each result. Returns the results, how many
    batches went out and how many items were accepted in all."""
    turnstile = _Turnstile(folder)
    results: list[int] = []
    async with OrderedPipeline(workers=2, window=16, batch=4, executor=executor) as pipe:
        turnstile.open_to(4)
        items = make_input(40)
        async for result in pipe.map(workloads.through_turnstile, items, _forever(turnstile)):
            results.append(result)
            on_result(pipe, result)
            if result % 4 == 3:
                turnstile.open_to(result + 5)
            # Such a consumer frees the window a slot at a time: read at once, each
            # slot would make a batch of one.
            await anyio.lowlevel.checkpoint()
        stats = pipe.statistics()
    return results, stats.batches, stats.accepted


def _forever(turnstile: _Turnstile) -> Iterator[str]:
    return itertools.repeat(str(turnstile.path))


@pytest.mark.anyio
async def test_map_reads_whole_batches_while_a_batch_is_in_flight(
    executor: Any, tmp_path: Path
) -> None:
    results, batches, _ = await _take_a_batch_at_a_time(
        lambda pipe, result: None, range, executor, tmp_path
    )
    assert results == list(range(40))
    assert batches == 10  # 40 items in batches of 4: each batch whole


@pytest.mark.anyio
async def test_map_reads_async_input_in_batches_for_a_consumer_that_awaits(
    hold_executor: Any,
) -> None:
    results, accepted = [], []
    async with OrderedPipeline(workers=2, window=64, batch=16, executor=hold_executor) as pipe:
        async for result in pipe.map(workloads.square, _async_range(400)):
            results.append(result)
            accepted.append(pipe.statistics().accepted)
            await anyio.lowlevel.checkpoint()  # frees the window a slot at a time
        batches = pipe.statistics().batches
    assert results == [i * i for i in range(400)]
    # Waiting for a slot, the feeder read an item or two at each of the consumer's steps
    # (and woke as often); waiting for room for a batch of 16, it reads in bursts (but
    # for the last, which reads what is left of the input).
    steps = [after - before for before, after in itertools.pairwise(accepted) if after > before]
    assert min(steps[:-1]) >= 8, steps
    # Each item sent alone as it was read made 344 batches; a batch that waits for
    # company while the consumer is behind makes them whole, but for the first steps.
    assert batches <= _most_batches(hold_executor, 400, 16)


@pytest.mark.anyio
@INPUTS
async def test_close_stops_map_while_it_waits_for_room_for_a_batch(
    make_input: Callable[[int], Iterable[int] | AsyncIterable[int]],
    executor: Any,
    tmp_path: Path,
) -> None:
    at_close: list[int] = []

    def close_after_5(pipe: OrderedPipeline, result: int) -> None:
        if result == 5:  # map() holds some room and waits for more
            pipe.close()
            at_close.append(pipe.statistics().accepted)

    results, _, accepted = await _take_a_batch_at_a_time(
        close_after_5, make_input, executor, tmp_path
    )
    # Not one item more was read: the feeder saw the close, not just the room.
    assert accepted == at_close[0]
    assert 5 < accepted < 40
    assert results == list(range(accepted))


@pytest.mark.anyio
async def test_put_fills_batches_while_the_consumer_is_behind(hold_executor: Any) -> None:
    results: list[int] = []
    async with OrderedPipeline(workers=2, window=64, batch=16, executor=hold_executor) as pipe:

        async def produce() -> None:
            for i in range(400):
                await pipe.put(workloads.square, i)
            pipe.close()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(produce)
            async for result in pipe:
                results.append(result)
                await anyio.lowlevel.checkpoint()  # frees the window a slot at a time
        batches = pipe.statistics().batches
    assert results == [i * i for i in range(400)]
    # Sent as soon as put, each item went alone (344 batches): the producer fills each
    # slot the consumer frees. With the window full and the consumer two batches behind,
    # a batch waits for company; the rest are the first steps of the stream.
    assert batches <= _most_batches(hold_executor, 400, 16)


@pytest.mark.anyio
async def test_an_item_held_for_company_goes_when_the_consumer_stops_taking_results(
    hold_executor: Any,
) -> None:
    async with OrderedPipeline(workers=2, window=16, batch=4, executor=hold_executor) as pipe:
        for i in range(15):
            await pipe.put(workloads.square, i)
        await wait_until(lambda: pipe.statistics().buffered == 15)
        await pipe.put(workloads.square, 15)  # the last slot, with 15 results waiting
        assert pipe.statistics().queued == 1  # held: three more would make a batch
        # No consumer step ends the wait, no item comes: it goes after HOLD_SECONDS.
        await wait_until(lambda: pipe.statistics().buffered == 16, limit=10)
        assert [await anext(pipe) for _ in range(16)] == [i * i for i in range(16)]


@pytest.mark.anyio
async def test_close_sends_an_item_held_for_company_at_once(hold_executor: Any) -> None:
    async with OrderedPipeline(workers=2, window=16, batch=4, executor=hold_executor) as pipe:
        for i in range(15):
            await pipe.put(workloads.square, i)
        await wait_until(lambda: pipe.statistics().buffered == 15)
        await pipe.put(workloads.square, 15)
        assert pipe.statistics().queued == 1  # held, as in the test above
        pipe.close()  # no item will join it
        assert pipe.statistics().queued == 0
        assert [r async for r in pipe] == [i * i for i in range(16)]


@pytest.mark.anyio
async def test_map_sends_an_async_inputs_item_before_it_reads_the_next(executor: Any) -> None:
    results: list[int] = []

    async def one_result_at_a_time() -> AsyncIterator[int]:
        for i in range(5):
            yield i
            await wait_until(lambda i=i: len(results) > i, limit=10)  # item i came back

    with anyio.fail_after(20):
        async with OrderedPipeline(workers=2, batch=100, executor=executor) as pipe:
            async for result in pipe.map(workloads.square, one_result_at_a_time()):
                results.append(result)
    # Held back to fill a batch, the first item would never come back.
    assert results == [0, 1, 4, 9, 16]


async def _grow_batches(pipe: OrderedPipeline, fn: Any, expected: Any) -> None:
    """Put 3000 cheap items of ``fn`` and take their results: its batch size grows."""
    for i in range(3000):
        await pipe.put(fn, i)
    assert [await anext(pipe) for _ in range(3000)] == [expected(i) for i in range(3000)]


def _square(x: int) -> int:
    return x * x


@pytest.mark.anyio
async def test_an_idle_pipeline_sends_the_first_of_many_items_alone() -> None:
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
            await _grow_batches(pipe, workloads.square, _square)
            assert max(executor.sizes) > 16
            before = len(executor.calls)
            # The pipeline is idle and 100 items arrive at once: the first result is
            # awaited, so the first item must not wait for batch-mates.
            results = [r async for r in pipe.map(workloads.square, range(100))]
    assert results == [i * i for i in range(100)]
    assert executor.sizes[before] == 1
    assert max(executor.sizes[before:]) > 1


@pytest.mark.anyio
async def test_a_bound_method_grows_its_batches_like_a_function() -> None:
    # obj.method is a new object at every access: its items must still share segments
    # and one batch size, or every item would travel alone.
    scale = workloads.Scale(3)
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
            for i in range(3000):
                await pipe.put(scale.apply, i)  # not _grow_batches: one access per item
            assert [await anext(pipe) for _ in range(3000)] == [3 * i for i in range(3000)]
    assert max(executor.sizes) > 16
    assert all(function == scale.apply for function, _ in executor.calls)


@pytest.mark.anyio
async def test_a_fixed_batch_size_holds_from_the_first_batch() -> None:
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, batch=10, executor=executor) as pipe:
            results = [r async for r in pipe.map(workloads.square, range(100))]
    assert results == [i * i for i in range(100)]
    assert executor.sizes == [10] * 10


@pytest.mark.anyio
async def test_a_function_not_seen_yet_starts_with_one_item_batches() -> None:
    gate = _Gate()
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
            await _grow_batches(pipe, workloads.square, _square)
            for i in range(4):  # fill the dispatch slots, so what follows queues
                await pipe.put(gate.held, i)
            for i in range(40):
                await pipe.put(workloads.square, i)
            for i in range(40):
                await pipe.put(workloads.add, i, 1)
            gate.open.set()  # not closed: the input may go on, so no end-of-input sharing
            results = [await anext(pipe) for _ in range(84)]
    assert results == [0, 1, 2, 3] + [i * i for i in range(40)] + [i + 1 for i in range(40)]
    adds = [count for function, count in executor.calls if function is workloads.add]
    # The add items queued behind the squares do not ride in a batch sized for squares.
    assert adds[0] == 1


@pytest.mark.anyio
async def test_once_input_ends_what_is_queued_is_shared_among_the_workers() -> None:
    gate = _Gate()
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
            gate.open.set()
            await _grow_batches(pipe, gate.held, lambda i: i)
            gate.open.clear()
            gate.pause = 10 * END_SHARE_SECONDS  # costly items from now on
            before = len(executor.calls)
            for i in range(24):  # 4 calls of one item fill the dispatch slots
                await pipe.put(gate.held, i)
            pipe.close()  # 20 items queued, and no more to come
            gate.open.set()
            assert [r async for r in pipe] == list(range(24))
    sizes = executor.sizes[before:]
    assert sizes[:4] == [1, 1, 1, 1]
    assert sum(sizes[4:]) == 20
    # Without the sharing the first free worker would take all 20 while the other idles.
    assert max(sizes[4:]) <= 10


@pytest.mark.anyio
async def test_once_input_ends_cheap_items_left_are_not_cut_into_pieces() -> None:
    gate = _Gate()
    with _BatchRecorder() as executor:
        async with OrderedPipeline(workers=2, window=4096, executor=executor) as pipe:
            await _grow_batches(pipe, workloads.square, _square)  # microseconds an item
            for i in range(4):  # fill the dispatch slots, so what follows queues
                await pipe.put(gate.held, i)
            for i in range(20):
                await pipe.put(workloads.square, i)
            pipe.close()  # 20 items queued, and no more to come
            gate.open.set()
            assert [r async for r in pipe] == [0, 1, 2, 3] + [i * i for i in range(20)]
    squares = [count for function, count in executor.calls if function is workloads.square]
    # Halving what is left as each dispatch slot frees would send 10, 5, 3, 1, 1: a
    # round trip each for microseconds of work.
    assert squares[-1] == 20


@pytest.mark.anyio
@pytest.mark.parametrize("batch", [1, 3, 1000])
async def test_fixed_batch_sizes_keep_order_and_markers(executor: Any, batch: int) -> None:
    async with OrderedPipeline(workers=2, window=50, batch=batch, executor=executor) as pipe:
        for i in range(40):
            await pipe.put(workloads.square, i)
            if i % 9 == 8:
                await pipe.put(f"marker {i}")
        pipe.close()
        results = [r async for r in pipe]
    expected: list[Any] = []
    for i in range(40):
        expected.append(i * i)
        if i % 9 == 8:
            expected.append(f"marker {i}")
    assert results == expected


# -- the automatic window ------------------------------------------------------------------


@given(
    workers=st.integers(1, 64),
    batches=st.lists(
        st.tuples(st.booleans(), st.integers(1, 4096), st.integers(0, 1 << 30)), max_size=30
    ),
)
def test_window_sizer_stays_within_its_bounds(
    workers: int, batches: list[tuple[bool, int, int]]
) -> None:
    sizer = WindowSizer(workers)
    low = min(AUTO_WINDOW_MAX, AUTO_WINDOW_MIN_PER_WORKER * workers)
    for arguments, items, nbytes in batches:
        if arguments:
            sizer.observe_arguments(items, nbytes)
        else:
            sizer.observe_results(items, nbytes)
        assert low <= sizer.capacity <= AUTO_WINDOW_MAX


@given(small=st.integers(1, 1 << 20), factor=st.integers(2, 1000))
def test_larger_items_never_get_a_larger_window(small: int, factor: int) -> None:
    a, b = WindowSizer(2), WindowSizer(2)
    a.observe_arguments(10, 10 * small)
    b.observe_arguments(10, 10 * small * factor)
    assert b.capacity <= a.capacity


def test_window_sizer_grows_only_once_results_were_measured() -> None:
    sizer = WindowSizer(2)
    sizer.observe_arguments(1000, 10_000)  # tiny arguments...
    assert sizer.capacity == AUTO_WINDOW_START  # ...may still make big results
    sizer.observe_results(1000, 10_000)
    assert sizer.capacity == AUTO_WINDOW_MAX


def test_window_sizer_shrinks_at_once_and_grows_gradually() -> None:
    sizer = WindowSizer(2)
    assert sizer.capacity == AUTO_WINDOW_START  # nothing measured yet
    sizer.observe_arguments(1, 1 << 20)  # one 1 MiB item
    assert sizer.capacity == max(WINDOW_BYTES // (1 << 20), AUTO_WINDOW_MIN_PER_WORKER * 2)
    sizer.observe_results(1, 8)
    sizer.observe_arguments(100, 1000)  # then tiny ones
    grown = sizer.capacity
    assert WINDOW_BYTES // (1 << 20) < grown < AUTO_WINDOW_MAX
    for _ in range(200):
        sizer.observe_arguments(100, 1000)
    assert sizer.capacity == AUTO_WINDOW_MAX


async def test_tiny_items_grow_the_automatic_window(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2) as pipe:
        assert pipe.statistics().window == AUTO_WINDOW_START
        results = [r async for r in pipe.map(workloads.square, range(20_000))]
        stats = pipe.statistics()
    assert results == [x * x for x in range(20_000)]
    assert stats.window == AUTO_WINDOW_MAX


def test_window_sizer_forgets_results_for_a_new_function() -> None:
    sizer = WindowSizer(2)
    sizer.observe_arguments(1000, 10_000)
    sizer.observe_results(1000, 10_000)
    assert sizer.capacity == AUTO_WINDOW_MAX
    sizer.forget_results()
    assert sizer.capacity == AUTO_WINDOW_START


async def test_a_new_function_starts_from_the_initial_window(anyio_backend: Any) -> None:
    """A window grown on tiny results must not admit that many items of a function
    whose results are not measured yet (they may be large)."""
    async with OrderedPipeline(workers=2) as pipe:
        for i in range(20_000):  # tiny items, put() one by one, consumed as they come
            await pipe.put(workloads.square, i)
            if i % 1000 == 999:
                assert [await anext(pipe) for _ in range(1000)][-1] == i * i
        assert pipe.statistics().window == AUTO_WINDOW_MAX
        await pipe.put(workloads.square, 3)  # the same function: the window stays
        assert pipe.statistics().window == AUTO_WINDOW_MAX
        assert await anext(pipe) == 9
        await pipe.put(workloads.add, 1, 2)  # another function
        assert pipe.statistics().window == AUTO_WINDOW_START
        assert await anext(pipe) == 3
        pipe.map(workloads.describe_buffer, [b"x" * 32_768] * 10)
        assert pipe.statistics().window <= AUTO_WINDOW_START
        assert [r async for r in pipe] == [("bytes", 32_768, ord("x"), 0)] * 10


async def test_put_rechecks_the_window_once_another_functions_results_came_in(
    anyio_backend: Any, tmp_path: Path
) -> None:
    """put() of the same function again and again takes a fast path; when another
    function's results are measured meanwhile, the window must be checked again."""
    gate = tmp_path / "gate"
    spec = f"{gate}|8192"
    async with OrderedPipeline(workers=2) as pipe:
        gate.touch()
        await pipe.put(workloads.bytes_after_file, spec)
        assert await anext(pipe) == bytes(8192)  # measured: 8 KiB results
        gate.unlink()
        await pipe.put(workloads.square, 3)  # another function: the window goes back
        for _ in range(20):  # these wait for the gate; most are queued (the fast path)
            await pipe.put(workloads.bytes_after_file, spec)
        assert await anext(pipe) == 9  # tiny results measured: the window grows
        assert pipe.statistics().window > AUTO_WINDOW_START
        await pipe.put(workloads.bytes_after_file, spec)
        assert pipe.statistics().window == AUTO_WINDOW_START
        gate.touch()
        pipe.close()
        assert [r async for r in pipe] == [bytes(8192)] * 21


async def test_large_items_shrink_the_automatic_window(anyio_backend: Any) -> None:
    """1 MiB arguments: the window holds about WINDOW_BYTES of them, not 1024."""
    calls = returned = 0
    async with OrderedPipeline(workers=2) as pipe, anyio.create_task_group() as tasks:

        async def produce() -> None:
            nonlocal calls, returned
            for i in range(200):
                calls += 1
                # A new object each time: a repeated one is pickled (and held) once.
                await pipe.put(len, bytes([i % 256]) * (1 << 20))
                returned += 1
            pipe.close()

        def producer_waits_for_room() -> bool:
            # put() suspends only to wait for a slot: a call that has not returned is
            # waiting for the consumer. All 200 put means the window let them all in.
            stats = pipe.statistics()
            return returned == 200 or (calls > returned and stats.queued + stats.in_flight == 0)

        tasks.start_soon(produce)
        # Nobody consumes yet: the producer stops when the window is full.
        await wait_until(producer_waits_for_room)
        stats = pipe.statistics()
        assert stats.window <= WINDOW_BYTES // (1 << 20)
        assert stats.accepted <= stats.window + 1
        assert [r async for r in pipe] == [1 << 20] * 200


@pytest.mark.parametrize("tiny_items_first", [False, True])
async def test_map_reads_large_items_no_further_ahead_than_the_window(
    anyio_backend: Any, tiny_items_first: bool
) -> None:
    """map() learns the size of items before it reads many: its first chunk is small.
    (It read a chunk as large as the window, 1024 items, 1 GiB of these; tiny items
    put() before grow the window beyond that.)"""
    read = 0

    def megabytes() -> Iterator[bytes]:
        nonlocal read
        for i in range(200):
            read += 1
            yield bytes([i % 256]) * (1 << 20)

    async with OrderedPipeline(workers=2) as pipe:
        if tiny_items_first:
            for _ in range(10):
                await pipe.put(len, b"x")
            assert [await anext(pipe) for _ in range(10)] == [1] * 10
            assert pipe.statistics().window > AUTO_WINDOW_START
        results = pipe.map(len, megabytes())

        def window_full_and_done() -> bool:
            # The feeder reads only items it has slots for: with the window full and
            # every item done, it can read nothing more before the consumer takes one.
            stats = pipe.statistics()
            done = stats.queued + stats.in_flight == 0
            return read == 200 or (stats.accepted >= stats.window and done)

        # Nobody consumes yet: the feeder stops when the window is full.
        await wait_until(window_full_and_done)
        assert pipe.statistics().window <= WINDOW_BYTES // (1 << 20)
        assert read <= WINDOW_BYTES // (1 << 20) + FIRST_MAP_CHUNK
        assert [r async for r in results] == [1 << 20] * 200


async def test_with_threads_map_reads_ahead_without_a_ramp(anyio_backend: Any) -> None:
    """Threads pickle nothing, so the window never learns the size of items: map()
    starts with no ramp of small chunks, and reads what the dispatch slots take at the
    first batch size (one item). A chunk is read whole before its items are
    dispatched, so the first item sees the first chunk read."""
    read = 0

    def counted() -> Iterator[int]:
        nonlocal read
        for i in range(3000):
            read += 1
            yield i

    def read_so_far(_: int) -> int:  # runs in a thread of this process
        return read

    async with OrderedPipeline(workers=2, executor="thread") as pipe:
        seen = [r async for r in pipe.map(read_so_far, counted())]
    assert seen[0] == READ_AHEAD_ROUNDS * DISPATCHES_PER_WORKER * 2 > FIRST_MAP_CHUNK


async def test_map_queues_only_what_the_dispatch_slots_take_next(anyio_backend: Any) -> None:
    """While batches are small, map() keeps queued only the rounds of batches the
    dispatch slots take next, not the whole free window: reading on would keep the
    event loop's thread busy while the completions of the batches out wait for it.
    Here the first items block, so no batch completes and the size stays at one item;
    the feeder then waits for a dispatch, however many turns the loop gets."""
    release = threading.Event()

    def blocked(x: int) -> int:  # runs in a thread of this process
        release.wait(10)
        return x

    queued_at_most = READ_AHEAD_ROUNDS * DISPATCHES_PER_WORKER * 2  # batches of one item
    try:
        async with OrderedPipeline(workers=2, executor="thread") as pipe:
            results = pipe.map(blocked, range(3000))
            await wait_until(lambda: pipe.statistics().queued >= queued_at_most)
            for _ in range(100):  # a feeder reading on takes a chunk a turn
                await anyio.lowlevel.checkpoint()
            stats = pipe.statistics()
            assert stats.window > 2 * queued_at_most  # the window had room for more
            # (a chunk is at least FIRST_MAP_CHUNK items)
            assert queued_at_most <= stats.queued < queued_at_most + FIRST_MAP_CHUNK
            assert stats.accepted == stats.queued + stats.in_flight
            release.set()
            assert [r async for r in results] == list(range(3000))
    finally:
        release.set()


async def test_close_ends_a_feeder_waiting_for_a_dispatch(anyio_backend: Any) -> None:
    """close() while map()'s feeder waits for a dispatch (every item out blocks, so
    none comes): the feeder stops at once and closes its input; what it accepted is
    delivered."""
    release = threading.Event()
    input_closed = threading.Event()

    def blocked(x: int) -> int:  # runs in a thread of this process
        release.wait(10)
        return x

    def numbers() -> Iterator[int]:
        try:
            yield from range(3000)
        finally:
            input_closed.set()

    try:
        async with OrderedPipeline(workers=2, executor="thread") as pipe:
            results = pipe.map(blocked, numbers())
            await wait_until(lambda: pipe.statistics().queued >= READ_AHEAD_ROUNDS)
            pipe.close()
            await wait_until(input_closed.is_set, limit=5)
            accepted = pipe.statistics().accepted
            release.set()
            assert [r async for r in results] == list(range(accepted))
    finally:
        release.set()


async def test_a_fixed_window_stays_as_given(anyio_backend: Any) -> None:
    async with OrderedPipeline(workers=2, window=100) as pipe:
        assert [r async for r in pipe.map(workloads.square, range(5000))][-1] == 4999**2
        assert pipe.statistics().window == 100


@pytest.mark.parametrize("target", [0.05, 0.25])
def test_every_function_aims_at_the_backends_target(target: float) -> None:
    sizers = BatchSizers(target_seconds=target)
    sizer = sizers.of("f")
    for _ in range(20):  # items of 10 ms each: the size settles at target / 10 ms
        sizer.observe(sizer.size, sizer.size * 0.01, full=True)
    assert sizer.size == round(target / 0.01)
    assert sizers.of("g").size == 1  # a new function starts at one item, as ever
