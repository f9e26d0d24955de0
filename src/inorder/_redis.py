"""Redis streams and lists as durable sources and sinks: ordered, bounded, restart-safe.

One consumer of a consumer group reads entries, runs a function on each in the
pipeline, and writes one output entry per input entry, in input order (``run``, with a
pipeline of its own; ``Feed``, in the caller's pipeline; or ``results``, the outcomes
handed to the caller's loop)::

    source stream ──XREADGROUP──▶ pipeline ──▶ sink stream
        (group, consumer)                     XADD output + XACK input,
                                              one script per chunk of results

The rule that makes it exactly once: an input entry is acknowledged in the same Redis
script that writes its output, and only while it is still pending for this consumer.
After a crash, each input entry is either written and acknowledged, or neither (it is
still in this consumer's pending list). On start the consumer reads its own pending
entries first, in their order, then entries of consumers idle for ``claim_idle``
seconds (XAUTOCLAIM), then new ones: outputs keep the input order of one consumer, and
no input gets two outputs, even when a consumer thought dead comes back after its
entries were claimed (the script skips entries no longer pending for it).

Lists work the same way (``ListSource``, ``ListSink``): each item read is moved to the
consumer's processing list, and removed from it by the script that writes its output.
Any source goes with any sink: a commit script is the source's check and
acknowledgement around the sink's write.

Reading is bounded: ``run`` and ``results`` read no more entries than the pipeline's
window has room for, so what was taken from Redis and not yet written never exceeds the
window; a ``Feed`` reads ``read`` entries at a time as its items are asked for, so at
most the window plus ``read``.

Trust: entries are data (the field ``data``: text, or JSON), never unpickled. The
function runs in inorder's workers, named by the consuming side.

Redis is reached with redis-py's synchronous client, in threads (``anyio.to_thread``),
so the same code runs on asyncio, uvloop and trio.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import logging
import pickle
import socket
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import Any, Literal, NamedTuple

import anyio
import anyio.to_thread

from ._errors import InorderError
from ._options import Options, PipelineOptions
from ._pipeline import OrderedPipeline
from ._records import parse_json, render

logger = logging.getLogger("inorder")

Format = Literal["text", "json"]

# Entries read with one XREADGROUP at most (fewer when the window has less room).
READ_COUNT = 1024

# How long one blocking read waits for new entries with ``follow=True``: also how soon
# a cancelled read returns its thread (the task itself is cancelled at once).
BLOCK_SECONDS = 0.5

# The commit scripts: each writes a chunk of outputs and acknowledges their inputs,
# atomically, skipping an input that is no longer this consumer's (a stream entry
# claimed by another consumer; a list item no longer in the processing list): its
# output is not ours to write. A script is the source's check and acknowledgement around
# the sink's ``emit(label, kind, value, error_type)`` (kind "data", "error" or "skip";
# label: the input's ID, or "" for a list item, which has none). KEYS: the source stream
# or processing list, the sink. ARGV: the source's own, then per entry: the input
# (stream: its ID; list: the item as read), kind, value, error type.

# A stream source: one XPENDING over the chunk's range (ARGV: group, consumer, lowest
# and highest input ID), one XACK per thousand inputs.
_STREAM_COMMIT = """
local group, consumer = ARGV[1], ARGV[2]
local mine = {}
for _, entry in ipairs(redis.call('XPENDING', KEYS[1], group, ARGV[3], ARGV[4],
                                  1000000000, consumer)) do
  mine[entry[1]] = true
