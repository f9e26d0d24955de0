"""``inorder map``: lines in, results out in input order (GNU ``parallel --keep-order``
for Python functions)."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any, BinaryIO

import anyio
import anyio.lowlevel

from .._cursor import sequence_number
from .._errors import PipelineClosedError, RemoteTraceback
from .._options import Options
from .._pipeline import OrderedPipeline
from . import _lines, _redis
from ._common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    check_loop,
    executor_for,
    load_function,
    pipeline_options,
    run_on_loop,
)

# Bytes asked of read() at a time. A read returns what is there (a pipe hands over what
# was written so far), so a trickle of input is processed line by line, a file in bulk.
READ_SIZE = 1 << 16

# Output is written when the consumer is about to wait for results, or once this many
# lines are pending: few write() calls on a fast stream, no delay on a slow one.
WRITE_LINES = 4096


ENCODING = "utf-8"
ERRORS = "surrogateescape"  # bytes that are not UTF-8 pass through unchanged


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


def map_command(args: argparse.Namespace) -> int:
    fn = load_function(args.function)
    urls = [name for name in args.files if _redis.is_redis_url(name)]
    if urls or args.output is not None or args.follow:
        return _map_redis(fn, args, urls)
    # Out of order, no position says which lines are done: their text is not kept.
    sources = Sources(args.files, keep_lines=not args.unordered)
    input_format: _lines.InputFormat = args.input_format or ("jsonl" if args.jsonl else "text")
    output_format: _lines.OutputFormat = args.output_format or ("jsonl" if args.jsonl else "text")
    if output_format == "raw" and args.on_error == "return":
        raise UsageError(
            "--on-error return writes an error object in a failed line's place, which raw "
            "output could not tell from the results: use --on-error raise or skip"
        )
    loop = check_loop(args.loop)
    line_function = _lines.LineFunction(fn, input_format=input_format, output_format=output_format)
    writer = _Writer(sys.stdout.buffer, raw=output_format == "raw")
    with executor_for(args) as executor:
        options = pipeline_options(
            args,
            executor=executor,
            window=args.window,
            ordered=not args.unordered,
            on_error="return",  # every failure comes back in place; the policy is ours
        )
        try:
            return run_on_loop(
                loop, _map_stream, line_function, sources, options, args.on_error, writer
            )
        except BrokenPipeError:
            writer.abandon()
            return EXIT_BROKEN_PIPE


def _map_redis(fn: Any, args: argparse.Namespace, urls: list[str]) -> int:
    """``inorder map`` from a Redis stream or list to another (see the ``_redis`` module of
    this package); ``--dask`` runs the function on a cluster here too."""
    if len(urls) != 1 or len(args.files) != 1:
        raise UsageError(
            "--output and --follow go with one Redis input URL "
            "('redis://HOST/DB?stream=NAME&group=GROUP') and no file"
        )
    if args.unordered:
        raise UsageError("a Redis stream is written in input order: drop --unordered")
    loop = check_loop(args.loop)
    with executor_for(args) as executor:
        options = dict(pipeline_options(args, executor=executor, window=args.window).as_kwargs())
        options.pop("ordered")
        options.pop("on_error")
        return run_on_loop(loop, _redis.run_stream, fn, args, urls[0], options)


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
                    seq = position - 1 if ordered else sequence_number(outcome)
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
