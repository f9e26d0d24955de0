"""Whether a partial batch waits for more items: the hold policy (pure).

A free dispatch slot takes what is queued, so that nothing waits for a batch to fill.
The exception is a consumer that is behind: the window has no room for another batch
and at least two batches of results wait for the consumer. Items sent now would only
wait among those results, and sent as the consumer frees slots one at a time, each
would go alone (docs/decisions/0001). So the batch is *held* until enough items join
it, the consumer has caught up, the input ends, or a timer finds the consumer has not
taken a result since it was set. The timer itself is the pipeline's (it runs on the
event loop); this part only decides.

``taken`` counts the results the consumer has taken, ``yielded`` those of them that are
settled (their window slots freed); both only grow.
"""

from __future__ import annotations


class Hold:
    """The state of a hold and the rules that start and end it."""

    __slots__ = ("active", "allowed", "taken_at_timer", "until_taken")

    def __init__(self) -> None:
        self.active = False
        self.allowed = 0  # the batch size it waits for
        self.until_taken = 0  # from this many results taken, the consumer has caught up
        self.taken_at_timer = 0  # the consumer's count when the timer was set

    def consider(self, *, allowed: int, free: int, waiting: int, taken: int) -> bool:
        """Whether a batch of fewer than ``allowed`` items waits: starts a hold when the
        window has fewer than ``allowed`` free slots and at least ``2 * allowed``
        results wait for the consumer; an active hold goes on."""
        if self.active:
            return True
        if free >= allowed or waiting < 2 * allowed:
            return False
        self.active = True
        self.allowed = allowed
        # Arrivals only add to the results waiting: the consumer must take this many
        # before too few of those that wait now are left.
        self.until_taken = taken + waiting - 2 * allowed + 1
        return True

    def keeps(self, queued: int) -> bool:
        """Whether an active hold still keeps ``queued`` items back."""
        return self.active and queued < self.allowed

    def may_end(self, *, yielded: int, free: int) -> bool:
        """After the consumer's step: whether the hold's reasons may be gone."""
        return yielded >= self.until_taken or free >= self.allowed

    def timer_set(self, taken: int) -> None:
        """The pipeline set the hold's timer, with the consumer at ``taken``."""
        self.taken_at_timer = taken

    def timer_ends_it(self, taken: int) -> bool:
        """The timer fired: ``True`` if the hold ends now (active, and the consumer has
        taken nothing since the timer was set); ``False`` if there is no hold, or the
        consumer is moving and will end it itself (set the timer again)."""
        if not self.active or taken != self.taken_at_timer:
            return False
        self.active = False
        return True

    def end(self) -> None:
        self.active = False