end
local acks = {}
local written = 0
for i = 5, #ARGV, 4 do
  local id = ARGV[i]
  if mine[id] then
    emit(id, ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    acks[#acks + 1] = id
    written = written + 1
    if #acks == 1000 then
      redis.call('XACK', KEYS[1], group, unpack(acks))
      acks = {}
    end
  end
end
if #acks > 0 then
  redis.call('XACK', KEYS[1], group, unpack(acks))
end
return written
"""

# A list source: each input removed from the processing list (no ARGV of its own).
_LIST_COMMIT = """
local written = 0
for i = 1, #ARGV, 4 do
  if redis.call('LREM', KEYS[1], -1, ARGV[i]) == 1 then
    emit('', ARGV[i + 1], ARGV[i + 2], ARGV[i + 3])
    written = written + 1
  end
end
return written
"""

# A stream sink: an entry with the input's ``id`` (when it has one) and ``data``, or
# ``error`` and ``message``.
_XADD_EMIT = """
local function emit(label, kind, value, error_type)
  if kind == 'skip' then return end
  local fields
  if kind == 'data' then
    fields = {'data', value}
  else
    fields = {'error', error_type, 'message', value}
  end
  if label ~= '' then
    redis.call('XADD', KEYS[2], '*', 'id', label, unpack(fields))
  else
    redis.call('XADD', KEYS[2], '*', unpack(fields))
  end
end
"""

# A list sink: the value as the caller rendered it (an error as JSON).
_RPUSH_EMIT = """
local function emit(label, kind, value, error_type)
  if kind ~= 'skip' then redis.call('RPUSH', KEYS[2], value) end
end
"""


class BadEntry(InorderError, ValueError):
    """An entry that holds no item: no ``data`` field, or (with JSON) invalid JSON.

    Raised in the entry's place, like an item's own error; ``entry_id`` names it.
    """

    def __init__(self, message: str, entry_id: str) -> None:
        super().__init__(message)
        self.entry_id = entry_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (BadEntry, (str(self), self.entry_id))


class EntryFailed(InorderError):
    """The run stopped (``on_error="raise"``) at an entry whose item failed; the entry
    is left unacknowledged (pending), so a run after the fix processes it again.
    ``entry_id`` names it; ``__cause__`` is the item's exception."""

    def __init__(self, message: str, entry_id: str) -> None:
        super().__init__(message)
        self.entry_id = entry_id


class Entry(NamedTuple):
    """An entry taken from the source: its ID and its ``data`` field, or what is wrong
    with it (``problem``: no such field, deleted from the stream, not UTF-8 text)."""

    id: str
    data: str | None
    problem: str | None = None
    raw: bytes | None = None  # the data as Redis holds it


# What is written for an entry: the entry, kind ("data", "error" or "skip"), the value
# (the rendered result, or the error's message), the error's type name.
Output = tuple[Entry, str, Any, str]


class EntryFunction:
    """Runs in a worker: the item of an entry (decoded), the user's function on it, the
    result rendered as the output's ``data`` (text: a ``str`` as it is, anything else as
    JSON; json: JSON)."""

    __slots__ = ("__wrapped__", "fn", "format")

    def __init__(self, fn: Callable[[Any], Any], format: Format) -> None:
        self.fn = fn
        self.format = format
        self.__wrapped__ = fn  # error notes name the user's function

    def __call__(self, entry: tuple[str, str | None, str | None]) -> str:
        entry_id, data, problem = entry
        if data is None:
            raise BadEntry(f"entry {entry_id}: {problem}", entry_id)
        if self.format == "json":
            try:
                item = parse_json(data)
            except ValueError as exc:
                raise BadEntry(f"entry {entry_id}: {exc}", entry_id) from None
            return str(render(self.fn(item), "jsonl"))
        return str(render(self.fn(data), "text"))

    def __reduce__(self) -> tuple[Any, ...]:
        return (EntryFunction, (self.fn, self.format))


class PickledTask:
    """Runs in a worker: an entry whose data is a pickled ``(function, args)`` or
    ``(function, args, kwargs)``, as the classic Redis task-queue tutorial pushes them;
    the result is pickled back. Unpickling runs whatever the writer put there: only
    ``run_pickled_tasks()`` uses this."""

    def __call__(self, entry: tuple[str, bytes | None, str | None]) -> bytes:
        entry_id, raw, problem = entry
        if raw is None:
            raise BadEntry(f"entry {entry_id}: {problem}", entry_id)
        try:
            task = pickle.loads(raw)  # the writer's code runs here: what the caller chose
            fn, args, *rest = task
            kwargs = rest[0] if rest else {}
        except Exception as exc:  # noqa: BLE001 - reported in the entry's place
            raise BadEntry(
                f"entry {entry_id} is not a pickled (function, args[, kwargs]) task: "
                f"{type(exc).__name__}: {exc}",
                entry_id,
            ) from None
        return pickle.dumps(fn(*args, **kwargs), pickle.HIGHEST_PROTOCOL)


class StreamSource:
    """Entries of a Redis stream, read through a consumer group (created if missing,
    from the stream's start, ``start="0"``).

    ``consumer`` names this reader in the group; it must stay the same across restarts
    (the host name by default), and differ between readers running at once.
    ``claim_idle``: take over entries another consumer has held this many seconds
    without acknowledging them (``None``: never). ``follow``: wait for new entries
    instead of ending when none is left.
    """

    def __init__(
        self,
        client: Any,
        stream: str,
        group: str,
        consumer: str | None = None,
        *,
        follow: bool = False,
        claim_idle: float | None = 60.0,
        start: str = "0",
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer or socket.gethostname()
        self.follow = follow
        self.claim_idle = claim_idle
        self._start = start
        self._phase = "pending"  # then "claim", then "new"
        self._pending_from = "0"
        self._claim_from = "0-0"
        self._redis = _bytes_client(client)
        # Replies of XREADGROUP as Redis sends them: the entries' fields as flat lists,
        # not made into dicts first.
        self._redis.set_response_callback("XREADGROUP", _as_sent)

    @property
    def name(self) -> str:
        return f"stream {self.stream}"

    def prepare(self, sink: Any) -> None:
        """Check the sink, and create the consumer group if it does not exist.
        Blocking: call it from a thread."""
        _check_sink(sink)
        import redis

        try:
            self._redis.xgroup_create(self.stream, self.group, id=self._start, mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, count: int, *, block: bool) -> list[Entry]:
        """Up to ``count`` entries: this consumer's pending ones first, then claimed,
        then new; ``[]`` when there is none (after waiting up to ``BLOCK_SECONDS`` if
        ``block``). Blocking: call it from a thread."""
        if self._phase == "pending":
            entries = self._read_group(self._pending_from, count, block=False)
            if entries:
                self._pending_from = entries[-1].id
                return entries
            self._phase = "claim" if self.claim_idle is not None else "new"
        if self._phase == "claim":
            entries = self._claim(count)
            if entries:
                return entries
            self._phase = "new"
        entries = self._read_group(">", count, block=block)
        if not entries and self.claim_idle is not None:
            # Nothing new: entries another consumer left idle long enough come next.
            self._claim_from = "0-0"
            entries = self._claim(count)
        return entries

    def _read_group(self, after: str, count: int, *, block: bool) -> list[Entry]:
        reply = self._redis.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: after},
            count=count,
            block=int(BLOCK_SECONDS * 1000) if block else None,
        )
        if not reply:
            return []
        # RESP2: [[stream, entries]]; RESP3: {stream: entries}.
        (messages,) = reply.values() if isinstance(reply, dict) else (reply[0][1],)
        return [_entry(entry_id, fields) for entry_id, fields in messages]

    def _claim(self, count: int) -> list[Entry]:
        assert self.claim_idle is not None
        next_from, messages, *_ = self._redis.xautoclaim(
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self._claim_from,
            count=count,
        )
        self._claim_from = _text(next_from)
        entries = [_entry(entry_id, fields) for entry_id, fields in messages]
        if not entries and self._claim_from != "0-0":
            return self._claim(count)  # that page held only deleted entries
        return entries

    def ack(self, entries: Sequence[Entry]) -> None:
        """Acknowledge ``entries`` (handled without a sink). Blocking."""
        if entries:
            self._redis.xack(self.stream, self.group, *[entry.id for entry in entries])

    def commit(self, sink: StreamSink | ListSink, outputs: Sequence[Output]) -> int:
        """Write ``outputs`` to ``sink`` and acknowledge their inputs, atomically; how
        many were this consumer's to write."""
        if not outputs:
            return 0
        ids = sorted((entry.id for entry, *_ in outputs), key=_id_key)
        args = [self.group, self.consumer, ids[0], ids[-1]]
        args += _commit_arguments(sink, outputs, with_ids=True)
        script = sink.emit + _STREAM_COMMIT
        return int(self._redis.eval(script, 2, self.stream, sink.key, *args))


class StreamSink:
    """A Redis stream the outputs are added to (XADD), each with its input's ``id``
    (from a stream source: a list item has none) and its ``data``, or ``error`` (the
    exception's type) and ``message`` for a failed item."""

    emit = _XADD_EMIT

    def __init__(self, stream: str) -> None:
        self.stream = stream

    @property
    def key(self) -> str:
        return self.stream

    def value(self, entry: Entry, with_id: bool, kind: str, value: Any, error_type: str) -> Any:
        """What the commit script gets as an output's value: the result, or the error's
        message."""
        return value


# Moves up to ARGV[1] items from the input list's tail to the processing list's head
# and returns them, oldest first. KEYS: input list, processing list.
_TAKE = """
local taken = {}
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not item then break end
  taken[#taken + 1] = item
end
return taken
"""


class ListSource:
    """Items of a Redis list (pushed with LPUSH, taken from the other end: first in,
    first out), each moved atomically to this consumer's processing list
    (``KEY:processing:CONSUMER``) as it is read, and removed from it when its output is
    written. A restarted consumer takes back its processing list first, oldest first.

    A list item has no ID: in messages it is named by its position in this run's reads;
    outputs follow input order. ``consumer`` (the host name by default) must stay the
    same across restarts.
    """

    def __init__(
        self, client: Any, key: str, consumer: str | None = None, *, follow: bool = False
    ) -> None:
        self.client = client
        self.key = key
        self.consumer = consumer or socket.gethostname()
        self.processing = f"{key}:processing:{self.consumer}"
        self._redis = _bytes_client(client)
        self.follow = follow
        self._recovered: deque[bytes] | None = None
        self._read = 0  # items read in this run: their IDs

    @property
    def name(self) -> str:
        return f"list {self.key}"

    def prepare(self, sink: Any) -> None:
        """Check the sink; take back what this consumer had taken and not written.
        Blocking: call it from a thread."""
        _check_sink(sink)
        left = self._redis.lrange(self.processing, 0, -1)
        self._recovered = deque(reversed(left))  # the head is the newest

    def read(self, count: int, *, block: bool) -> list[Entry]:
        """Up to ``count`` items: taken back ones first, then new ones; ``[]`` when there
        is none. Blocking: call it from a thread."""
        assert self._recovered is not None, "prepare() first"
        if self._recovered:
            items = [self._recovered.popleft() for _ in range(min(count, len(self._recovered)))]
        else:
            items = list(self._redis.eval(_TAKE, 2, self.key, self.processing, count))
            if not items and block:
                item = self._redis.blmove(
                    self.key, self.processing, BLOCK_SECONDS, "RIGHT", "LEFT"
                )
                items = [] if item is None else [item]
        first = self._read + 1
        self._read += len(items)
        return [_decoded(str(first + i), raw, "it") for i, raw in enumerate(items)]

    def ack(self, entries: Sequence[Entry]) -> None:
        """Remove ``entries`` (handled without a sink) from the processing list. Blocking."""
        if entries:
            with self._redis.pipeline(transaction=True) as batch:
                for entry in entries:
                    batch.lrem(self.processing, -1, entry.raw)
                batch.execute()

    def commit(self, sink: StreamSink | ListSink, outputs: Sequence[Output]) -> int:
        """Write ``outputs`` to ``sink`` and remove their inputs from the processing
        list, atomically; how many were written."""
        if not outputs:
            return 0
        args = _commit_arguments(sink, outputs, with_ids=False)
        script = sink.emit + _LIST_COMMIT
        return int(self._redis.eval(script, 2, self.processing, sink.key, *args))


class ListSink:
    """A Redis list the outputs are pushed to (RPUSH), in input order: a result as its
    text, a failed item as JSON ``{"error": TYPE, "message": ..., "id": ...}`` (the
    input's ID; from a list source, ``"input"``: the item itself)."""

    emit = _RPUSH_EMIT

    def __init__(self, key: str) -> None:
        self.key = key

    def value(self, entry: Entry, with_id: bool, kind: str, value: Any, error_type: str) -> Any:
        """What the commit script pushes for an output: the result, or the error as
        JSON, with the input's ID (``with_id``: a stream entry's) or the item itself."""
        if kind != "error":
            return value
        error = {"error": error_type, "message": value}
        if with_id:
            error["id"] = entry.id
        else:
            assert entry.raw is not None  # a list item is always there, as bytes
            error["input"] = entry.raw.decode("utf-8", "replace")
        return json.dumps(error, ensure_ascii=False)


@dataclasses.dataclass
class RunReport:
    """What a ``run()`` did: entries written with a result, written as errors, skipped
    (acknowledged without an output), and outputs another consumer had taken over."""

    written: int = 0
    errors: int = 0
    skipped: int = 0
    taken_over: int = 0


class _Reader:
    """Reads entries into a pipeline as its window has room: no more entries are taken
    from Redis and not yet written (or acknowledged) than the window holds. Entries stay
    counted in ``taken`` until ``done()`` says their outputs are committed."""

    def __init__(self, source: StreamSource | ListSource, pipe: OrderedPipeline, call: Any, *,
                 pickled: bool) -> None:  # fmt: skip
        self.source = source
        self.pipe = pipe
        self.call = call
        self.pickled = pickled
        self.taken: deque[Entry] = deque()  # read and not yet committed, in order
        self.failure: Exception | None = None  # reading failed (the connection, ...)
        self._room = anyio.Event()

    def first(self, count: int) -> list[Entry]:
        """The first ``count`` entries taken (a copy: the reader goes on extending)."""
        return list(itertools.islice(self.taken, count))

    def done(self, count: int) -> None:
        """The first ``count`` entries taken are committed: their room is free."""
        for _ in range(count):
            self.taken.popleft()
        self._room.set()

    async def run(self, cancel: Callable[[], None]) -> None:
        try:
            await self._read()
        except Exception as exc:  # noqa: BLE001 - raised by the caller, after its group
            self.failure = exc
            cancel()

    async def _read(self) -> None:
        source, pipe = self.source, self.pipe
        while True:
            free = pipe.statistics().window - len(self.taken)
            if free <= 0:
                await self._room.wait()
                self._room = anyio.Event()
                continue
            read_some = functools.partial(source.read, min(free, READ_COUNT), block=source.follow)
            entries = await anyio.to_thread.run_sync(read_some, abandon_on_cancel=True)
            if not entries:
                if source.follow:
                    continue
                break
            self.taken.extend(entries)
            items = [
                (entry.id, entry.raw if self.pickled else entry.data, entry.problem)
                for entry in entries
            ]
            await pipe.put_many(self.call, items)
        pipe.close()


def _pipeline_options(options: dict[str, Any]) -> Options:
    """The caller's pipeline options, with the two these functions own."""
    pipeline_options: PipelineOptions = {**options, "on_error": "return", "ordered": True}  # type: ignore[typeddict-item]
    return Options(**pipeline_options)


async def run(
    fn: Callable[[Any], Any] | None,
    source: StreamSource | ListSource,
    sink: StreamSink | ListSink,
    *,
    format: Format = "text",
    on_error: Literal["raise", "return", "skip"] = "raise",
    on_failure: Callable[[str, BaseException], None] | None = None,
    **options: Any,
) -> RunReport:
    """Run ``fn`` on every entry of ``source``, writing one output per entry to ``sink``
    in input order, each with its input's acknowledgement (see the module docstring).

    Ends when the source has no entry left (unless it follows), or on the first failed
    item under ``on_error="raise"`` (``EntryFailed``, the entry left pending). Under
    ``"return"`` a failed item is written as an error entry in its place; under
    ``"skip"`` it is acknowledged and logged. ``on_failure(entry_id, error)`` is called
    for each failed entry, whatever the policy (before its outcome is written).
    ``options`` are the pipeline's (``ordered`` and ``on_error`` are this function's own).
    """
    checked = _pipeline_options(options)
    call: Callable[[Any], Any] = EntryFunction(fn, format) if fn is not None else PickledTask()
    report = RunReport()
    await anyio.to_thread.run_sync(source.prepare, sink)
    failure: tuple[str, BaseException] | None = None
    write_failure: Exception | None = None

    async with OrderedPipeline(checked) as pipe, anyio.create_task_group() as tasks:
        reader = _Reader(source, pipe, call, pickled=fn is None)
        tasks.start_soon(reader.run, tasks.cancel_scope.cancel)
        async for outcomes in pipe.chunks():
            outputs: list[Output] = []
            # Still counted as taken until committed: the reader sees no room for them.
            for entry, outcome in zip(reader.first(len(outcomes)), outcomes, strict=True):
                output = _output(entry, outcome, on_error, on_failure, report, source.name)
                if output is None:
                    failure = (entry.id, outcome)
                    break
                outputs.append(output)
            try:
                written = await anyio.to_thread.run_sync(source.commit, sink, outputs)
            except Exception as exc:  # noqa: BLE001 - raised by run(), after the group
                write_failure = exc
                tasks.cancel_scope.cancel()
                break
            report.taken_over += len(outputs) - written
            reader.done(len(outputs))
            if failure is not None:
                tasks.cancel_scope.cancel()  # stop reading: the run ends here
                break
    lost = write_failure or reader.failure
    if lost is not None:
        # Reading or writing failed (the connection was lost, ...): what was not
        # committed stays pending for this consumer.
        raise lost
    if failure is not None:
        raise _entry_failed(source, *failure)
    return report


def _output(
    entry: Entry,
    outcome: Any,
    on_error: str,
    on_failure: Callable[[str, BaseException], None] | None,
    report: RunReport,
    source_name: str,
) -> Output | None:
    """What is written for ``entry`` (counted in ``report``); ``None``: it failed under
    ``on_error="raise"``, and the run stops before it."""
    if not isinstance(outcome, BaseException):
        report.written += 1
        return (entry, "data", outcome, "")
    if on_failure is not None:
        on_failure(entry.id, outcome)
    if on_error == "raise":
        return None
    if on_error == "skip":
        logger.warning(
            "entry %s of %s failed and was skipped: %s: %s",
            entry.id, source_name, type(outcome).__name__, outcome,
        )  # fmt: skip
        report.skipped += 1
        return (entry, "skip", "", "")
    report.errors += 1
    return (entry, "error", str(outcome), type(outcome).__name__)


def _entry_failed(
    source: StreamSource | ListSource, entry_id: str, error: BaseException
) -> EntryFailed:
    failed = EntryFailed(
        f"entry {entry_id} of {source.name} failed: {type(error).__name__}: {error}; it "
        f"stays pending for consumer {source.consumer!r} and is processed again first "
        "on the next run",
        entry_id,
    )
    failed.__cause__ = error
    return failed


class Feed:
    """A source and a sink plugged into your own pipeline: ``items()`` is the async
    iterable for ``pipe.map()``, and ``write()`` (or ``write_many()``, for the lists of
    ``pipe.chunks()``) takes the pipeline's outcomes, in order, and writes each one's
    output with its input's acknowledgement (see the module docstring)::

        async with inorder.redis.Feed(source, sink) as feed, OrderedPipeline(
            on_error="return"
        ) as pipe:
            pipe.map(clean, feed.items())
            async for outcomes in pipe.chunks():
                await feed.write_many(outcomes)

    The pipeline must be ordered: the n-th outcome written is the n-th item's. An
    outcome that is an exception (``on_error="return"`` on the pipeline) is handled by
    the feed's ``on_error``: written as an error entry (``"return"``), acknowledged and
    logged (``"skip"``), or (``"raise"``) ``EntryFailed`` with the entry left pending.
    Entries that hold no item (``BadEntry``) never reach the pipeline: the feed handles
    them in their place the same way. With no sink, each entry is acknowledged as its
    outcome is written. Entries read and not yet written are at most the pipeline's
    window plus ``read`` (the entries read at once). ``report`` counts what was written.
    """

    def __init__(
        self,
        source: StreamSource | ListSource,
        sink: StreamSink | ListSink | None = None,
        *,
        format: Format = "text",
        on_error: Literal["raise", "return", "skip"] = "return",
        read: int = 256,
    ) -> None:
        self.source = source
        self.sink = sink
        self.format = format
        self.on_error = on_error
        self.read = read
        self.report = RunReport()
        self._taken: deque[Entry] = deque()  # read and not yet written, in order
        self._items = 0  # of those, the ones whose item went to the pipeline
        self._open = False

    async def __aenter__(self) -> Feed:
        await anyio.to_thread.run_sync(self.source.prepare, self.sink)
        self._open = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._open = False
        if exc_info[0] is None:
            # Entries without an item after the last outcome are written in place too.
            await self.write_many([])

    async def items(self) -> AsyncIterator[Any]:
        """The items of the source's entries, read as they are asked for (following the
        source if it follows): the ``data`` text, or its JSON."""
        if not self._open:
            raise RuntimeError("use the Feed in 'async with' before iterating its items")
        source = self.source
        while True:
            read_some = functools.partial(source.read, self.read, block=source.follow)
            entries = await anyio.to_thread.run_sync(read_some, abandon_on_cancel=True)
            if not entries:
                if source.follow:
                    continue
                return
            for entry in entries:
                item: Any = entry.data
                if item is not None and self.format == "json":
                    try:
                        item = parse_json(item)
                    except ValueError as exc:
                        entry = Entry(entry.id, None, str(exc), entry.raw)
                self._taken.append(entry)
                if entry.data is not None:
                    self._items += 1
                    yield item

    async def write(self, outcome: Any) -> None:
        """Write the output of the oldest item without one (see ``write_many``)."""
        await self.write_many([outcome])

    async def write_many(self, outcomes: Sequence[Any]) -> None:
        """Write the outputs of the oldest items without one, in order, with their
        inputs' acknowledgement, in one script."""
        if len(outcomes) > self._items:
            raise RuntimeError(
                f"{len(outcomes)} outcomes written, {self._items} items read and not yet "
                "written: write each outcome of this feed's items() once, in order (an "
                "ordered pipeline)"
            )
        outputs: list[Output] = []
        failure: tuple[str, BaseException] | None = None
        pending = iter(outcomes)
        while self._taken and failure is None:
            entry = self._taken[0]
            if entry.data is None:
                problem = BadEntry(f"entry {entry.id}: {entry.problem}", entry.id)
                outcome: Any = problem
            else:
                outcome = next(pending, _NONE)
                if outcome is _NONE:
                    break
                self._items -= 1
                if not isinstance(outcome, BaseException):
                    try:
                        outcome = render(outcome, "jsonl" if self.format == "json" else "text")
                    except (TypeError, ValueError) as exc:  # not JSON: fails in its place
                        outcome = exc
            self._taken.popleft()
            output = _output(entry, outcome, self.on_error, None, self.report, self.source.name)
            if output is None:
                failure = (entry.id, outcome)
            else:
                outputs.append(output)
        if outputs:
            if self.sink is None:
                taken = [entry for entry, *_ in outputs]
                await anyio.to_thread.run_sync(self.source.ack, taken)
            else:
                written = await anyio.to_thread.run_sync(self.source.commit, self.sink, outputs)
                self.report.taken_over += len(outputs) - written
        if failure is not None:
            raise _entry_failed(self.source, *failure)


_NONE: Any = object()


@contextlib.asynccontextmanager
async def results(
    fn: Callable[[Any], Any],
    source: StreamSource | ListSource,
    *,
    format: Format = "text",
    **options: Any,
) -> AsyncIterator[AsyncIterator[tuple[Entry, Any]]]:
    """``fn`` on every entry of ``source``, the outcomes handed to your loop instead of a
    sink: ``async with inorder.redis.results(fn, source) as pairs: async for entry,
    outcome in pairs: ...``. Pairs come in input order; an outcome is the result, or the
    item's exception (as ``on_error="return"``). An entry is acknowledged once your loop
    asks for the pair after it: an entry whose pair was handed out when the process died
    (or the loop left) is handed out again on the next start, so what your loop does with
    a result happens at least once. ``options`` are the pipeline's.
    """
    checked = _pipeline_options(options)
    await anyio.to_thread.run_sync(source.prepare, None)
    async with OrderedPipeline(checked) as pipe, anyio.create_task_group() as tasks:
        reader = _Reader(source, pipe, EntryFunction(fn, format), pickled=False)
        tasks.start_soon(reader.run, tasks.cancel_scope.cancel)

        handled: list[Entry] = []  # entries whose next pair the loop asked for, not acked

        async def pairs() -> AsyncGenerator[tuple[Entry, Any], None]:
            async for outcomes in pipe.chunks():
                for entry, outcome in zip(reader.first(len(outcomes)), outcomes, strict=True):
                    yield entry, outcome
                    handled.append(entry)  # the loop came back for more
                await anyio.to_thread.run_sync(source.ack, list(handled))
                handled.clear()
                reader.done(len(outcomes))

        iterator = pairs()
        try:
            yield iterator
        finally:
            with anyio.CancelScope(shield=True):
                await iterator.aclose()
                # The loop left: what it had handled is acknowledged, not what it held.
                await anyio.to_thread.run_sync(source.ack, list(handled))
            tasks.cancel_scope.cancel()
    if reader.failure is not None:
        raise reader.failure


async def run_pickled_tasks(
    source: StreamSource | ListSource,
    sink: StreamSink | ListSink,
    *,
    on_error: Literal["raise", "return", "skip"] = "raise",
    on_failure: Callable[[str, BaseException], None] | None = None,
    **options: Any,
) -> RunReport:
    """**Runs whatever anyone who can write to the source put there.** The classic
    Redis task queue: each entry's data is a pickled ``(function, args)`` (or ``(function,
    args, kwargs)``) pushed by a producer; the workers unpickle it, call it, and the
    result goes to ``sink`` pickled. Unpickling executes code chosen by the writer: use it
    only on a Redis that only trusted programs can write to. ``run()`` with a function
    named on the consuming side is the safe default. Otherwise as ``run()``.
    """
    return await run(None, source, sink, on_error=on_error, on_failure=on_failure, **options)


_DATA = (b"data", "data")


def _bytes_client(client: Any) -> Any:
    """A client of our own on ``client``'s server and settings, whose replies are bytes
    (a client that decodes them would fail a whole read on one entry that is not UTF-8):
    ``client``'s own connections, or, if it decodes, connections of its own (closed
    when it is garbage collected)."""
    import redis

    pool = client.connection_pool
    if pool.connection_kwargs.get("decode_responses"):
        pool = redis.ConnectionPool(
            connection_class=pool.connection_class,
            **{**pool.connection_kwargs, "decode_responses": False},
        )
    return redis.Redis(connection_pool=pool)


def _commit_arguments(
    sink: StreamSink | ListSink, outputs: Sequence[Output], *, with_ids: bool
) -> list[Any]:
    """A commit script's arguments per output: the input (a stream entry's ID, or a list
    item as read), kind, value as the sink writes it, error type. ``with_ids``: the
    inputs are stream entries, whose IDs the outputs name."""
    args: list[Any] = []
    for entry, kind, value, error_type in outputs:
        written = sink.value(entry, with_ids, kind, value, error_type)
        args.extend((entry.id if with_ids else entry.raw, kind, written, error_type))
    return args


def _check_sink(sink: Any) -> None:
    if sink is not None and not isinstance(sink, StreamSink | ListSink):
        raise TypeError(f"the sink is a StreamSink or a ListSink, got {type(sink).__qualname__}")


def _as_sent(response: Any, **options: Any) -> Any:
    return response


def _entry(entry_id: Any, fields: Any) -> Entry:
    """An entry of a stream, its ``fields`` a dict or a flat list of names and values."""
    entry_id = _text(entry_id)
    if not fields:
        return Entry(entry_id, None, "it was deleted from the stream")
    if isinstance(fields, list):
        names, values = fields[::2], fields[1::2]
        raw = next((v for n, v in zip(names, values, strict=True) if n in _DATA), None)
    else:
        raw = fields.get(b"data", fields.get("data"))
    if raw is None:
        return Entry(entry_id, None, "it has no 'data' field")
    if isinstance(raw, bytes):
        return _decoded(entry_id, raw, "its 'data'")
    return Entry(entry_id, str(raw), raw=str(raw).encode())


def _decoded(entry_id: str, raw: bytes, what: str) -> Entry:
    """An entry of ``raw`` data, or (not UTF-8) one that says so of ``what``."""
    try:
        return Entry(entry_id, raw.decode("utf-8"), raw=raw)
    except UnicodeDecodeError as exc:
        return Entry(entry_id, None, f"{what} is not UTF-8 text ({exc.reason})", raw=raw)


def _id_key(entry_id: str) -> tuple[int, int]:
    """A stream entry ID as Redis orders them (``"1700000000000-3"``)."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


for _public in (
    run,
    Feed,
    run_pickled_tasks,
    results,
    BadEntry,
    EntryFailed,
    Entry,
    StreamSource,
    StreamSink,
    ListSource,
    ListSink,
    RunReport,
):
    _public.__module__ = "inorder.redis"
del _public
