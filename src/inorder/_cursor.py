"""The consumer's position in the results, and what a failed item yields (pure).

Outcomes reach the consumer a *run* at a time: the consecutive outcomes of one batch,
popped from the reorder buffer once they and every item before them are done, and
unpickled in one call. The cursor hands a run's outcomes out (one at a time, or as lists
for ``chunks()``) and applies ``on_error`` to failures on the way. Outcomes handed out
are *settled* in bulk, when the pipeline calls ``settle()``: that counts them and tells
the pipeline how many window slots to free.

A run without failures (a *clean* run) is handed out through its list iterator when the
consumer steps one item at a time: the cheapest step there is. While one is, ``index``
lags behind and ``sync()`` brings it up to date from the iterator.

No event loop in here: ``ResultCursor`` never waits. When its run is handed out it says
so (``NEXT_RUN``, ``None``) and the pipeline loads the next one.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
import operator
from collections.abc import Iterator
from typing import Any, Final

from ._errors import RemoteTraceback
from ._options import OnError
from ._worker import Failure

logger = logging.getLogger("inorder")


class InputFailure:
    """The iterable given to map() raised: re-raised in its place, then the stream ends."""

    __slots__ = ("exception",)

    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


# Outcomes that are not plain results; everything else is yielded as it is.
SPECIAL_OUTCOMES: Final = frozenset({Failure, InputFailure})

# What ``next()`` returns for a failed item that on_error="skip" dropped, and when the
# current run is all handed out.
SKIPPED: Final[Any] = object()
NEXT_RUN: Final[Any] = object()


class ResultCursor:
    """Where the consumer is: the run it is handed, how far it got, what it was handed.

    Counts: ``handed`` outcomes settled (yielded or skipped), ``skipped`` and ``failed``
    (failures delivered, skipped or not). ``taken`` and ``waiting`` include what was
    handed out since the last ``settle()``.
    """

    __slots__ = (
        "clean",
        "failed",
        "handed",
        "index",
        "iterator",
        "length",
        "on_error",
        "outcomes",
        "settled",
        "skipped",
        "start",
    )

    def __init__(self, on_error: OnError) -> None:
        self.on_error = on_error
        self.start = 0  # the sequence number of outcomes[0]
        self.outcomes: list[Any] = []
        self.clean = True  # the run holds no failure: handed out without checks
        self.length = 0
        self.iterator: Iterator[Any] | None = None  # a clean run handed out by iterator
        self.index = 0  # the next outcome of the run to hand out
        self.settled = 0  # the outcomes of the run settled so far
        self.handed = 0
        self.skipped = 0
        self.failed = 0

    def load(self, start: int, outcomes: list[Any], clean: bool, *, by_iterator: bool) -> None:
        """Make a run current (the last one must be settled). ``by_iterator``: hand a
        clean run out through its list iterator (else by index: ``chunks()`` slices it)."""
        self.start = start
        self.outcomes = outcomes
        self.clean = clean
        self.length = len(outcomes)
        self.index = self.settled = 0
        self.iterator = iter(outcomes) if clean and by_iterator else None

    def clear(self) -> None:
        """Drop the current run (the pipeline stopped). In place: an iterator over it
        may still be held by a suspended generator."""
        self.outcomes.clear()
        self.iterator = None
        self.length = self.index = self.settled = 0

    def sync(self) -> None:
        """Bring ``index`` up to date while a run is handed out by its iterator."""
        run = self.iterator
        if run is not None:
            self.index = self.length - operator.length_hint(run)

    def end_iteration(self, run: Iterator[Any]) -> None:
        """``run`` (a run's iterator) is exhausted; unless a newer run replaced it."""
        if self.iterator is run:
            self.iterator = None
            self.index = self.length

    def settle(self) -> int:
        """Count the outcomes handed out since the last call; return how many."""
        self.sync()
        handed = self.index - self.settled
        if handed:
            self.settled = self.index
            self.handed += handed
        return handed

    @property
    def yielded(self) -> int:
        """Outcomes settled and not skipped."""
        return self.handed - self.skipped

    @property
    def taken(self) -> int:
        """Outcomes the consumer was given (some may not be settled yet)."""
        self.sync()
        return self.handed - self.skipped + self.index - self.settled

    @property
    def waiting(self) -> int:
        """Outcomes of the current run not handed out yet."""
        self.sync()
        return self.length - self.index

    def next(self) -> Any:
        """The next outcome of the run, by ``on_error`` for a failure (which may raise
        its exception, or return ``SKIPPED``); ``NEXT_RUN`` once the run is handed out."""
        run = self.iterator
        if run is not None:
            for outcome in run:
                return outcome
            self.end_iteration(run)
        index = self.index
        if index == self.length:
            return NEXT_RUN
        self.index = index + 1
        outcome = self.outcomes[index]
        if type(outcome) not in SPECIAL_OUTCOMES:
            return outcome
        return self.deliver(self.start + index, outcome)

    def next_chunk(self, limit: int, *, extends: bool = False) -> list[Any] | None:
        """The run's next outcomes as a list of at most ``limit``, up to a failure that
        is to be raised (raised by the next call); ``None`` once the run is handed out.

        The list may be empty (every outcome in it was skipped). ``extends``: the list
        will extend one that holds outcomes already, so a failure to be raised ends it
        even when it comes first.
        """
        run = self.iterator
        if run is not None:
            # A run that a step of async for began: go on through its iterator, which a
            # loop left early shares, so that no outcome is handed out twice.
            chunk = list(itertools.islice(run, limit))
            if chunk:
                return chunk
            self.end_iteration(run)
        index, length = self.index, self.length
        if index == length:
            return None
        end = min(length, index + limit)
        if self.clean:
            self.index = end
            return self.outcomes[index:end]
        chunk = []
        outcomes = self.outcomes
        while index < end:
            outcome = outcomes[index]
            if type(outcome) in SPECIAL_OUTCOMES:
                stops = self.on_error == "raise" or type(outcome) is InputFailure
                if stops and (chunk or extends):
                    break  # raised by the next call, after the outcomes before it
                self.index = index = index + 1
                outcome = self.deliver(self.start + index - 1, outcome)
                if outcome is SKIPPED:
                    continue
            else:
                index += 1
            chunk.append(outcome)
        self.index = index
        return chunk

    def deliver(self, seq: int, outcome: Any) -> Any:
        """A failure or an input error, as ``on_error`` says: raised, returned, or
        ``SKIPPED`` (logged on the ``"inorder"`` logger)."""
        if type(outcome) is InputFailure:
            raise outcome.exception
        self.failed += 1
        error = as_exception(seq, outcome)
        if self.on_error == "skip":
            self.skipped += 1
            logger.warning(
                "item %d failed in %s and was skipped (on_error='skip')",
                seq,
                outcome.function,
                exc_info=error,
            )
            return SKIPPED
        if self.on_error == "return":
            return error
        raise error


def as_exception(seq: int, failure: Failure) -> BaseException:
    """The exception a failed item raises in the parent: the user's own, annotated.

    Items that failed together may share one exception object (a batch its worker could
    not load, a pool that could not start workers); each item after the first gets a
    copy, so that a note naming one item is never added to another's exception.
    """
    error = failure.exception
    earlier = getattr(error, "_inorder_delivered", None)  # (item, its notes before ours)
    if earlier is not None and earlier[0] != seq:
        error = _twin(error, earlier[1])
    notes = tuple(getattr(error, "__notes__", ()))
    if failure.traceback is not None:
        error.__cause__ = RemoteTraceback(failure.traceback)
    where = f" (worker process {failure.pid})" if failure.pid else ""
    error.add_note(f"inorder: item {seq} failed in {failure.function}{where}")
    with contextlib.suppress(AttributeError, TypeError):
        error._inorder_delivered = (seq, notes)  # type: ignore[attr-defined]
    if not isinstance(error, Exception):
        # SystemExit, KeyboardInterrupt and friends from a worker must not end the parent.
        wrapped = RuntimeError(
            f"item {seq} raised {type(error).__name__}({error}) in {failure.function}{where}"
        )
        wrapped.__cause__ = error
        error = wrapped
    # Read by sequence_number(): the item of an error yielded out of order.
    with contextlib.suppress(AttributeError, TypeError):
        error._inorder_seq = seq  # type: ignore[attr-defined]
    return error


def sequence_number(error: BaseException) -> int | None:
    """The sequence number of the item whose failure ``error`` is (what ``put()``
    returned for it), or ``None`` for an exception that no item raised.

    An item's error says its position in the order where ``async for`` yields it; with
    ``ordered=False`` (or results of several pipelines mixed), this tells which item
    it was::

        async for outcome in pipe:  # on_error="return", ordered=False
            if isinstance(outcome, Exception):
                print("item", inorder.sequence_number(outcome), "failed:", outcome)
    """
    seq = getattr(error, "_inorder_seq", None)
    return seq if isinstance(seq, int) else None


# Attributes inorder sets on an item's exception: a twin starts without them.
_ANNOTATIONS = ("_inorder_delivered", "_inorder_seq", "__notes__")


def _twin(error: BaseException, notes: tuple[str, ...]) -> BaseException:
    """A copy of ``error`` as it was before inorder annotated it (``notes``: its own)."""
    try:
        twin = _copy_of(error)
    except Exception:  # noqa: BLE001 - cannot be rebuilt from its args: shared as it is
        return error
    for note in notes:
        twin.add_note(note)
    twin.__cause__ = error.__cause__
    twin.__context__ = error.__context__
    twin.__suppress_context__ = error.__suppress_context__
    return twin.with_traceback(error.__traceback__)


def _copy_of(error: BaseException) -> BaseException:
    """A shallow copy of ``error`` with a ``__dict__`` of its own, without inorder's
    annotations. Built from the exception's own ``__reduce_ex__``, not ``copy.copy``:
    a reducer registered with copyreg for every exception may share the original's
    ``__dict__`` with the copy (tblib's, which ``distributed`` installs on import, does),
    and notes added to one would appear on the other."""
    reduced = error.__reduce_ex__(2)
    if isinstance(reduced, str):
        return copy.copy(error)  # a singleton: nothing to share
    rebuild, args, *rest = reduced
    twin: BaseException = rebuild(*args)
    state = rest[0] if rest else None
    if isinstance(state, dict):
        for name, value in state.items():
            if name not in _ANNOTATIONS:
                setattr(twin, name, value)
    elif state is not None:
        raise TypeError(f"cannot copy the state of {type(error).__qualname__}")
    return twin


sequence_number.__module__ = "inorder"  # where users import it from
