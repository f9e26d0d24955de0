"""A live progress line on stderr, built on ``statistics()`` (``progress=True``).

Shows items done, the rate, what is in flight and buffered, and failures. It uses rich
(``pip install 'inorder[progress]'``), and only when stderr is a terminal: piped or
redirected output gets no control codes. rich's own thread redraws the line a few
times a second, reading the pipeline's counters (plain ints) as it goes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from ._stats import PipelineStatistics

# Redraws per second: smooth enough to read a rate, cheap enough not to matter.
REFRESH_PER_SECOND = 8


def check_available() -> None:
    """Raise a helpful ImportError if rich is missing."""
    try:
        import rich  # noqa: F401
    except ImportError:
        raise ImportError(
            "progress=True (--progress) draws with the 'rich' package, which is not "
            "installed: pip install 'inorder[progress]'"
        ) from None


class ProgressLine:
    """The live line for one pipeline."""

    def __init__(
        self, statistics: Callable[[], PipelineStatistics], stream: TextIO | None = None
    ) -> None:
        self._statistics = statistics
        self._stream = stream if stream is not None else sys.stderr
        self._live: Any = None
        self._started = time.monotonic()
        self._last = (self._started, 0)
        self._rate = 0.0

    def start(self) -> None:
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self._stream)
        if not console.is_terminal:
            return  # off when stderr is not a terminal
        self._started = time.monotonic()
        self._last = (self._started, 0)
        self._live = Live(
            self, console=console, refresh_per_second=REFRESH_PER_SECOND, transient=False
        )
        self._live.start()

    def stop(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.refresh()
            live.stop()

    def __rich__(self) -> Any:
        from rich.text import Text

        stats = self._statistics()
        done = stats.yielded + stats.skipped
        now = time.monotonic()
        then, before = self._last
        if now - then >= 0.5:  # a rate over half a second or more, smoothed
            current = (done - before) / (now - then)
            self._rate = current if not self._rate else 0.5 * self._rate + 0.5 * current
            self._last = (now, done)
        text = Text()
        text.append(f"{done:,}", style="bold")
        text.append(" done  ")
        text.append(f"{self._rate:,.0f}/s", style="cyan")
        text.append(f"  {stats.in_flight:,} in flight  {stats.buffered:,} buffered")
        failed = Text(f"  {stats.failed:,} failed", style="red" if stats.failed else "")
        text.append_text(failed)
        if stats.restarts or stats.retries:
            text.append(f"  {stats.restarts} restarts  {stats.retries} retries")
        text.append(f"  {now - self._started:.1f} s", style="dim")
        return text
