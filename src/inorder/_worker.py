"""What runs inside a worker: a batch of calls in, a batch of outcomes out.

Every worker process imports this module, so it imports only the standard library
(``inorder/__init__.py`` imports the rest lazily for the same reason). Not even
cloudpickle: importing it takes a starting worker 11-14 ms, and a worker needs it only
to send back a result that plain pickle refuses. Functions that travel by value (lambdas,
``__main__``'s) import it as ``pickle.loads`` reads them.

A batch is a list of *segments*: consecutive items that share a function and a call
shape. Wire format of a process batch (built by ``_serialize.PickleCodec``)::

    functions: {digest: cloudpickle bytes}            each callable once per batch
    segments:  [(digest, shape, count, payloads, flagged, buffers), ...]
               payloads: one pickle of the segment's list of arguments
               buffers: its large ``bytes`` arguments, out of band (pickle protocol 5)
    returns:   (pickled [outcome, ...], seconds of work, failures); in inorder's own
               workers the pickle comes with its large bytes results out of band

Shapes: ``ONE`` calls ``fn(x)``, ``ARGS`` calls ``fn(*args)``, ``KWARGS`` calls
``fn(*args, **kwargs)`` from an ``(args, kwargs)`` pair, and ``PICKLED`` does the same
from that pair pickled on its own (by ``put()``, which checks picklability item by item).
``flagged`` segments hold ``BadArgument`` placeholders for items that could not be
pickled, each of which becomes that item's ``TypeError``.

A callable is unpickled once per worker process and cached by digest, so a lambda sent
with every batch costs its unpickling only once per worker.

In inorder's own worker processes (``_worker_process``) every item marks its index (and,
when a timeout applies, its start time) in a slot of shared memory that the parent
reads: that is how the parent knows which item a dead worker was running, and when an
item overran its timeout, without a message per item.
"""

from __future__ import annotations

import os
import pickle
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable

from . import _wire
from ._slots import INDEX, NOT_IN_ITEM, STARTED

TYPE_CHECKING = False  # typing's flag without importing typing: see inorder/__init__.py
if TYPE_CHECKING:
    from typing import Any, TypeAlias

# Callables kept unpickled per worker. Big enough for any realistic mix of functions in
# one stream; bounded so a stream of fresh lambdas cannot grow a worker without limit.
FUNCTION_CACHE_SIZE = 256

_functions: OrderedDict[bytes, Callable[..., Any]] = OrderedDict()

# Call shapes: how a segment's payloads are applied to its function.
ONE, ARGS, KWARGS, PICKLED = 0, 1, 2, 3

if TYPE_CHECKING:
    WireSegment: TypeAlias = tuple[bytes, int, int, bytes, bool, list[Any]]


class WorkerState:
    """What one of inorder's own worker processes keeps between batches.

    ``_worker_process`` installs one (``install``) as the process starts. Elsewhere
    (threads, a borrowed executor) there is none: nobody reads progress there.
    """

    __slots__ = ("fields", "items_run", "large_results", "max_items", "runs", "timed")

    def __init__(self, fields: Any, *, timed: bool, max_items: int | None) -> None:
        self.fields = fields  # this worker's slot of shared memory (see _slots)
        self.timed = timed  # items have a timeout: each marks its start time
        self.max_items = max_items  # max_tasks_per_child
        self.items_run = 0  # items this process has run, for max_tasks_per_child
        self.runs: list[tuple[int, int]] = []  # the job's sequence numbers, (start, count)
        self.large_results = False  # large bytes results leave the pickle


_state: WorkerState | None = None


def install(state: WorkerState) -> None:
    """Make ``state`` this process's (in inorder's own worker processes only)."""
    global _state
    _state = state


class Retire(Exception):
    """This worker must not start the batch: it would run more than ``max_tasks_per_child``."""


class BatchLost(Exception):
    """A batch came back without its outcomes: the fact a backend reports, as the
    exception of the batch's future. The pipeline decides what it means for the items.

    ``started``: whether the batch began to run (if not, every item runs again).
    ``running``: the index in the batch of the item that was running when it was lost,
    or ``None`` when it was lost outside any item (loading the batch, pickling its
    results) or before it started. ``error``: the exception that item yields, built by
    the backend, which knows why it was lost (``WorkerCrashedError`` with the pid and
    exit status, ``TaskTimeoutError`` with the timeout); also the one a batch of a single
    item yields when it was lost outside the item.
    """

    def __init__(self, started: bool, running: int | None, error: BaseException | None) -> None:
        super().__init__(started, running, error)
        self.started = started
        self.running = running
        self.error = error


