"""When a failed item runs again: the retry policy (pure).

An item that failed (its exception, a worker crash, a timeout) runs again, in its own
place in the order, while it has attempts left and its error is one of ``retry_on``;
each new attempt waits a little longer than the last (``backoff``), so a resource that
is briefly unavailable gets time to come back without slowing the stream much.
"""

from __future__ import annotations

from dataclasses import dataclass

# The first retry waits this long; each later one twice as long as the one before, up
# to RETRY_BACKOFF_MAX. Short: a pipeline keeps streaming while an item waits to retry,
# but the window fills behind it, so long waits would stall the stream.
RETRY_BACKOFF_SECONDS = 0.05
RETRY_BACKOFF_MAX = 2.0

ExceptionTypes = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` more attempts for failures of the types in ``retry_on``."""

    retries: int = 0
    retry_on: ExceptionTypes = Exception
    backoff: float = RETRY_BACKOFF_SECONDS
    backoff_max: float = RETRY_BACKOFF_MAX

    def should_retry(self, error: BaseException, failed_attempts: int) -> bool:
        """Whether an item whose attempt number ``failed_attempts`` failed runs again.

        An item that raised ``SystemExit`` or another ``BaseException`` that is not an
        ``Exception`` is delivered as a ``RuntimeError``, and retried as one too.
        """
        if failed_attempts > self.retries:
            return False
        if isinstance(error, self.retry_on):
            return True
        return not isinstance(error, Exception) and issubclass(RuntimeError, self.retry_on)

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait before the attempt after failed attempt ``failed_attempts``."""
        if failed_attempts < 1:
            return 0.0
        return min(self.backoff_max, self.backoff * 2.0 ** (failed_attempts - 1))


def check_retry_on(retry_on: object) -> ExceptionTypes:
    """The ``retry_on`` option, validated: an exception class or a tuple of them."""
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not classes or not all(
        isinstance(c, type) and issubclass(c, BaseException) for c in classes
    ):
        raise TypeError(
            "retry_on must be an exception class or a tuple of exception classes, "
            f"got {retry_on!r}"
        )
    return retry_on  # type: ignore[return-value]
