"""The ``inorder`` command's parser and entry point."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence

from .. import __version__
from . import _lines
from ._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    add_pipeline_options,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inorder`` command."""
    parser = build_parser()
    # argparse takes positionals only in the run before the first option, so
    # `map FUNC -j 2 a.txt b.txt` leaves the files over: they are files all the same.
    args, extra = parser.parse_known_args(argv)
    unknown = [arg for arg in extra if arg.startswith("-") and arg != "-"]
    if unknown or (extra and args.command != "map"):
        parser.error(f"unrecognized arguments: {' '.join(unknown or extra)}")
    if extra:
        args.files = [*args.files, *extra]
    try:
        if args.command == "map":
            from ._map import map_command

            return map_command(args)
        from ._spool import spool_command

        return spool_command(args)
    except (UsageError, KeyboardInterrupt, OSError, BaseExceptionGroup) as exc:
        status = _exit_status(args.command, exc)
        if status is None:
            raise
        return status


def _exit_status(command: str, error: BaseException) -> int | None:
    """Report ``error`` in one line and return the exit status it means, or ``None``
    if it is not one of the command's own (a bug: the caller lets it propagate).

    A task group (the spool's, or trio's for a Ctrl-C) may wrap the error in a group.
    """
    leaves = list(_leaves(error))
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        print(f"inorder {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if len(leaves) != 1 or not isinstance(leaves[0], (UsageError, OSError)):
        return None
    # A usage error, or reading the input or moving files failed mid-way.
    print(f"inorder {command}: error: {leaves[0]}", file=sys.stderr)
    return EXIT_USAGE if isinstance(leaves[0], UsageError) else EXIT_FAILED


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser: `inorder map` and `inorder spool`, with every option
    (the docs' CLI reference is generated from it)."""
    parser = argparse.ArgumentParser(
        prog="inorder",
        description="Run a Python function over a stream in parallel worker processes, "
        "keeping the input order.",
    )
    parser.add_argument("--version", action="version", version=f"inorder {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    mapper = commands.add_parser(
        "map",
        help="call FUNC on every input line; print the results in input order",
        description="Read lines from FILEs (or stdin), call FUNC(line) in worker processes, "
        "and write the results to stdout in input order, one per line: a str as it is, "
        "anything else as JSON. Failures go to stderr with their file and line number.",
    )
    mapper.add_argument(
        "function", metavar="MODULE:FUNC", help="e.g. mymodule:clean or ./etl.py:clean"
    )
    mapper.add_argument(
        "files", metavar="FILE", nargs="*", help="input files (default: stdin; - is stdin)"
    )
    mapper.add_argument(
        "--input-format",
        choices=_lines.INPUT_FORMATS,
        default=None,
        help="text: FUNC gets each line's text (default); jsonl: each line parsed as JSON",
    )
    mapper.add_argument(
        "--output-format",
        choices=_lines.OUTPUT_FORMATS,
        default=None,
        help="text: a str result as it is, anything else as JSON, one line each (default); "
        "jsonl: every result as JSON, one line each; raw: bytes as they are (str as UTF-8) "
        "with nothing added between results",
    )
    mapper.add_argument(
        "--jsonl",
        action="store_true",
        help="JSON lines in and out: --input-format jsonl --output-format jsonl",
    )
    add_pipeline_options(mapper, window=True, cluster=True)
    mapper.add_argument(
        "--output",
        metavar="URL",
        default=None,
        help="with a Redis input URL: the stream results go to "
        "('redis://HOST/DB?stream=NAME'); each is written with its input's acknowledgement",
    )
    mapper.add_argument(
        "--follow",
        action="store_true",
        help="with a Redis input: keep waiting for new entries until SIGTERM or Ctrl-C",
    )
    mapper.add_argument(
        "--unordered",
        action="store_true",
        help="write results as they complete, not in input order",
    )
    mapper.add_argument(
        "--on-error",
        choices=["raise", "skip", "return"],
        default="raise",
        help="on a failed line: stop with status 1 after the results before it (raise, default); "
        "drop it (skip); or write an error object in its place (return). All report on stderr.",
    )

    spooler = commands.add_parser(
        "spool",
        help="process files dropped into a folder",
        description="Claim files matching PATTERN in DIR (moved to DIR/running/), run "
        "FUNC(path) on each in worker processes in name order, then move each to DIR/done/ "
        "with its result beside it (NAME.result), or to DIR/failed/ with its error "
        "(NAME.error). Files left in running/ by a spool that died are taken back on start.",
    )
    spooler.add_argument("folder", metavar="DIR")
    spooler.add_argument("--run", dest="function", metavar="MODULE:FUNC", required=True)
    spooler.add_argument(
        "--pattern",
        default="*.task",
        help="the file names to take, a glob (default: names ending in .task)",
    )
    spooler.add_argument(
        "--once",
        action="store_true",
        help="process what is there, then exit (default: keep watching)",
    )
    add_pipeline_options(spooler, window=False)
    return parser
