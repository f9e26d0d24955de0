"""Each worker's slot of shared memory: what the parent knows of a worker between messages.

The pool allocates one array of doubles for all its workers; worker ``slot`` owns fields
``slot * FIELDS`` to ``slot * FIELDS + FIELDS - 1``:

=========  ========================================================  ==========  =========
field      meaning                                                   written by  read by
=========  ========================================================  ==========  =========
JOB        the id of the job the worker runs (0: none yet)           worker      parent
INDEX      the index in that job of the item it runs, NOT_IN_ITEM    worker      parent
           between items (loading the batch, pickling results)
STARTED    when that item started (``time.monotonic``: the same      worker      parent
           clock in every process of a machine), when timed
REVOKED    a job the parent took back from the worker's pipe to      parent      worker
           give to an idle worker: the worker skips it
=========  ========================================================  ==========  =========

That is how the parent knows which item a dead worker was running and when an item
overran its timeout, without a message per item. The worker writes INDEX before JOB as
it takes a job and the parent reads them in the opposite order; both hold the pool's gate
(a lock in shared memory) around REVOKED. Imported in every worker: standard library only.
"""

from __future__ import annotations

JOB, INDEX, STARTED, REVOKED = 0, 1, 2, 3
FIELDS = 4
NOT_IN_ITEM = -1.0

TYPE_CHECKING = False  # typing's flag without importing typing: see inorder/__init__.py
if TYPE_CHECKING:
    from typing import Any


class Slots:
    """The parent's side: every worker's slot, in one shared array."""

    def __init__(self, context: Any, workers: int) -> None:
        import ctypes

        self.array = context.RawArray(ctypes.c_double, FIELDS * workers)
        self._fields = memoryview(self.array).cast("B").cast("d")

    def reset(self, slot: int) -> None:
        """A new worker takes ``slot``: no job, no item, nothing revoked."""
        base = slot * FIELDS
        self._fields[base + JOB] = 0
        self._fields[base + INDEX] = NOT_IN_ITEM
        self._fields[base + REVOKED] = 0

    def job(self, slot: int) -> int:
        """The job the worker in ``slot`` runs (or ran last)."""
        return int(self._fields[slot * FIELDS + JOB])

    def revoke(self, slot: int, job_id: int) -> None:
        """Tell the worker in ``slot`` to skip job ``job_id`` (hold the gate)."""
        self._fields[slot * FIELDS + REVOKED] = job_id

    def running(self, slot: int) -> tuple[int, int, float]:
        """The worker's job, the index of its item in it (or ``NOT_IN_ITEM``, as an int),
        and when that item started."""
        # Read in the reverse of the order the worker writes them (start, index; and
        # index before job id when a job begins), so the three belong together.
        base = slot * FIELDS
        job = int(self._fields[base + JOB])
        index = int(self._fields[base + INDEX])
        return job, index, self._fields[base + STARTED]


def worker_fields(array: Any, slot: int) -> Any:
    """The worker's side: its own slot's fields, indexed by ``JOB``, ``INDEX``, ..."""
    return memoryview(array).cast("B").cast("d")[slot * FIELDS : (slot + 1) * FIELDS]
