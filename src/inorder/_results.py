"""The iterator the pipeline's results are read through: generator steps that survive an
item's error."""

from __future__ import annotations

import types
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Self, cast


class Results:
    """An async iterator whose steps are those of an async generator, renewed on errors.

    What ``OrderedPipeline.__aiter__``, ``chunks()`` and ``inorder.map`` return. Each
    step is a step of an async generator made by ``start(renew)``, which costs less per
    item than a coroutine per ``__anext__``. An async generator ends for good
    once an exception leaves it, but iteration goes on after an item's error: the
    generator calls ``renew`` before an exception leaves it, so the next step runs a
    fresh generator on the same pipeline state.

    ``__anext__`` is the current generator's own bound ``__anext__``, set on a class made
    for each iterator (``__new__``): the interpreter finds it on the type and calls it with
    no Python frame in between. A method returning ``self._generator.__anext__()``
    would run one per item, and a property returning it a getter per item.
    """

    __slots__ = ("_generator", "_start")

    if TYPE_CHECKING:

        def __anext__(self) -> Awaitable[Any]: ...

    def __new__(cls, start: Callable[[Callable[[], None]], AsyncGenerator[Any, None]]) -> Self:
        own = type(cls.__name__, (cls,), {"__slots__": (), "__module__": cls.__module__})
        return object.__new__(own)

    def __init__(self, start: Callable[[Callable[[], None]], AsyncGenerator[Any, None]]) -> None:
        self._start = start
        self.renew()

    def renew(self) -> None:
        generator = self._generator = self._start(self.renew)
        type(self).__anext__ = generator.__anext__  # type: ignore[method-assign,assignment]

    def __aiter__(self) -> Self:
        return self

    async def aclose(self) -> None:
        """Close the generator now if it is suspended at a yield (a loop left early),
        rather than when it is collected: trio warns about async generators collected
        before they were exhausted. One that is running ends by itself."""
        generator = cast("types.AsyncGeneratorType[Any, None]", self._generator)
        if generator.ag_frame is not None and not generator.ag_running:
            await generator.aclose()