if TYPE_CHECKING:
    DirectSegment: TypeAlias = tuple[Callable[..., Any], int, list[Any]]


class Failure:
    """An item's exception on its way back to the parent.

    ``traceback`` is the formatted worker traceback (``None`` when the item ran in a
    thread of the parent, where the exception keeps its live traceback).
    """

    __slots__ = ("exception", "function", "pid", "traceback")

    def __init__(
        self,
        exception: BaseException,
        function: str,
        traceback: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.exception = exception
        self.function = function
        self.traceback = traceback
        self.pid = pid

    def __reduce__(self) -> tuple[Any, ...]:
        return (Failure, (self.exception, self.function, self.traceback, self.pid))

    def __repr__(self) -> str:
        return f"Failure({self.exception!r}, function={self.function!r}, pid={self.pid})"


def describe(fn: object) -> str:
    """A short name for a callable, for error notes (a wrapper's ``__wrapped__`` one's)."""
    fn = getattr(fn, "__wrapped__", fn)
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        return repr(fn)
    return f"{module}.{name}" if module and module != "builtins" else str(name)


class BadArgument:
    """Stands in for an item whose arguments could not be pickled in the parent."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return (BadArgument, (self.message,))


def run_pickled(
    functions: dict[bytes, bytes],
    segments: list[WireSegment],
    runs: list[tuple[int, int]] | None = None,
) -> tuple[bytes, float, int]:
    """Run a batch that crossed a process boundary.

    Returns its pickled outcomes, the seconds of work, and how many outcomes are
    failures (a batch without any is handed out by the parent without per-item checks).
    Raises ``BatchLost`` (started, no item running) when the arguments of a batch of
    several items cannot be unpickled as one: each item is then sent again alone, so
    that only the bad one fails. ``runs``: the items' sequence numbers, for the log
    records they emit.
    """
    started = time.perf_counter()
    pid = os.getpid()
    state = _state
    if state is not None:
        state.runs = runs or []
        count = sum(segment[2] for segment in segments)
        limit = state.max_items
        if limit is not None and state.items_run and state.items_run + count > limit:
            raise Retire
        state.items_run += count
    fields = None if state is None else state.fields
    outcomes: list[Any] = []
    failures = 0
    # Where each segment's outcomes end, and its function's name: an outcome that
    # cannot be pickled is reported as its function's (see dump_outcomes).
    ends: list[tuple[int, str]] = []
    for digest, shape, count, blob, flagged, buffers in segments:
        ends.append((len(outcomes) + count, "<a function that could not be loaded>"))
        if fields is not None:
            # Loading the function and the arguments is no item's own work: a crash
            # here makes every item of the batch a suspect, to be re-run alone.
            fields[INDEX] = NOT_IN_ITEM
        fn = _load_function(digest, functions[digest], pid)
        if isinstance(fn, Failure):
            outcomes.extend([fn] * count)
            failures += count
            continue
        ends[-1] = (ends[-1][0], describe(fn))
        try:
            payloads = pickle.loads(blob, buffers=buffers)
        except BaseException as exc:  # noqa: BLE001 - reported for each item of the segment
            if state is not None and len(outcomes) + count > 1:
                raise BatchLost(True, None, exc) from None
            outcomes.extend([Failure(exc, describe(fn), _format(exc), pid)] * count)
            failures += count
            continue
        if flagged:
            failures += _call_flagged(fn, shape, payloads, outcomes, pid, state)
        elif state is not None:
            failures += _call_tracked(fn, shape, payloads, outcomes, pid, state)
        else:
            failures += _call_all(fn, shape, payloads, outcomes, pid)
    if fields is not None:
        fields[INDEX] = NOT_IN_ITEM  # a crash from here on is nobody's in particular
    # In inorder's own workers a large blob, and large bytes results, cross the pipe raw
    # (see _wire); a borrowed executor pickles with protocols that cannot carry them.
    blob, unpicklable, buffers = dump_outcomes(
        outcomes, raw_bytes=state is not None and state.large_results, functions=ends
    )
    if state is None:
        return blob, time.perf_counter() - started, failures + unpicklable
    # Looking for large results costs a check per item: only once they are large.
    state.large_results = _wire.nbytes(blob, buffers) >= _wire.OUT_OF_BAND_BYTES * max(
        1, len(outcomes)
    )
    result = (_wire.out_of_band(blob), buffers) if buffers else _wire.out_of_band(blob)
    return result, time.perf_counter() - started, failures + unpicklable  # type: ignore[return-value]


def current_seq() -> int | None:
    """The sequence number of the item this worker process is running, if any."""
    state = _state
    if state is None:
        return None
    index = int(state.fields[INDEX])
    if index < 0:
        return None
    for start, count in state.runs:
        if index < count:
            return start + index
        index -= count
    return None


def run_direct(segments: list[DirectSegment]) -> tuple[list[Any], float, int]:
    """Run a batch in a thread of the parent: no pickling, live tracebacks."""
    started = time.perf_counter()
    outcomes: list[Any] = []
    failures = 0
    for fn, shape, payloads in segments:
        failures += _call_all(fn, shape, payloads, outcomes, None)
    return outcomes, time.perf_counter() - started, failures


def _call_all(
    fn: Callable[..., Any], shape: int, payloads: list[Any], outcomes: list[Any], pid: int | None
) -> int:
    """Call ``fn`` on every payload, appending outcomes; returns how many failed."""
    # One loop per shape, so the per-item path has no branches. A try block costs
    # nothing until something raises (Python 3.11+).
    append = outcomes.append
    failures = 0
    if shape == ONE:
        for x in payloads:
            try:
                append(fn(x))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back
                append(_failure(exc, fn, pid))
                failures += 1
    elif shape == ARGS:
        for args in payloads:
            try:
                append(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back
                append(_failure(exc, fn, pid))
                failures += 1
    elif shape == KWARGS:
        for args, kwargs in payloads:
            try:
                append(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back
                append(_failure(exc, fn, pid))
                failures += 1
    else:
        for payload in payloads:
            try:
                args, kwargs = pickle.loads(payload)
                append(fn(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back
                append(_failure(exc, fn, pid))
                failures += 1
    return failures


def _call_tracked(
    fn: Callable[..., Any],
    shape: int,
    payloads: list[Any],
    outcomes: list[Any],
    pid: int,
    state: WorkerState,
) -> int:
    """``_call_all`` that marks each item's index (and start time) in shared memory."""
    progress = state.fields
    clock = time.monotonic if state.timed else None
    # A float: the slot holds doubles, and a float is stored without a conversion
    # (docs/decisions/0021).
    index = float(len(outcomes))  # the batch index of payloads[0]
    append = outcomes.append
    failures = 0
    if shape == ONE and clock is None:  # the common case, without per-item branches
        for x in payloads:
            progress[INDEX] = index
            index += 1.0
            try:
                append(fn(x))
            except BaseException as exc:  # noqa: BLE001 - every outcome goes back
                append(_failure(exc, fn, pid))
                failures += 1
        return failures
    for payload in payloads:
        if clock is not None:
            progress[STARTED] = clock()
        progress[INDEX] = index
        index += 1.0
        try:
            if shape == ONE:
                append(fn(payload))
            elif shape == ARGS:
                append(fn(*payload))
            elif shape == KWARGS:
                append(fn(*payload[0], **payload[1]))
            else:
                args, kwargs = pickle.loads(payload)
                append(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - every outcome goes back
            append(_failure(exc, fn, pid))
            failures += 1
    return failures


def _call_flagged(
    fn: Callable[..., Any],
    shape: int,
    payloads: list[Any],
    outcomes: list[Any],
    pid: int,
    state: WorkerState | None,
) -> int:
    failures = 0
    for payload in payloads:
        if type(payload) is BadArgument:
            outcomes.append(Failure(TypeError(payload.message), describe(fn)))
            failures += 1
        elif state is not None:
            failures += _call_tracked(fn, shape, [payload], outcomes, pid, state)
        else:
            failures += _call_all(fn, shape, [payload], outcomes, pid)
    return failures


def _failure(exc: BaseException, fn: Callable[..., Any], pid: int | None) -> Failure:
    if pid is None:  # a thread of the parent: the exception keeps its live traceback
        return Failure(exc, describe(fn))
    return Failure(exc, describe(fn), _format(exc), pid)


def dump_outcomes(
    outcomes: list[Any],
    *,
    raw_bytes: bool = False,
    functions: list[tuple[int, str]] | None = None,
) -> tuple[bytes, int, list[pickle.PickleBuffer]]:
    """Pickle a batch of outcomes; one that cannot be pickled becomes that item's error.

    Returns the pickle, how many results had to be replaced by a failure, and (with
    ``raw_bytes``) the large ``bytes`` results left out of the pickle. ``functions``:
    for each segment of the batch, where its outcomes end and its function's name.
    """
    buffers: list[pickle.PickleBuffer] = []
    try:
        if raw_bytes:
            wrapped = [_wire.out_of_band(outcome) for outcome in outcomes]
            blob = pickle.dumps(
                wrapped, pickle.HIGHEST_PROTOCOL, buffer_callback=_wire.collector(buffers)
            )
            return blob, 0, buffers
        return pickle.dumps(outcomes, pickle.HIGHEST_PROTOCOL), 0, buffers
    except Exception:  # noqa: BLE001 - find which outcome is to blame, below
        buffers.clear()
    names = iter(functions or [])
    end, name = next(names, (len(outcomes), "<unknown function>"))
    checked = []
    for index, outcome in enumerate(outcomes):
        while index >= end:
            end, name = next(names, (len(outcomes), "<unknown function>"))
        checked.append(_picklable(outcome, name))
    replaced = sum(
        type(c) is Failure and type(o) is not Failure
        for o, c in zip(outcomes, checked, strict=True)
    )
    return pickle.dumps(checked, pickle.HIGHEST_PROTOCOL), replaced, buffers


def _picklable(outcome: Any, function: str) -> Any:
    """``outcome`` itself if it can cross to the parent, else a Failure that explains why
    (``function``: the name of the function that returned it)."""
    try:
        pickle.dumps(outcome, pickle.HIGHEST_PROTOCOL)
        return outcome
    except Exception:  # noqa: BLE001 - plain pickle refused; cloudpickle may still manage
        pass
    try:
        # Results that plain pickle refuses (a lambda, a local class) may still travel
        # by value; pickle.loads in the parent reads cloudpickle's output.
        import cloudpickle  # here: rarely needed, and costly to import at worker start

        return _CloudPickled(cloudpickle.dumps(outcome, pickle.HIGHEST_PROTOCOL))
    except Exception as exc:  # noqa: BLE001 - reported as the item's outcome
        reason = f"{type(exc).__name__}: {exc}"
    if type(outcome) is Failure:
        replacement = TypeError(
            f"the item raised {type(outcome.exception).__qualname__}: {outcome.exception}, "
            f"but that exception could not be pickled to send it to the parent ({reason}); "
            "the worker traceback is attached"
        )
        return Failure(replacement, outcome.function, outcome.traceback, outcome.pid)
    replacement = TypeError(
        f"the result, a {type(outcome).__qualname__}, could not be pickled to send it to "
        f"the parent ({reason}); return plain data from the function"
    )
    return Failure(replacement, function, None, os.getpid())


class _CloudPickled:
    """A result that only cloudpickle could serialise, unwrapped on unpickling."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def __reduce__(self) -> tuple[Any, ...]:
        return (pickle.loads, (self.blob,))


def _load_function(digest: bytes, blob: bytes, pid: int) -> Callable[..., Any] | Failure:
    fn = _functions.get(digest)
    if fn is not None:
        _functions.move_to_end(digest)
        return fn
    try:
        loaded: Callable[..., Any] = pickle.loads(blob)
    except BaseException as exc:  # noqa: BLE001 - each call of this function reports it
        error = RuntimeError(
            f"could not unpickle the function in worker process {pid}: "
            f"{type(exc).__name__}: {exc}. Is its module importable in the worker?"
        )
        error.__cause__ = exc
        return Failure(error, "<function unpickling>", _format(exc), pid)
    _functions[digest] = fn = loaded
    if len(_functions) > FUNCTION_CACHE_SIZE:
        _functions.popitem(last=False)
    return fn


# Frames in this package are how an item was called, not where it failed.
_PACKAGE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def _format(exc: BaseException) -> str:
    """The traceback as text, starting at the first frame outside inorder."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        if os.path.dirname(tb.tb_frame.f_code.co_filename) != _PACKAGE_DIRECTORY:
            break
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
