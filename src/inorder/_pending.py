"""Accepted items not yet handed to the executor: segments, and items taken apart (pure).

A *segment* is a run of consecutive accepted items that share a function (its codec
key) and a call shape, so that a batch is cut from the queue with list slices and
pickled as one list per segment. An *item* is one of them taken apart again, with its
sequence number, to run once more (re-run after a crash, retried, isolated).
"""

from __future__ import annotations

import itertools
from typing import Any, Final, NamedTuple

from ._serialize import Part


class Segment:
    """Accepted items ``start`` to ``end - 1`` that share a function and a call shape.

    An ``isolated`` segment holds one item that must run alone: a suspect of a crash or
    an item being retried (``attempts``: how many of its attempts failed so far).
    """

    __slots__ = ("attempts", "end", "isolated", "key", "payloads", "shape", "start")

    def __init__(
        self,
        key: Any,
        shape: int,
        payloads: list[Any],
        start: int,
        *,
        isolated: bool = False,
        attempts: int = 0,
    ) -> None:
        self.key = key
        self.shape = shape
        self.payloads = payloads
        self.start = start  # the sequence number of payloads[0]
        self.end = start + len(payloads)  # one past the last item's sequence number
        self.isolated = isolated
        self.attempts = attempts


# put()'s lane when closed: a function no caller can pass, and a segment of nothing.
NO_LANE_FN: Final = object()
NO_LANE: Final = Segment(None, -1, [], 0)


class Item(NamedTuple):
    """One item of a batch, taken apart again to run it once more."""

    seq: int
    key: Any
    shape: int
    payload: Any


def items_of(runs: list[tuple[int, int]], parts: list[Part]) -> list[Item]:
    """A batch's items one by one, with their sequence numbers."""
    seqs = itertools.chain.from_iterable(range(start, start + count) for start, count in runs)
    return [
        Item(seq, part.key, part.shape, payload)
        for part in parts
        # payloads first: zip stops on them without drawing a number for the next part
        for payload, seq in zip(part.payloads, seqs, strict=False)
    ]


def segments_of(items: list[Item], *, isolated: bool, attempts: int) -> list[Segment]:
    """Items as pending segments: one each if isolated, else merged where consecutive."""
    segments: list[Segment] = []
    for item in items:
        last = segments[-1] if segments else None
        if (
            not isolated
            and last is not None
            and last.end == item.seq
            and last.key is item.key
            and last.shape == item.shape
        ):
            last.payloads.append(item.payload)
            last.end += 1
        else:
            segments.append(
                Segment(
                    item.key,
                    item.shape,
                    [item.payload],
                    item.seq,
                    isolated=isolated,
                    attempts=attempts,
                )
            )
    return segments
