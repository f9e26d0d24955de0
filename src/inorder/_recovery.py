"""What a lost batch means for its items (pure): run again, run alone, or fail.

A backend reports a lost batch as facts (``BatchLost``: whether it started, which item
was running). From those alone this decides each item's fate; the pipeline applies it
(queues, retries with ``_retry.RetryPolicy``, delivers the backend's error):

* a batch that never started: every item is innocent and runs again as it was;
* an item was running: it is the culprit; the others (finished but lost with the worker,
  or not reached) run again;
* lost between items of a batch of several (loading it, pickling its results): each item
  is a suspect and runs again alone, so that only the one that kills its worker fails;
* a batch of one item lost outside it: that item is the culprit.

Every item ends in exactly one of the three.
"""

from __future__ import annotations

from typing import NamedTuple

from ._pending import Item


class LossPlan(NamedTuple):
    rerun: list[Item]  # innocent: queued again, ahead of newer work
    alone: list[Item]  # suspects: each queued again to run alone
    culprit: Item | None  # fails, or is retried, with the backend's error


def plan_loss(items: list[Item], *, started: bool, running: int | None) -> LossPlan:
    """The fate of each item of a lost batch (see the module docstring)."""
    if not started:
        return LossPlan(items, [], None)
    if running is not None and 0 <= running < len(items):
        return LossPlan(items[:running] + items[running + 1 :], [], items[running])
    if len(items) > 1:
        return LossPlan([], items, None)
    return LossPlan([], [], items[0] if items else None)
