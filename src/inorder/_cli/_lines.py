"""What ``inorder map`` runs in a worker: a line of input in, one output record out.

Parsing JSON input and formatting output happen here, in the workers, in parallel;
the parent only reads, hands out and writes. Imported in worker processes: standard
library only.

Input formats: ``text`` (the line's text, without its newline) and ``jsonl`` (the
line parsed as strict JSON). Output formats: ``text`` (a ``str`` result as it is,
anything else as JSON, one line each), ``jsonl`` (every result as JSON, one line each)
and ``raw`` (``bytes`` as they are, a ``str`` as UTF-8, with nothing added between
results: the function frames its own records).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Literal

from .._records import OutputFormat as OutputFormat
from .._records import parse_json, render

InputFormat = Literal["text", "jsonl"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("text", "jsonl")
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("text", "jsonl", "raw")

# Characters of a failed line kept with its error, for the report: enough to recognise a
# record or a file name, little enough for a terminal.
EXCERPT_CHARACTERS = 200

# The attribute of an exception that holds the excerpt of the line it failed on.
_INPUT_ATTRIBUTE = "inorder_input"


class LineFunction:
    """Calls ``fn`` on one input line and renders its result as one output record.

    A call that fails (in ``fn``, parsing the line, rendering the result) raises its
    exception with an excerpt of the line attached (``input_of``).
    """

    __slots__ = ("__wrapped__", "fn", "input_format", "output_format")

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        input_format: InputFormat = "text",
        output_format: OutputFormat = "text",
    ) -> None:
        self.fn = fn
        self.input_format = input_format
        self.output_format = output_format
        self.__wrapped__ = fn  # error notes name the user's function

    def __call__(self, line: str) -> str | bytes:
        try:
            if self.input_format == "text":
                result = self.fn(line)
                if type(result) is str and self.output_format == "text":
                    return result  # the common case, without a call more per line
            else:
                result = self.fn(parse_json(line))
            return render(result, self.output_format)
        except Exception as exc:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, _INPUT_ATTRIBUTE, excerpt(line))
            raise

    def __reduce__(self) -> tuple[Any, ...]:
        return (_line_function, (self.fn, self.input_format, self.output_format))


def _line_function(
    fn: Callable[[Any], Any], input_format: InputFormat, output_format: OutputFormat
) -> LineFunction:
    return LineFunction(fn, input_format=input_format, output_format=output_format)


def excerpt(line: str) -> str:
    """``line``, cut to ``EXCERPT_CHARACTERS`` (saying how long it was)."""
    if len(line) <= EXCERPT_CHARACTERS:
        return line
    return f"{line[:EXCERPT_CHARACTERS]}... ({len(line):,} characters)"


def input_of(error: BaseException) -> str | None:
    """The excerpt of the line ``error`` was raised on, if a LineFunction raised it."""
    value = getattr(error, _INPUT_ATTRIBUTE, None)
    return value if isinstance(value, str) else None
