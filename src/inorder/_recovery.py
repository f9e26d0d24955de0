"""What a lost batch, or a batch's failures, mean for its items (pure).

``plan_loss``: a lost batch's items run again, run alone, or fail.

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

``plan_retries``: of a batch's outcomes, the failures the retry policy
(``_retry.RetryPolicy``) gives another attempt run again; the rest are filed.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ._pending import Item
from ._retry import RetryPolicy
from ._worker import Failure


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


class RetryPlan(NamedTuple):
    filed: list[tuple[int, list[Any]]]  # (first sequence number, outcomes): filed now
    again: list[Item]  # failed; each runs again, alone, after the policy's back-off
    exhausted: list[tuple[int, Failure]]  # failed for good after more than one attempt


def plan_retries(
    items: list[Item], attempts: int, outcomes: list[Any], policy: RetryPolicy
) -> RetryPlan:
    """What becomes of a batch's outcomes (``items[i]``'s is ``outcomes[i]``; every item
    failed ``attempts`` times before): a failure the policy retries runs again; every
    other outcome is filed, in runs of consecutive sequence numbers. Every item ends in
    exactly one of the two."""
    filed: list[tuple[int, list[Any]]] = []
    again: list[Item] = []
    exhausted: list[tuple[int, Failure]] = []
    for item, outcome in zip(items, outcomes, strict=True):
        if type(outcome) is Failure:
            if policy.should_retry(outcome.exception, attempts + 1):
                again.append(item)
                continue
            if attempts:
                exhausted.append((item.seq, outcome))
        if filed and filed[-1][0] + len(filed[-1][1]) == item.seq:
            filed[-1][1].append(outcome)
        else:
            filed.append((item.seq, [outcome]))
    return RetryPlan(filed, again, exhausted)
