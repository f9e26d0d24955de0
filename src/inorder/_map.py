"""``inorder.map``: the one-liner for scripts, a pipeline that starts and stops itself."""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
)
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, Unpack

from ._feeding import check_map_arguments
from ._options import PipelineOptions
from ._pipeline import OrderedPipeline
from ._results import Results
from ._stats import PipelineStatistics

T = TypeVar("T")


class MapStream(Generic[T]):
    """The async iterator returned by ``inorder.map``.

    Workers start on the first step of the iteration (or on ``async with``) and stop when the
    results run out, on ``aclose()``, or on leaving ``async with``. ``break`` alone does
    not close an async iterator in Python: use ``async with inorder.map(...) as results``
    (or ``contextlib.aclosing``) when you may stop early. A stream that is dropped
    without being closed still has its worker processes killed when it is collected.
    """

    def __init__(
        self,
        fn: Callable[..., T],
        iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...],
        options: PipelineOptions,
    ) -> None:
        check_map_arguments(fn, iterables)
        self._pipeline = OrderedPipeline(**options)
        self._fn = fn
        self._iterables = iterables
        self._started = False
        self._finished = False
        self._results: Results | None = None
        self._held: Iterator[T] | None = None  # see _iterate

    def __aiter__(self) -> AsyncIterator[T]:
        # Kept, like the pipeline's, so a loop left early can go on, and renewed after
        # an item's error, so the iteration goes on after it too.
        if self._results is None:
            self._results = Results(self._iterate)
        return self._results

    async def _iterate(self, renew: Callable[[], None]) -> AsyncGenerator[T, None]:
        """Start the pipeline, hand out its results, close it once they run out.

        The results come as lists (``chunks()``), so each costs this generator's step and
        a step of a list iterator, not a second generator's step as well. The list being
        handed out is ``_held``, so ``__anext__`` takes up where this stopped."""
        try:
            if not await self._begin():
                return
            async for results in self._pipeline.chunks():
                held = self._held = iter(results)
                for result in held:
                    yield result
            self._held = None
            await self.aclose()
        except GeneratorExit:
            raise
        except BaseException:
            renew()
            raise

    async def _begin(self) -> bool:
        if self._finished:
            return False
        if not self._started:
            await self._start()
        return True

    async def __anext__(self) -> T:
        held = self._held
        if held is not None:
            for item in held:
                return item
            self._held = None
        if not await self._begin():
            raise StopAsyncIteration
        try:
            result: T = await anext(self._pipeline)
        except StopAsyncIteration:
            await self.aclose()
            raise
        return result

    async def aclose(self) -> None:
        """Stop the workers and discard what is pending. Safe to call more than once."""
        self._finished = True
        await self._pipeline.aclose()
        if self._results is not None:
            await self._results.aclose()

    async def __aenter__(self) -> Self:
        if not self._started:
            await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def statistics(self) -> PipelineStatistics:
        """A frozen snapshot of the underlying pipeline's counters."""
        return self._pipeline.statistics()

    async def _start(self) -> None:
        if self._finished:
            raise RuntimeError("this inorder.map() stream was closed; call inorder.map() again")
        self._started = True
        await self._pipeline.__aenter__()
        try:
            self._pipeline.map(self._fn, *self._iterables)
        except BaseException:
            await self.aclose()
            raise


def map(  # mirrors the builtin on purpose
    fn: Callable[..., T],
    /,
    *iterables: Iterable[Any] | AsyncIterable[Any],
    **options: Unpack[PipelineOptions],
) -> MapStream[T]:
    """Apply ``fn`` to the items of ``iterables`` in parallel; yield results in order.

    Like the builtin ``map``: several iterables are zipped and stop at the shortest;
    they may be sync or async. Takes the options of ``OrderedPipeline`` (``workers``,
    ``window``, ``executor``, ``ordered``, ``on_error``)::

        async with inorder.map(transform, rows, workers=4) as results:
            async for result in results:
                ...

    Errors in arguments and options are raised here, before anything starts.
    """
    return MapStream(fn, iterables, options)


# Shown as inorder.X in reprs and tracebacks: where users import them from.
for _public in (
    MapStream,
    map,
):
    _public.__module__ = "inorder"
del _public
