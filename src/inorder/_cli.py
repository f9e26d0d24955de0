"""The command line: ``inorder map`` (GNU ``parallel --keep-order`` for Python functions)
and ``inorder spool`` (a folder other programs drop work into).

Both are thin layers over ``OrderedPipeline``. Exit statuses: 0 done; 1 an item failed
under ``--on-error raise``; 2 a usage error (bad option, bad ``MODULE:FUNC``, missing
file), reported before any work; 130 interrupted (Ctrl-C); 141 the reader of stdout
went away (``| head``), as for any Unix tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import anyio.lowlevel
import cloudpickle

from . import __version__, _lines
from ._errors import PipelineClosedError, RemoteTraceback
from ._options import Options
from ._pipeline import OrderedPipeline
from ._pipeline import sequence_number as inorder_sequence_number

# Bytes asked of read() at a time. A read returns what is there (a pipe hands over what
# was written so far), so a trickle of input is processed line by line, a file in bulk.
READ_SIZE = 1 << 16

# Output is written when the consumer is about to wait for results, or once this many
# lines are pending: few write() calls on a fast stream, no delay on a slow one.
WRITE_LINES = 4096


ENCODING = "utf-8"
ERRORS = "surrogateescape"  # bytes that are not UTF-8 pass through unchanged

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

# The event loops --loop offers, and the package each needs.
LOOPS = ("uvloop", "asyncio", "trio")


class UsageError(Exception):
    """A mistake in the command line, reported in one line with exit status 2."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inorder`` command."""
    parser = _parser()
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
            return _map_command(args)
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


def _parser() -> argparse.ArgumentParser:
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
    _pipeline_options(mapper, window=True)
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
        "--pattern", default="*.task", help="file names to take (default: *.task)"
    )
    spooler.add_argument(
        "--once",
        action="store_true",
        help="process what is there, then exit (default: keep watching)",
    )
    _pipeline_options(spooler, window=False)
    return parser


