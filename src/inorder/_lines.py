"""What ``inorder map`` runs in a worker: a line of input in, a line of output out.

Parsing JSON input and formatting output happen here, in the workers, in parallel;
the parent only reads, hands out and writes. Imported in worker processes: standard
library only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


class LineFunction:
    """Calls ``fn`` on one input line and renders its result as one output line.

    Text mode: ``fn(line)`` with the line's text (no newline); a ``str`` result is
    written as it is, anything else as JSON. JSON-lines mode: the line is parsed as JSON
    first (a malformed line fails like a raising function) and the result is always
    written as JSON.
    """

    __slots__ = ("__wrapped__", "fn", "jsonl")

    def __init__(self, fn: Callable[[Any], Any], *, jsonl: bool) -> None:
        self.fn = fn
        self.jsonl = jsonl
        self.__wrapped__ = fn  # error notes name the user's function

    def __call__(self, line: str) -> str:
        if self.jsonl:
            return to_json(self.fn(parse_json(line)))
        result = self.fn(line)
        return result if type(result) is str else to_json(result)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_line_function, (self.fn, self.jsonl))


def _line_function(fn: Callable[[Any], Any], jsonl: bool) -> LineFunction:
    return LineFunction(fn, jsonl=jsonl)


def parse_json(line: str) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the line is not valid JSON: {exc}") from None


def to_json(value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"the result, a {type(value).__qualname__}, cannot be written as JSON: {exc}; "
            "return a str or plain data (dict, list, str, int, float, bool, None)"
        ) from None
