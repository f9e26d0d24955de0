"""How calls travel to workers and outcomes come back: one codec per kind of executor.

``PickleCodec`` is for workers in other processes. It checks at ``put()`` that the
arguments can be pickled (plain builtin values need no check), so a bad argument fails
at the boundary, in the caller's frame, naming the argument, and the stream stays
usable; arguments travel as one pickle per segment slice, made at dispatch, and an item
of ``map()`` that cannot be pickled fails alone, in its place. Callables go through cloudpickle
(importable functions by reference, lambdas, closures and ``__main__`` functions by value),
once per callable: the bytes are cached in the parent (by identity; a bound method by its
instance and function) and the unpickled function by digest in each worker.

``DirectCodec`` is for threads of the parent: nothing is copied.
"""

from __future__ import annotations

import gc
import hashlib
import io
import pickle
import types
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import cloudpickle

from . import _wire, _worker
from ._recent import BOUND_METHODS, Recent

# Serialised callables kept per pipeline. A hit saves the cloudpickle call (15-40 us for
# a lambda); the cache keeps a reference to each callable so its id() cannot be reused.
FUNCTION_CACHE_SIZE = 256

# Argument types that plain pickle (C, ~0.3 us) always handles exactly as cloudpickle
# would. Anything else goes through cloudpickle (~2 us), which also handles lambdas and
# __main__ functions *inside* the arguments by value. A single argument of these types
# needs no check on its way to any worker, so put()'s lane takes it (see _pipeline).
PLAIN_TYPES = frozenset({int, float, str, bytes, bool, type(None), complex})

_ONE = _worker.ONE  # a module global: one lookup less per put()


class Job(NamedTuple):
    """One executor call: ``function(*args)`` in a worker."""

    function: Callable[..., Any]
    args: tuple[Any, ...]
    nbytes: int = 0  # the pickled size of its arguments (0: not pickled, or unknown)


# An accepted call as it waits for dispatch, ``(key, shape, payload)``: items sharing
# ``key`` and ``shape`` travel as one segment. A plain tuple: it is built once per put().
Prepared = tuple[Any, int, Any]


class Part(NamedTuple):
    """A slice of consecutive items of one segment, cut for a batch."""

    key: Any
    shape: int
    payloads: list[Any]


class Codec(Protocol):
    """Turns accepted items into executor jobs and job results into outcomes."""

    # Whether its jobs report the pickled size of their arguments (``Job.nbytes``).
    measures_sizes: ClassVar[bool]

    def prepare(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Prepared:
        """An item from ``put()``. Raises TypeError for what cannot reach a worker."""
        ...

    def key(self, fn: Callable[..., Any]) -> Any:
        """The segment key of ``fn``, for items fed by ``map()`` (checked per batch)."""
        ...

    def job(self, parts: Sequence[Part], runs: list[tuple[int, int]]) -> Job:
        """One executor call running ``parts`` in order (``runs``: their sequence numbers)."""
        ...

    def outcomes(self, payload: Any, count: int, failures: int) -> Outcomes:
        """The per-item outcomes (values and ``Failure``s) of a job's payload."""
        ...

    def results_size(self, payload: Any) -> int | None:
        """The bytes a job's pickled outcomes take (raw buffers included), or ``None``
        when they were not pickled."""
        ...


def _shape_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, Any]:
    if kwargs:
        return _worker.KWARGS, (args, kwargs)
    if len(args) == 1:
        return _worker.ONE, args[0]
    return _worker.ARGS, args


