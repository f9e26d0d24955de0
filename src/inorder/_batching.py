"""How many items the next executor call carries: the adaptive batch-size controller.

Pure code: no event loop in here.

Every executor call costs a fixed round trip in the parent (one dispatch, one completion,
two thread hops: a few hundred microseconds of the parent's CPU, docs/decisions/0010),
so tiny items must travel in batches; but a batch is only as fast as its slowest item,
and a big batch delays every result in it. The controller aims each batch at
``TARGET_BATCH_SECONDS`` of work, measured in the worker:

* it starts at one item, so the first result comes back as soon as possible;
* it grows by ``GROWTH`` per completed batch while items are cheap, and by up to
  ``MAX_GROWTH`` when the batch shows them far cheaper than the target (the square root
  of the ideal size over the current one), so a burst of cheap items cannot jump the
  size up much on one lucky measurement while items that cost next to nothing leave
  the one-item start in a few steps; a batch that held all it was allowed grows the
  current size, so the ramp is not held to one step per round of the batches in flight
  (cut before the last growth, each reports less);
* it shrinks at once when items get slower, so a change to expensive items costs at most
  one oversized batch;
* once the input has ended, a batch takes an equal share of what is left for each
  worker (``share_at_end``), so none idles while another works through a full batch,
  but never less than ``END_SHARE_SECONDS`` of work: smaller pieces cost more in round
  trips than they save.

The pipeline never waits for a batch to fill: when a worker is free it takes what is
queued, up to the current size. Nothing here needs to know the length of the input.
"""

from __future__ import annotations

from ._recent import Recent

# Work per batch the controller aims at: long enough that the parent's round trip per
# call (taken from the cores the workers run on) costs little, short enough for
# streaming latency and below what a person notices (docs/decisions/0010). Only a
# backlog makes batches this long: items arriving one at a time go one at a time.
TARGET_BATCH_SECONDS = 0.05

# Growth factor per completed batch while items are cheaper than the target; up to
# MAX_GROWTH when the batch's items are at least MAX_GROWTH ** 2 times cheaper than the
# target needs (docs/decisions/0013).
GROWTH = 2.0
MAX_GROWTH = 4.0

# The least work a batch cut from what is left at the end of the input carries: about
# twice a call's round trip. A share is recomputed from what is left as each dispatch
# slot frees, so without a floor the last few thousand tiny items would go out in
# halves down to single items, a round trip each (docs/decisions/0020).
END_SHARE_SECONDS = 0.001

# An upper bound whatever the measurements say: caps the memory and latency of a batch.
# Large enough that the fixed cost of a call is spread thin on tiny items. A batch is
# also at most window / (2 * workers) items, so it reaches this size only when the
# window has grown to its largest (AUTO_WINDOW_MAX) on tiny items (docs/decisions/0014).
MAX_BATCH_SIZE = 32768


class BatchSizer:
    """Chooses the size of the next batch from the measured cost of finished ones."""

    __slots__ = ("_fixed", "_item_seconds", "_limit", "_size", "_target")

    def __init__(
        self,
        fixed: int | None = None,
        *,
        target_seconds: float | None = None,
        limit: int = MAX_BATCH_SIZE,
    ) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"a fixed batch size must be at least 1, got {fixed}")
        self._fixed = fixed
        # Read when the sizer is made, so a benchmark can set the module's constant.
        self._target = TARGET_BATCH_SECONDS if target_seconds is None else target_seconds
        self._limit = max(1, limit)
        self._size = fixed if fixed is not None else 1
        self._item_seconds: float | None = None  # per item, in the last batch measured

    @property
    def size(self) -> int:
        """How many items the next batch may take (fewer if fewer are queued)."""
        return self._size

    def share_at_end(self, queued: int, workers: int) -> int:
        """How many of the ``queued`` items left once the input has ended the next batch
        may take: an equal share for each of ``workers``, or as many as make
        ``END_SHARE_SECONDS`` of work at the cost measured last if that is more (all of
        them when that cost was below the clock's resolution). Before any measurement,
        the equal share."""
        share = -(-queued // max(1, workers))
        if self._item_seconds is None:
            return share
        worth = END_SHARE_SECONDS / self._item_seconds if self._item_seconds > 0.0 else queued
        return max(share, queued if worth >= queued else int(worth))

    def limit_to(self, limit: int) -> None:
        """Lower the ceiling (the window may be smaller than the default ceiling)."""
        self._limit = max(1, limit)
        if self._fixed is None:
            self._size = min(self._size, self._limit)

    def observe(self, items: int, seconds: float, *, full: bool = False) -> None:
        """A batch of ``items`` took ``seconds`` of work in its worker.

        ``full``: it held as many items as its size allowed when it was cut (the queue
        did not run short).
        """
        if self._fixed is not None or items < 1:
            return
        self._item_seconds = seconds / items
        # Work below the clock's resolution is as cheap as it gets: aim at the ceiling.
        ideal = self._target * items / seconds if seconds > 0.0 else float(self._limit)
        size = self._size
        if ideal >= size:
            # Grow from what the measured batch actually held: a batch that ran short
            # because little was queued says nothing about larger ones. A full one
            # shows the queue keeps up: grow from the current size.
            base = size if full else items
            factor = min(MAX_GROWTH, max(GROWTH, (ideal / base) ** 0.5))
            grown = max(size, int(base * factor))
            self._size = min(int(ideal), grown, self._limit)
        else:
            self._size = max(1, int(ideal))


# Functions whose batch sizes are remembered; a stream of fresh lambdas cannot grow this.
REMEMBERED_FUNCTIONS = 256


class BatchSizers:
    """A ``BatchSizer`` per function: the cost of items is a property of their function.

    A function the pipeline has not run yet starts at one item, whatever the functions
    before it cost: cheap warm-up calls must not make the first batch of an expensive
    function large (its first result would wait for the whole batch).

    ``target_seconds``: the work each batch aims at (``TARGET_BATCH_SECONDS`` unless the
    backend's calls cost more, see ``_backends.Backend.batch_seconds``).
    """

    __slots__ = ("_fixed", "_last", "_limit", "_sizers", "_target")

    def __init__(self, fixed: int | None = None, *, target_seconds: float | None = None) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError(f"a fixed batch size must be at least 1, got {fixed}")
        self._fixed = fixed
        self._target = target_seconds
        self._limit = MAX_BATCH_SIZE
        self._sizers: Recent[BatchSizer] = Recent(REMEMBERED_FUNCTIONS)
        self._last = BatchSizer(fixed, target_seconds=target_seconds)

    @property
    def size(self) -> int:
        """The batch size of the function used most recently."""
        return self._last.size

    @property
    def adaptive(self) -> bool:
        """Whether sizes follow measurements (``batch="auto"``), not a fixed size."""
        return self._fixed is None

    def of(self, function: object) -> BatchSizer:
        """The sizer for ``function`` (a codec's segment key), new ones at one item."""
        sizer = self._sizers.get(function)
        if sizer is None:
            sizer = BatchSizer(self._fixed, target_seconds=self._target, limit=self._limit)
            self._sizers.add(function, sizer)
        self._last = sizer
        return sizer

    def limit_to(self, limit: int) -> None:
        """Lower (or raise) every sizer's ceiling, and that of sizers made later."""
        self._limit = max(1, limit)
        self._last.limit_to(self._limit)
        for sizer in self._sizers.values():
            sizer.limit_to(self._limit)
