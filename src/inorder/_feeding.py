"""map()'s feeder: reads the iterables into the pipeline as its window makes room.

The feeder is a task in the pipeline's task group (``OrderedPipeline.map`` starts it).
It talks to the pipeline only through ``Intake``: room in the window, and accepting
items. What it adds is how it reads:

* a sync input is read in chunks as large as the free window (no ``await`` per item),
  the first chunks small and doubling until the window has measured the items' pickled
  size (``FIRST_MAP_CHUNK``); the queue holds at most ``Intake.read_ahead`` items, and
  the feeder waits for a dispatch before it reads more (docs/decisions/0012);
* an input that may suspend (an async iterable among them) is read an item at a time,
  each accepted as soon as it is read;
* once the window is full, the feeder waits for room for a whole batch, not for a slot
  (docs/decisions/0005);
* if an input raises, its exception goes to the consumer in the item's place, and the
  stream ends; when the inputs end, the pipeline closes; either way the iterators are
  closed (generators run their ``finally`` blocks).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from ._errors import PipelineClosedError
from ._window import Window
from ._worker import ARGS, ONE

logger = logging.getLogger("inorder")

# With the automatic window, the feeder's first chunk holds this many items, and each
# next one at most twice the last until the window has measured the pickled size of a
# batch of them (as it is dispatched): a first chunk as large as the window could hold
# far more than its byte budget of large items, since the window starts, or was grown
# by items put() before, on sizes that say nothing of these. The ramp ends at that
# measurement, which keeps tiny items fast (docs/decisions/0005).
FIRST_MAP_CHUNK = 8


class Intake(Protocol):
    """The pipeline, as a feeder sees it."""

    @property
    def window(self) -> Window[Any]:
        """The pipeline's window: the feeder takes slots from it."""

    @property
    def accepting(self) -> bool:
        """Whether the pipeline still accepts items."""

    def refusal(self) -> Exception:
        """The error for reading on once the pipeline stopped accepting items."""

    def give_back(self, count: int) -> None:
        """Return ``count`` window slots taken and not used."""

    def wait_for_slot(self) -> Awaitable[None]:
        """Take one window slot, waiting in line with put()'s producers."""

    def wait_for_freed_room(self) -> Awaitable[None]:
        """Wait until the consumer frees room or the pipeline stops accepting items."""

    def batch_room(self, key: Any) -> int:
        """The window slots a whole batch of ``key``'s items takes now."""

    def read_ahead(self, key: Any) -> int:
        """The most of ``key``'s items worth having queued: what the dispatch slots
        take before the next read (the window may hold less)."""

    def queued(self) -> int:
        """How many items wait in the pipeline's queue for a dispatch slot."""

    def wait_for_dispatch(self) -> Awaitable[None]:
        """Wait until a batch leaves the queue or the pipeline stops accepting items."""

    def first_chunk(self) -> int | None:
        """How many items the first chunk holds while sizes are unmeasured, or ``None``
        when chunks need no ramp (a fixed window, or a codec that copies nothing)."""

    def sizes_measured(self) -> int:
        """A count that changes whenever the window measures the items' pickled size."""

    def accept_many(self, key: Any, shape: int, payloads: list[Any]) -> None:
        """Accept consecutive items (their window slots are taken); the list becomes the
        pipeline's."""

    def accept_input_error(self, error: BaseException) -> None:
        """Put an input's exception in the next place (a slot is taken) and close."""

    def close(self) -> None:
        """No more items."""


def check_map_arguments(fn: object, iterables: tuple[object, ...], name: str = "map") -> None:
    """Check the arguments of ``name()`` (map, imap) where it is called, before a feeder
    starts."""
    if not callable(fn):
        raise TypeError(f"{name}() needs a callable first, got {type(fn).__qualname__} {fn!r:.60}")
    if not iterables:
        raise TypeError(f"{name}() needs at least one iterable after the function")
    for position, iterable in enumerate(iterables, start=1):
        if not isinstance(iterable, (Iterable, AsyncIterable)):
            raise TypeError(
                f"{name}() argument {position + 1} must be an iterable or an async iterable, "
                f"got {type(iterable).__qualname__}"
            )


async def feed(
    intake: Intake, key: Any, iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]
) -> None:
    """Feed ``key``'s items drawn from ``iterables`` (one argument each, or a row of
    them) until the shortest ends, an input raises, or the pipeline stops accepting."""
    iterators: list[Iterator[Any] | AsyncIterator[Any]] = []
    shape = ONE if len(iterables) == 1 else ARGS

    async def read() -> None:
        iterators.extend(
            aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
        )
        if all(isinstance(it, Iterator) for it in iterators):
            items: Iterator[Any] = (
                iterators[0]  # type: ignore[assignment]
                if shape == ONE
                else zip(*iterators, strict=False)
            )
            await _feed_items(intake, key, shape, items)
        else:
            await _feed_items_async(intake, key, shape, iterators)

    await _run(intake, read, iterators)


