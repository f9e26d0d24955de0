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
import json
from collections.abc import Callable
from typing import Any, Literal

InputFormat = Literal["text", "jsonl"]
OutputFormat = Literal["text", "jsonl", "raw"]
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


def parse_json(line: str) -> Any:
    """The line as strict JSON: NaN and Infinity are refused, as JSON has neither."""
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ValueError(f"the line is not valid JSON: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON has no NaN or Infinity)")


def render(result: Any, output_format: OutputFormat) -> str | bytes:
    """``result`` as one output record."""
    if output_format == "raw":
        if isinstance(result, (bytes, bytearray, memoryview)):
            return bytes(result)
        if isinstance(result, str):
            return result.encode("utf-8", "surrogateescape")
        raise TypeError(
            f"the result, a {type(result).__qualname__}, cannot be written raw: with "
            "--output-format raw the function returns bytes (or str, written as UTF-8)"
        )
    if output_format == "text" and type(result) is str:
        return result
    return to_json(result)


def to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise TypeError(f"the result cannot be written as JSON: {exc}") from None
        raise ValueError(
            "the result cannot be written as JSON: it holds NaN or Infinity, which JSON "
            "has no way to write; return None or a string in their place"
        ) from None
    except TypeError as exc:
        raise TypeError(
            f"the result, a {type(value).__qualname__}, cannot be written as JSON: {exc}; "
            "return a str or plain data (dict, list, str, int, float, bool, None)"
        ) from None
