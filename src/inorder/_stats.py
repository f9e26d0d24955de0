"""The statistics snapshot returned by ``OrderedPipeline.statistics()``."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PipelineStatistics:
    """A frozen snapshot of a pipeline's counters.

    Every accepted item is in exactly one of the stages, so at any moment::

        accepted == queued + in_flight + buffered + yielded + skipped
    """

    accepted: int
    """Items (and markers) accepted by ``put()`` or ``map()``: the sequence numbers issued."""
    queued: int
    """Accepted items waiting for a free worker."""
    in_flight: int
    """Items handed to the executor and not finished yet."""
    buffered: int
    """Finished items not yet yielded (waiting for an earlier item, or for the consumer)."""
    yielded: int
    """Outcomes handed to the consumer (results, markers, and errors raised or returned)."""
    skipped: int
    """Failed items dropped by ``on_error="skip"``."""
    failed: int
    """Items whose call raised, whatever the ``on_error`` policy (counted when yielded)."""
    workers: int
    """How many items can run at once."""
    window: int
    """The window, the most items accepted and not yet yielded."""
    batch_size: int
    """How many items the next executor call may carry (adaptive unless fixed)."""
    batches: int = 0
    """Executor calls made, each carrying a batch of items (with ``accepted``, the mean
    batch size)."""
    restarts: int = 0
    """Worker processes started to replace one that crashed, was stopped by a timeout,
    or reached ``max_tasks_per_child``."""
    retries: int = 0
    """Attempts made again after a failure (``retries=``); not counting items that ran
    again only because another item crashed their worker."""
    timeouts: int = 0
    """Attempts stopped because they ran longer than ``timeout``."""
    producers_waiting: int = 0
    """Calls to ``put()`` (and a ``map()`` feeder) waiting for room in the window."""
    consumer_waiting: bool = False
    """Whether the consumer waits for the next outcome (none is ready yet)."""


# Shown as inorder.X in reprs and tracebacks: where users import them from.
for _public in (PipelineStatistics,):
    _public.__module__ = "inorder"
del _public