def _pipeline_options(parser: argparse.ArgumentParser, window: bool) -> None:
    parser.add_argument(
        "-j",
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: CPUs)",
    )
    if window:
        parser.add_argument(
            "--window",
            type=_auto_or_positive_int,
            default="auto",
            help="most lines read and not yet written: auto (default; sized by the bytes "
            "of lines and results) or N",
        )
    parser.add_argument(
        "--batch",
        type=_auto_or_positive_int,
        default="auto",
        help="items per worker call: auto (default) or N",
    )
    parser.add_argument(
        "--retries",
        type=_non_negative_int,
        default=0,
        help="run a failed item again up to N times",
    )
    parser.add_argument(
        "--timeout", type=_positive_float, default=None, help="seconds an item may run"
    )
    parser.add_argument(
        "--progress", action="store_true", help="live progress on stderr (needs rich)"
    )
    parser.add_argument(
        "--start-method",
        choices=("forkserver", "spawn"),
        default=None,
        help="how worker processes start: forkserver (default on Linux) or spawn (how "
        "macOS and Windows run it: each worker imports MODULE anew)",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default=None,
        help="the event loop to run on: uvloop when it is installed (default), else asyncio",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _auto_or_positive_int(text: str) -> int | str:
    return "auto" if text == "auto" else _positive_int(text)


# -- MODULE:FUNC ------------------------------------------------------------------------


def load_function(spec: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:FUNC``; MODULE is a dotted name or a ``.py`` path."""
    module_name, colon, name = spec.rpartition(":")
    if not colon or not module_name or not name:
        raise UsageError(
            f"expected MODULE:FUNC (e.g. mymodule:clean or ./etl.py:clean), got {spec!r}"
        )
    if module_name.endswith(".py") or os.sep in module_name:
        module = _import_path(Path(module_name))
    else:
        module = _import_module(module_name)
    target: Any = module
    for part in name.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise UsageError(f"{module_name} has no attribute {name!r}") from None
    if not callable(target):
        raise UsageError(f"{spec} is a {type(target).__qualname__}, not a function")
    return target  # type: ignore[no-any-return]


def _import_module(name: str) -> Any:
    # Like `python -m`: modules in the current directory are importable, here and in
    # the workers (which start with this process's sys.path).
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise UsageError(f"cannot import module {name!r}: {exc}") from None
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported
        raise UsageError(f"importing {name!r} failed: {type(exc).__name__}: {exc}") from None


def _import_path(path: Path) -> Any:
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    name = f"_inorder_cli_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - any error in the user's file is reported
        raise UsageError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    # Workers cannot import a module by file path: its functions travel by value.
    cloudpickle.register_pickle_by_value(module)
    return module


# -- inorder map ------------------------------------------------------------------------


class Sources:
    """The input files, read in order as chunks of lines; knows where each line came from,
    and (``keep_lines``) the text of the lines not yet written (see ``keep_from``)."""

    def __init__(self, paths: Sequence[str], *, keep_lines: bool = True) -> None:
        self.paths = list(paths) or ["-"]
        self._keep_lines = keep_lines  # out of order, nothing could be let go of
        self._starts: list[tuple[int, str]] = []  # (sequence number of its first line, name)
        # The chunks read, each with the sequence number of its first line, from the
        # oldest whose lines may still be reported (see keep_from).
        self._chunks: deque[tuple[int, list[str]]] = deque()
        self._read = 0  # lines read so far
        for path in self.paths:
            if path != "-" and not os.access(path, os.R_OK):
                reason = "no such file" if not os.path.exists(path) else "cannot read"
                raise UsageError(f"{reason}: {path}")

    def text(self, seq: int) -> str | None:
        """The text of input line ``seq``, if it is still kept."""
        for start, lines in self._chunks:
            if start <= seq < start + len(lines):
                return lines[seq - start]
        return None

    def keep_from(self, seq: int) -> None:
        """Lines before ``seq`` will not be reported: let go of the chunks that hold
        only such lines (with results in input order, ``seq`` is the output position)."""
        chunks = self._chunks
        while chunks and chunks[0][0] + len(chunks[0][1]) <= seq:
            chunks.popleft()

    def locate(self, seq: int) -> tuple[str, int]:
        """The file name and line number (from 1) of input line ``seq``."""
        name, first = "<stdin>", 0
        for start, source in self._starts:
            if start > seq:
                break
            name, first = source, start
        return name, seq - first + 1

    async def chunks(self) -> AsyncIterator[list[str]]:
        seq = 0
        for path in self.paths:
            self._starts.append((seq, "<stdin>" if path == "-" else path))
            fd = 0 if path == "-" else os.open(path, os.O_RDONLY)
            try:
                async for lines in _read_lines(fd):
                    if self._keep_lines:
                        self._chunks.append((seq, lines))
                    seq += len(lines)
                    yield lines
            finally:
                if fd:
                    os.close(fd)


async def _read_lines(fd: int) -> AsyncIterator[list[str]]:
    # A pipe or a terminal may keep us waiting: wait for data on the event loop, then
    # read what is there. A regular file is always "ready" (and cannot be polled): read.
    # No thread: one blocked in read() would outlive a Ctrl-C.
    pollable = not stat.S_ISREG(os.fstat(fd).st_mode)
    # The start of a line whose end is not read yet, in pieces: joined once, when the
    # end comes, so that a line of any length costs time in proportion to it.
    pieces: list[bytes] = []
    while True:
        if pollable:
            try:
                await anyio.wait_readable(fd)
            except PermissionError:  # a device epoll refuses (/dev/null): always ready
                pollable = False
        else:
            await anyio.lowlevel.checkpoint()
        data = os.read(fd, READ_SIZE)
        if not data:
            break
        cut = data.rfind(b"\n") + 1
        if not cut:
            pieces.append(data)
            continue
        if pieces:
            pieces.append(data[:cut])
            text = b"".join(pieces).decode(ENCODING, ERRORS)
            pieces = []
        else:
            text = data[:cut].decode(ENCODING, ERRORS)
        if cut < len(data):
            pieces.append(data[cut:])
        lines = text.split("\n")
        lines.pop()  # the empty string after the last newline
        yield lines
    if pieces:
        yield [b"".join(pieces).decode(ENCODING, ERRORS)]


def _map_command(args: argparse.Namespace) -> int:
    fn = load_function(args.function)
    # Out of order, no position says which lines are done: their text is not kept.
    sources = Sources(args.files, keep_lines=not args.unordered)
    input_format: _lines.InputFormat = args.input_format or ("jsonl" if args.jsonl else "text")
    output_format: _lines.OutputFormat = args.output_format or ("jsonl" if args.jsonl else "text")
    if output_format == "raw" and args.on_error == "return":
        raise UsageError(
            "--on-error return writes an error object in a failed line's place, which raw "
            "output could not tell from the results: use --on-error raise or skip"
        )
    try:  # option errors before any work, in one line
        options = Options(
            workers=args.workers,
            window=args.window,
            batch=args.batch,
            ordered=not args.unordered,
            on_error="return",  # every failure comes back in place; the policy is ours
            retries=args.retries,
            timeout=args.timeout,
            start_method=args.start_method,
            progress=args.progress,
        )
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    loop = check_loop(args.loop)
    line_function = _lines.LineFunction(fn, input_format=input_format, output_format=output_format)
    writer = _Writer(sys.stdout.buffer, raw=output_format == "raw")
    try:
        return run_on_loop(
            loop, _map_stream, line_function, sources, options, args.on_error, writer
        )
    except BrokenPipeError:
        writer.abandon()
        return EXIT_BROKEN_PIPE


def check_loop(loop: str | None) -> str:
    """The event loop ``--loop`` names (``None``: uvloop if installed, else asyncio)."""
    if loop is None:
        return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if loop != "asyncio" and importlib.util.find_spec(loop) is None:
        raise UsageError(f"--loop {loop} needs the {loop!r} package: pip install {loop}")
    return loop


def run_on_loop(loop: str, fn: Callable[..., Coroutine[Any, Any, int]], *args: Any) -> int:
    """Run ``fn(*args)`` on the event loop ``loop`` (see ``check_loop``)."""
    if loop == "trio":
        return anyio.run(fn, *args, backend="trio")
    return anyio.run(fn, *args, backend_options={"use_uvloop": loop == "uvloop"})


async def _map_stream(
    fn: _lines.LineFunction,
    sources: Sources,
    options: Options,
    on_error: str,
    writer: _Writer,
) -> int:
    status = EXIT_OK
    position = 0  # in ordered mode, an outcome's sequence number is its position
    ordered = options.ordered
    result_type = bytes if writer.raw else str
    input_failure: list[OSError] = []  # reading the input failed mid-way: after the rest
    async with OrderedPipeline(options) as pipe, anyio.create_task_group() as tasks:

        async def feed() -> None:
            try:
                async for lines in sources.chunks():
                    await pipe.put_many(fn, lines)
            except PipelineClosedError:
                return  # the output ended first (a failure under --on-error raise)
            except OSError as exc:
                input_failure.append(exc)
            pipe.close()

        tasks.start_soon(feed)
        try:
            # Lists of the results that are ready: a plain loop over each, and the output
            # written once a list is done, when the next results may keep us waiting.
            async for outcomes in pipe.chunks():
                for outcome in outcomes:
                    position += 1
                    if type(outcome) is result_type:
                        writer.add(outcome)
                        continue
                    seq = position - 1 if ordered else inorder_sequence_number(outcome)
                    writer.flush()
                    _report(sources, seq if seq is not None else -1, outcome)
                    if on_error == "raise":
                        status = EXIT_FAILED
                        break
                    if on_error == "return":
                        writer.add(_error_line(sources, -1 if seq is None else seq, outcome))
                writer.flush()
                if status == EXIT_FAILED:
                    break
                if ordered:
                    sources.keep_from(position)
        except BrokenPipeError:  # raised after the task group, which would wrap it
            status = EXIT_BROKEN_PIPE
        tasks.cancel_scope.cancel()
    if status == EXIT_BROKEN_PIPE:
        raise BrokenPipeError
    writer.flush()
    if input_failure and status == EXIT_OK:
        raise input_failure[0]  # main() reports it in one line, with status 1
    return status


class _Writer:
    """Results gathered and written in few system calls: lines (each ends with a
    newline), or with ``raw`` bytes as they are."""

    def __init__(self, out: BinaryIO, *, raw: bool = False) -> None:
        self._out = out
        self.raw = raw
        self._pending: list[Any] = []

    def add(self, record: str | bytes) -> None:
        self._pending.append(record)
        if len(self._pending) >= WRITE_LINES:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            if self.raw:
                data = b"".join(self._pending)
            else:
                data = ("\n".join(self._pending) + "\n").encode(ENCODING, ERRORS)
            self._pending = []
            self._out.write(data)
            self._out.flush()

    def abandon(self) -> None:
        """The reader went away: drop what is left, and keep the exit quiet."""
        self._pending = []
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._out.fileno())
        os.close(devnull)


def _input(sources: Sources, seq: int, error: BaseException) -> str | None:
    """The (excerpt of the) input line an error is about, when it is known."""
    text = _lines.input_of(error)
    if text is None and seq >= 0:
        line = sources.text(seq)
        text = None if line is None else _lines.excerpt(line)
    return text


def _report(sources: Sources, seq: int, error: BaseException) -> None:
    name, line = sources.locate(seq) if seq >= 0 else ("?", 0)
    where = f"{name}:{line}" if seq >= 0 else "a line"
    lines = [f"inorder map: {where}: {type(error).__name__}: {error}"]
    text = _input(sources, seq, error)
    if text is not None:
        lines.append(f"  input: {text!r}")
    cause = error.__cause__
    if isinstance(cause, RemoteTraceback):
        lines.append(cause.traceback_text.rstrip("\n"))
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def _error_line(sources: Sources, seq: int, error: BaseException) -> str:
    name, line = sources.locate(seq) if seq >= 0 else (None, None)
    return json.dumps(
        {
            "error": {
                "type": type(error).__name__,
                "message": str(error),
                "file": name,
                "line": line,
                "input": _input(sources, seq, error),
            }
        },
        ensure_ascii=False,
    )