async def _run(
    intake: Intake,
    read: Callable[[], Awaitable[None]],
    iterators: list[Iterator[Any] | AsyncIterator[Any]],
) -> None:
    """Run ``read()``: input errors go to the consumer in place, the pipeline closes
    when the input ends, and ``iterators`` are closed whatever happens."""
    try:
        await read()
    except PipelineClosedError:
        pass  # stopped while feeding: nothing more to read
    except Exception as exc:  # noqa: BLE001 - the consumer gets it in place
        await _fail_input(intake, exc)
    else:
        intake.close()
    finally:
        with anyio.CancelScope(shield=True):
            await _close_iterators(iterators)


async def _feed_items(intake: Intake, key: Any, shape: int, items: Iterator[Any]) -> None:
    """Read a sync iterator in chunks as large as the free window: no await per item."""
    window = intake.window
    ramp = intake.first_chunk()
    measured = intake.sizes_measured()
    while intake.accepting:
        ahead = intake.read_ahead(key) - intake.queued()
        if ahead <= 0:
            # The queue holds what the dispatch slots take: reading on would only keep
            # this thread busy while the completions of the batches out (and the
            # first results, and the sizer's next step) wait.
            await intake.wait_for_dispatch()
            continue
        wanted = window.capacity if ramp is None else min(ramp, window.capacity)
        wanted = min(wanted, max(FIRST_MAP_CHUNK, ahead))
        free = window.try_acquire_many(wanted)
        if not free:
            await intake.wait_for_slot()
            free = 1 + window.try_acquire_many(wanted - 1)
        free = await _gather_room(intake, key, free, wanted)
        chunk: list[Any] = []
        try:
            # extend() keeps what was read if the iterator raises part-way.
            chunk.extend(itertools.islice(items, free))
        finally:
            read = len(chunk)  # the chunk becomes the pipeline's, which cuts it
            if read < free:  # the input ended or failed: give back spare slots
                intake.give_back(free - read)
            if chunk:
                intake.accept_many(key, shape, chunk)
        if read < free:
            return
        if ramp is not None:  # the chunk was dispatched if a dispatch slot was free
            done = intake.sizes_measured() != measured or ramp >= window.capacity
            ramp = None if done else 2 * ramp
        # Let completions and the consumer run before reading the next chunk.
        await anyio.lowlevel.checkpoint()


async def _gather_room(intake: Intake, key: Any, free: int, wanted: int) -> int:
    """Hold the ``free`` window slots taken and wait for room for a whole batch of
    ``key``'s items (at most ``wanted``); how many slots are held then.

    Room read as soon as any was free made small batches: a consumer that lets other
    tasks run between items freed it a slot at a time, and a run smaller than a batch
    (from the ramp) freed room for a small chunk, whose run freed room for another, for
    the rest of the stream. A batch is at most the window's share for each call in
    flight (a quarter with two workers), so while the feeder waits, the rest of the
    window holds items in flight or results the consumer has yet to take: the wait
    costs neither the workers nor the consumer. Each wake sizes the batch afresh, so a
    window that shrank meanwhile is seen.
    """
    window = intake.window
    try:
        while True:
            if not intake.accepting:
                raise intake.refusal()
            batch = min(wanted, intake.batch_room(key))
            if free < batch:
                free += window.try_acquire_many(batch - free)
            if free >= batch:
                return free
            await intake.wait_for_freed_room()
    except BaseException:
        intake.give_back(free)
        raise


async def _wait_for_room(intake: Intake, key: Any) -> None:
    """Wait until the window has room for a whole batch of ``key``'s items, holding none
    of it (see ``_gather_room``): for input that may suspend between items, where slots
    held for items not read yet would be kept from put() meanwhile."""
    window = intake.window
    while True:
        if not intake.accepting:
            raise intake.refusal()
        if not window.waiting and window.free >= intake.batch_room(key):
            return
        await intake.wait_for_freed_room()


async def _feed_items_async(
    intake: Intake, key: Any, shape: int, iterators: list[Iterator[Any] | AsyncIterator[Any]]
) -> None:
    """Read input that may suspend an item at a time, each accepted as soon as it is
    read, so a slow producer's items go out one by one. Once the window is full, wait
    for room for a whole batch, not for a slot: a consumer that lets other tasks run
    between results frees the window a slot at a time, and each slot taken would make
    a batch of one item (docs/decisions/0005).
    """
    window = intake.window
    while intake.accepting:
        row = []
        for it in iterators:
            try:
                row.append(await anext(it) if isinstance(it, AsyncIterator) else next(it))
            except (StopIteration, StopAsyncIteration):
                return
        if not window.try_acquire():
            await _wait_for_room(intake, key)
            if not window.try_acquire():  # a put() came first
                await intake.wait_for_slot()
        intake.accept_many(key, shape, [row[0] if shape == ONE else tuple(row)])


async def _fail_input(intake: Intake, exc: Exception) -> None:
    try:
        if not intake.window.try_acquire():
            await intake.wait_for_slot()
    except PipelineClosedError:
        return  # nobody will read the error: the stream was shut down meanwhile
    intake.accept_input_error(exc)


async def _close_iterators(iterators: list[Iterator[Any] | AsyncIterator[Any]]) -> None:
    """Close what map() opened, so generators run their ``finally`` blocks."""
    for it in iterators:
        try:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
            else:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
        except Exception:  # logged; the other iterables still get closed
            logger.exception("closing an iterable given to map() failed")
