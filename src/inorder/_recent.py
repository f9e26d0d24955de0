"""A value for each of the callables a pipeline used last: what both the codecs (a
callable's pickle, a bound method's first equal) and the batch sizers (a function's
batch size) remember.

Pure code: no event loop in here.
"""

from __future__ import annotations

import types
from collections import OrderedDict
from collections.abc import Iterator
from typing import Generic, TypeVar

# ``obj.method`` makes a new bound method at every access. These compare and hash by the
# instance's identity and the function, so equal ones can share an entry.
BOUND_METHODS = frozenset({types.MethodType, types.BuiltinMethodType})

V = TypeVar("V")


class Recent(Generic[V]):
    """A value for each of the last ``size`` callables seen (least recently used goes).

    Callables are told apart by identity (their own ``__eq__`` may be costly or
    meaningless), except bound methods: ``put(obj.method, x)`` in a loop must find the
    entry of the same instance's same method, or each item would pickle the instance
    again and travel in a segment of its own. Each entry keeps a reference to its
    callable, so an ``id()`` cannot be reused while it is remembered.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[object, tuple[object, V]] = OrderedDict()

    @staticmethod
    def _key(fn: object) -> object:
        return fn if type(fn) in BOUND_METHODS else id(fn)

    def get(self, fn: object) -> V | None:
        key = self._key(fn)
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def add(self, fn: object, value: V) -> None:
        self._entries[self._key(fn)] = (fn, value)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def values(self) -> Iterator[V]:
        return (value for _, value in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)
