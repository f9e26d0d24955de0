"""Messages between the pool and its workers: a pickle, with its large buffers sent raw.

A message is one pipe message holding a 4-byte count and a protocol-5 pickle, followed
by ``count`` pipe messages, each one of the pickle's out-of-band buffers. A big blob
(a batch's pickled arguments or results, wrapped in ``pickle.PickleBuffer`` by its
producer) thus crosses the pipe without being copied into an enclosing pickle on one
side and out of it on the other: the receiver's ``recv_bytes`` gives the very ``bytes``
object the unpickled message holds.

Imported in worker processes: standard library only.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection

TYPE_CHECKING = False  # typing's flag without importing typing: see inorder/__init__.py
if TYPE_CHECKING:
    from typing import Any

# Blobs at least this large travel out of band. Below it, the extra pipe message costs
# more than the copy it saves.
OUT_OF_BAND_BYTES = 64 * 1024

_COUNT = struct.Struct("<I")


def out_of_band(value: Any) -> Any:
    """A ``bytes`` object large enough to be worth it, marked to be left out of a pickle
    and travel raw; anything else as it is."""
    if type(value) is bytes and len(value) >= OUT_OF_BAND_BYTES:
        return pickle.PickleBuffer(value)
    return value


def nbytes(blob: bytes, buffers: list[Any]) -> int:
    """The size of a pickle with the buffers left out of it (PickleBuffers or bytes)."""
    return len(blob) + sum(memoryview(buffer).nbytes for buffer in buffers)


def collector(buffers: list[pickle.PickleBuffer]) -> Callable[[pickle.PickleBuffer], bool]:
    """A pickle ``buffer_callback`` that leaves large read-only buffers out, into
    ``buffers``. A writable one (a numpy array, say) stays in: it would arrive read-only."""

    def in_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.readonly and len(view) >= OUT_OF_BAND_BYTES:
            buffers.append(buffer)
            return False
        return True

    return in_band


def encode(message: Any) -> list[bytes | memoryview]:
    """The pipe messages that carry ``message``."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    return [_COUNT.pack(len(buffers)) + header, *(buffer.raw() for buffer in buffers)]


def send_parts(conn: Connection, parts: list[bytes | memoryview]) -> None:
    for part in parts:
        conn.send_bytes(part)


def receive(conn: Connection) -> Any:
    """The next message from ``conn`` (raises EOFError when the other side is gone)."""
    first = conn.recv_bytes()
    (count,) = _COUNT.unpack_from(first)
    buffers = [conn.recv_bytes() for _ in range(count)]
    return pickle.loads(memoryview(first)[_COUNT.size :], buffers=buffers)
