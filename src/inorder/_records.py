"""Records as the command line and the Redis sinks write them: JSON read strictly, results
rendered as text, JSON or raw bytes. Imported in worker processes: standard library only.
"""

from __future__ import annotations

import json
from typing import Any, Literal

OutputFormat = Literal["text", "jsonl", "raw"]


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