class DirectCodec:
    """Items run in threads of this process: calls and results are passed as they are."""

    measures_sizes: ClassVar[bool] = False

    def __init__(self) -> None:
        # The first of each run of equal bound methods: the key of their segments.
        self._methods: Recent[Callable[..., Any]] = Recent(FUNCTION_CACHE_SIZE)

    def prepare(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Prepared:
        if type(fn) in BOUND_METHODS:
            fn = self._first_equal(fn)
        if len(args) == 1 and not kwargs:  # put() runs this per item: no call for fn(x)
            return (fn, _ONE, args[0])
        return (fn, *_shape_of(args, kwargs))

    def key(self, fn: Callable[..., Any]) -> Any:
        return self._first_equal(fn) if type(fn) in BOUND_METHODS else fn

    def _first_equal(self, method: Callable[..., Any]) -> Callable[..., Any]:
        """The first bound method seen equal to ``method``: one segment key for them all."""
        first = self._methods.get(method)
        if first is None:
            self._methods.add(method, method)
            return method
        return first

    def job(self, parts: Sequence[Part], runs: list[tuple[int, int]]) -> Job:
        return Job(_worker.run_direct, ([(p.key, p.shape, p.payloads) for p in parts],))

    def outcomes(self, payload: list[Any], count: int, failures: int) -> Outcomes:
        return Outcomes(payload, failures)

    def results_size(self, payload: list[Any]) -> None:
        return None


class SerializedFunction(NamedTuple):
    digest: bytes
    blob: bytes
    name: str


class PickleCodec:
    """Items run in other processes: arguments cross as one pickle per segment slice.

    ``put()`` checks each item (plain builtin values need no check; anything else is
    pickled on its own right away, so the error is raised in the caller's frame). Items
    fed by ``map()`` are pickled only in their batch; one that fails there becomes its
    own ``TypeError`` outcome while its neighbours run.
    """

    measures_sizes: ClassVar[bool] = True

    def __init__(self, *, out_of_band: bool = False) -> None:
        # out_of_band: large argument blobs are marked to cross the pipe raw (_wire);
        # only inorder's own pool can carry them, not a borrowed executor.
        self._out_of_band = out_of_band
        self._large_arguments = False  # whether large bytes arguments travel raw
        self._functions: Recent[SerializedFunction] = Recent(FUNCTION_CACHE_SIZE)
        self._last_fn: Callable[..., Any] | None = None
        self._last = SerializedFunction(b"", b"", "")

    def function(self, fn: Callable[..., Any]) -> SerializedFunction:
        """``fn`` serialised, from the cache when it was seen before."""
        if fn is self._last_fn:  # a stream of puts mostly repeats the same function
            return self._last
        cached = self._functions.get(fn)
        if cached is not None:
            self._last_fn, self._last = fn, cached
            return cached
        try:
            blob = cloudpickle.dumps(fn, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise TypeError(
                f"the function {_worker.describe(fn)} cannot be pickled to send it to a "
                f"worker process ({type(exc).__name__}: {exc}); pass a function that "
                "cloudpickle can serialise, or use executor='thread'"
            ) from exc
        digest = hashlib.blake2b(blob, digest_size=16).digest()
        serialized = SerializedFunction(digest, blob, _worker.describe(fn))
        self._functions.add(fn, serialized)
        self._last_fn, self._last = fn, serialized
        return serialized

    def key(self, fn: Callable[..., Any]) -> Any:
        return self.function(fn)

    def prepare(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Prepared:
        # put() runs this per item: the common case costs no call and no loop.
        function = self._last if fn is self._last_fn else self.function(fn)
        if not kwargs:
            if len(args) == 1:
                if type(args[0]) in PLAIN_TYPES:
                    return (function, _ONE, args[0])
            elif all(type(a) in PLAIN_TYPES for a in args):
                return (function, _worker.ARGS, args)
        return (function, _worker.PICKLED, dump_arguments(fn, args, kwargs))

    def job(self, parts: Sequence[Part], runs: list[tuple[int, int]]) -> Job:
        functions: dict[bytes, bytes] = {}
        segments: list[_worker.WireSegment] = []
        nbytes = 0
        for key, shape, payloads in parts:
            functions[key.digest] = key.blob
            blob, flagged, buffers = _dump_payloads(
                key.name, shape, payloads, raw_bytes=self._large_arguments
            )
            size = _wire.nbytes(blob, buffers)
            nbytes += size
            if self._out_of_band:
                # Looking for large arguments costs a check per item: only worth it
                # once the items were seen to be large on average.
                self._large_arguments = size >= _wire.OUT_OF_BAND_BYTES * len(payloads)
            segments.append((key.digest, shape, len(payloads), blob, flagged, buffers))
        if self._out_of_band:
            segments = [
                (digest, shape, count, _wire.out_of_band(blob), flagged, buffers)
                for digest, shape, count, blob, flagged, buffers in segments
            ]
        return Job(_worker.run_pickled, (functions, segments, runs), nbytes)

    def outcomes(
        self, payload: bytes | tuple[bytes, list[Any]], count: int, failures: int
    ) -> Outcomes:
        return LazyOutcomes(payload, count, failures)

    def results_size(self, payload: bytes | tuple[bytes, list[Any]]) -> int:
        if isinstance(payload, tuple):
            return _wire.nbytes(*payload)
        return len(payload)


def _dump_payloads(
    name: str, shape: int, payloads: list[Any], *, raw_bytes: bool = False
) -> tuple[bytes, bool, list[pickle.PickleBuffer]]:
    """One pickle for a segment's payloads; unpicklable ones become BadArgument.

    ``raw_bytes``: ``bytes`` arguments of at least ``_wire.OUT_OF_BAND_BYTES`` are left
    out of the pickle, returned as buffers to cross the pipe as they are: neither this
    pickle nor the worker's unpickling copies them (1 MiB costs about a millisecond to
    copy on the development machine).
    """
    buffers: list[pickle.PickleBuffer] = []
    if raw_bytes:
        payloads = _with_raw_bytes(shape, payloads)
    collect = buffers if raw_bytes else None
    try:
        return _dump(payloads, collect), False, buffers
    except Exception:  # noqa: BLE001 - find the culprits one by one, below
        buffers.clear()
    checked = []
    for payload in payloads:
        try:
            cloudpickle.dumps(payload, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - __reduce__ may raise anything
            args, kwargs = _call_of(shape, payload)
            payload = _worker.BadArgument(str(_unpicklable_argument(name, args, kwargs, exc)))
        checked.append(payload)
    return _dump(checked, collect), True, buffers


def _dump(payloads: list[Any], buffers: list[pickle.PickleBuffer] | None) -> bytes:
    """``payloads`` pickled; with ``buffers``, large read-only buffers are left out into it."""
    callback = _wire.collector(buffers) if buffers is not None else None
    return cloudpickle.dumps(payloads, pickle.HIGHEST_PROTOCOL, buffer_callback=callback)  # type: ignore[no-any-return]


def _with_raw_bytes(shape: int, payloads: list[Any]) -> list[Any]:
    if shape == _worker.ARGS:
        return [tuple(_wire.out_of_band(arg) for arg in payload) for payload in payloads]
    # ONE payloads are the argument; PICKLED ones are a bytes pickle of the call.
    if shape in (_worker.ONE, _worker.PICKLED):
        return [_wire.out_of_band(payload) for payload in payloads]
    return payloads


def _call_of(shape: int, payload: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The ``(args, kwargs)`` that a payload of ``shape`` stands for."""
    if shape == _worker.ONE:
        return (payload,), {}
    if shape == _worker.ARGS:
        return payload, {}
    return payload  # type: ignore[no-any-return]


class Outcomes(Sequence[Any]):
    """A batch's outcomes as they wait in the reorder buffer.

    ``failures`` counts the ``Failure``s among them: the consumer hands out a batch
    without any by plain indexing, with no per-item checks.
    """

    __slots__ = ("_count", "_items", "failures")

    def __init__(self, items: list[Any] | None, failures: int, count: int | None = None) -> None:
        self._items = items
        self._count = len(items) if items is not None else (count or 0)
        self.failures = failures

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        return self.resolve()[index]

    def resolve(self) -> list[Any]:
        """The outcomes as a list."""
        assert self._items is not None
        return self._items


class LazyOutcomes(Outcomes):
    """A batch's pickled outcomes, unpickled when the first of them is about to be yielded.

    Decoding late keeps results compact while they wait in the reorder buffer and moves
    the cost out of the completion callback into the consumer's own pace. If the batch
    cannot be unpickled in the parent, every item of the batch yields that error.
    """

    __slots__ = ("_blob", "_buffers")

    def __init__(
        self, payload: bytes | tuple[bytes, list[Any]], count: int, failures: int
    ) -> None:
        super().__init__(None, failures, count)
        # A worker's large bytes results arrive beside the pickle (_wire.out_of_band).
        self._blob: bytes
        self._buffers: list[Any]
        if isinstance(payload, tuple):
            self._blob, self._buffers = payload
        else:
            self._blob, self._buffers = payload, []

    def resolve(self) -> list[Any]:
        """The outcomes as a list, unpickled on the first call."""
        items = self._items
        if items is None:
            items = self._items = self._decode()
        return items

    def _decode(self) -> list[Any]:
        try:
            items: list[Any] = pickle.loads(self._blob, buffers=self._buffers)
        except Exception as exc:  # noqa: BLE001 - a user's __setstate__ may raise anything
            items = _salvage(self._blob, self._count, exc, self._buffers)
            self.failures = sum(type(item) is _worker.Failure for item in items)
        self._blob, self._buffers = b"", []
        return items


class _Unloadable:
    """Stands in, while salvaging a batch, for an object that could not be unpickled.

    It absorbs what the rest of the pickle does to it (calls, items, state), so the
    objects around it still load.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self, *args: Any, **kwargs: Any) -> _Unloadable:
        return self

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def update(self, items: Any) -> None:
        pass


class _SalvagingUnpickler(pickle._Unpickler):
    """The pure-Python unpickler, with each step that runs user code made to fail alone.

    Only for the rare batch that ``pickle.loads`` refuses: it is many times slower.
    """

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except Exception as exc:  # noqa: BLE001 - a missing module or class fails its items
            return _Unloadable(exc)

    def load_reduce(self) -> None:
        stack = self.stack  # type: ignore[attr-defined]
        args = stack.pop()
        func = stack[-1]
        try:
            stack[-1] = func(*args)
        except Exception as exc:  # noqa: BLE001 - the object's own constructor failed
            stack[-1] = _Unloadable(exc)

    def load_build(self) -> None:
        try:
            super().load_build()  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - __setstate__ failed; the state was popped
            self.stack[-1] = _Unloadable(exc)  # type: ignore[attr-defined]

    def load_newobj(self) -> None:
        args = self.stack.pop()  # type: ignore[attr-defined]
        cls = self.stack.pop()  # type: ignore[attr-defined]
        try:
            obj = cls.__new__(cls, *args)
        except Exception as exc:  # noqa: BLE001 - __new__ failed, or cls is a stand-in
            obj = _Unloadable(exc)
        self.append(obj)  # type: ignore[attr-defined]

    def load_newobj_ex(self) -> None:
        kwargs = self.stack.pop()  # type: ignore[attr-defined]
        args = self.stack.pop()  # type: ignore[attr-defined]
        cls = self.stack.pop()  # type: ignore[attr-defined]
        try:
            obj = cls.__new__(cls, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - __new__ failed, or cls is a stand-in
            obj = _Unloadable(exc)
        self.append(obj)  # type: ignore[attr-defined]

    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex


def _salvage(
    blob: bytes, count: int, first_error: Exception, buffers: list[Any] | None = None
) -> list[Any]:
    """A batch's outcomes when ``pickle.loads`` failed: only the affected items fail."""
    try:
        items: list[Any] = _SalvagingUnpickler(io.BytesIO(blob), buffers=buffers).load()
        if not isinstance(items, list) or len(items) != count:
            raise ValueError(f"expected a list of {count} outcomes")
    except Exception:  # noqa: BLE001 - not salvageable: every item gets the first error
        return [_unloadable_failure(first_error, None)] * count
    return [_checked_outcome(item) for item in items]


def _checked_outcome(item: Any) -> Any:
    stand_in = _find_unloadable(item)
    if stand_in is None:
        return item
    return _unloadable_failure(stand_in.error, item if type(item) is _worker.Failure else None)


def _unloadable_failure(cause: BaseException, original: _worker.Failure | None) -> _worker.Failure:
    what = "exception" if original is not None else "result"
    error = RuntimeError(
        f"the item's {what} could not be unpickled in the parent: "
        f"{type(cause).__name__}: {cause}. Is its class importable here, and does it "
        "unpickle without error?"
    )
    error.__cause__ = cause
    if original is not None:
        return _worker.Failure(error, original.function, original.traceback, original.pid)
    return _worker.Failure(error, "<result unpickling>")


# Objects never searched for stand-ins: they cannot hold one, or are shared by everything.
_OPAQUE = (
    str,
    bytes,
    bytearray,
    int,
    float,
    complex,
    bool,
    type,
    types.ModuleType,
    types.FunctionType,
)


def _find_unloadable(root: Any) -> _Unloadable | None:
    """A stand-in anywhere inside ``root``, found through the garbage collector's links."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if type(obj) is _Unloadable:
            return obj
        if id(obj) in seen or obj is None or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        todo.extend(gc.get_referents(obj))
    return None


class OutcomeSlice(Outcomes):
    """``count`` outcomes of a batch from ``offset``: one run of a batch cut by markers."""

    __slots__ = ("_offset", "_source")

    def __init__(self, source: Outcomes, offset: int, count: int) -> None:
        super().__init__(None, source.failures, count)
        self._source = source
        self._offset = offset

    def resolve(self) -> list[Any]:
        items = self._source.resolve()[self._offset : self._offset + self._count]
        self.failures = self._source.failures  # conservative: any failure in the batch
        return items


def resolve(outcomes: Sequence[Any]) -> tuple[list[Any], bool]:
    """Outcomes as a plain list, decoded if still pickled, and whether all are results."""
    if isinstance(outcomes, Outcomes):
        items = outcomes.resolve()
        return items, outcomes.failures == 0
    return list(outcomes), False  # markers and input errors: check each


def dump_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """``(args, kwargs)`` as bytes, or a TypeError naming the argument that cannot travel."""
    call = (args, kwargs)
    if not kwargs and all(type(a) in PLAIN_TYPES for a in args):
        return pickle.dumps(call, pickle.HIGHEST_PROTOCOL)
    try:
        return cloudpickle.dumps(call, pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]
    except Exception as exc:
        raise _unpicklable_argument(_worker.describe(fn), args, kwargs, exc) from exc


def _unpicklable_argument(
    name: str, args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> TypeError:
    named: list[tuple[str, Any]] = [(f"argument {i}", a) for i, a in enumerate(args)]
    named += [(f"keyword argument {k!r}", v) for k, v in kwargs.items()]
    for label, value in named:
        try:
            cloudpickle.dumps(value, pickle.HIGHEST_PROTOCOL)
        except Exception as culprit:  # noqa: BLE001 - __reduce__ may raise anything
            return TypeError(
                f"{label} to {name}, a {type(value).__qualname__}, cannot be "
                f"pickled to send it to a worker process ({type(culprit).__name__}: "
                f"{culprit}); pass plain data (or use executor='thread')"
            )
    return TypeError(
        f"the arguments to {name} cannot be pickled to send them to a worker "
        f"process ({type(exc).__name__}: {exc})"
    )
