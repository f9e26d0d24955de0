"""Redis streams as source and sink (``inorder.redis``), against a real redis-server on
127.0.0.1 (Debian's package; ``make test`` installs it), started here on a free port."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

redis = pytest.importorskip("redis")  # the test extra installs it

import inorder.redis  # noqa: E402

from . import redis_functions as fx  # noqa: E402
from .conftest import free_port, wait_for_redis  # noqa: E402
from .helpers import run_on_a_terminal  # noqa: E402

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).parent.parent


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    with redis.Redis.from_url(redis_url) as connection:
        yield connection


def names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"in-{tag}", f"out-{tag}"


def fill(client: Any, stream: str, items: list[str]) -> list[str]:
    with client.pipeline(transaction=False) as batch:
        for item in items:
            batch.xadd(stream, {"data": item})
        return [i.decode() for i in batch.execute()]


def outputs(client: Any, stream: str) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()} for _, fields in client.xrange(stream)
    ]


async def test_entries_go_through_in_order_with_their_ids(anyio_backend: Any, client: Any) -> None:
    source, sink = names()
    items = [f"item {i}" for i in range(10_000)]
    ids = fill(client, source, items)
    report = await inorder.redis.run(
        fx.shout,
        inorder.redis.StreamSource(client, source, "etl", "c1"),
        inorder.redis.StreamSink(sink),
        workers=2,
    )
    assert report.written == 10_000
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids
    assert [o["data"] for o in written] == [fx.shout(item) for item in items]
    assert client.xpending(source, "etl")["pending"] == 0  # every input acknowledged


class Processes:
    """Starts the consumers (``tests/redis_functions.py``) and commands a test runs; the
    ``processes`` fixture kills and reaps whichever still run when the test ends, passed
    or failed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.started: list[subprocess.Popen[Any]] = []

    def consumer(
        self, source: str, sink: str, name: str, claim_idle: float, kind: str = "stream"
    ) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "redis_functions.py"), self.url, source,
             sink, name, str(claim_idle), kind],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.started.append(process)
        return process

    def inorder(self, *args: str) -> subprocess.Popen[str]:
        """``python -m inorder ARGS...``, its output and errors piped."""
        process = _inorder(*args)
        self.started.append(process)
        return process


@pytest.fixture
def processes(redis_url: str) -> Iterator[Processes]:
    made = Processes(redis_url)
    try:
        yield made
    finally:
        for process in made.started:
            process.kill()
            process.wait()


def until(condition: Callable[[], bool], *alive: subprocess.Popen[Any]) -> None:
    """Return once ``condition()`` holds; fail if 60 s pass or a process of ``alive``
    ends first."""
    deadline = time.monotonic() + 60
    while not condition():
        assert all(process.poll() is None for process in alive), "a consumer ended early"
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.002)


def kill_mid_stream(
    start: Callable[[], subprocess.Popen[bytes]], written: Callable[[], int], total: int
) -> int:
    """Start a consumer and SIGKILL it once a random number (50-400) of outputs more
    were written, up to five times while at least 500 remain; then let one finish.
    Returns how many were killed mid-stream."""
    chance = random.Random()
    kills = 0
    while kills < 5 and written() < total - 500:
        consumer = start()
        target = written() + chance.randint(50, 400)
        until(lambda target=target: written() >= target, consumer)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait()
        kills += 1
    assert start().wait(120) == 0
    return kills


def test_a_consumer_killed_at_random_moments_and_restarted_writes_each_output_once(
    processes: Processes, client: Any
) -> None:
    source, sink = names()
    items = [str(i) for i in range(3000)]
    ids = fill(client, source, items)
    kills = kill_mid_stream(
        lambda: processes.consumer(source, sink, "c1", 60.0),
        lambda: int(client.xlen(sink)),
        len(items),
    )
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids  # each input once, in input order
    assert [o["data"] for o in written] == [fx.jittery(item) for item in items]
    assert kills >= 3


def _bad_entries(client: Any, stream: str) -> list[str]:
    ids = fill(client, stream, ["a", "b", "c"])
    ids.append(client.xadd(stream, {"other": "x"}).decode())  # no data field
    ids.append(client.xadd(stream, {"data": b"\xff\xfe"}).decode())  # not UTF-8
    ids.extend(fill(client, stream, ["d"]))
    return ids


async def fail_on_b_through(
    source: Any, sink: Any, on_error: Any = "return"
) -> inorder.redis.RunReport:
    """``fx.fail_on_b`` (fails on the item ``b``) from ``source`` to ``sink``, one worker."""
    return await inorder.redis.run(fx.fail_on_b, source, sink, on_error=on_error, workers=1)


async def _run_fail_on_b(
    client: Any, source: str, group: str, sink: str, on_error: Any
) -> inorder.redis.RunReport:
    return await fail_on_b_through(
        inorder.redis.StreamSource(client, source, group, "c1"),
        inorder.redis.StreamSink(sink),
        on_error,
    )


async def test_bad_entries_and_failed_items_are_written_as_errors_with_their_ids(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    ids = _bad_entries(client, source)
    report = await _run_fail_on_b(client, source, "etl", sink, "return")
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids
    assert [o.get("data") for o in written] == ["a", None, "c", None, None, "d"]
    assert written[1] == {"id": ids[1], "error": "ValueError", "message": "b is not welcome"}
    assert written[3]["error"] == "BadEntry"
    assert written[3]["message"] == f"entry {ids[3]}: it has no 'data' field"
    assert "not UTF-8" in written[4]["message"]
    assert (report.written, report.errors) == (3, 3)


@pytest.mark.parametrize(
    "settings",
    [{"decode_responses": True}, {"protocol": 3}, {"protocol": 3, "decode_responses": True}],
    ids=["decoding", "resp3", "resp3-decoding"],
)
async def test_a_client_that_decodes_or_speaks_resp3_reads_the_same_entries(
    anyio_backend: Any, client: Any, redis_url: str, settings: dict[str, Any]
) -> None:
    source, sink = names()
    ids = _bad_entries(client, source)  # one of them not UTF-8
    with redis.Redis.from_url(redis_url, **settings) as theirs:
        report = await fail_on_b_through(
            inorder.redis.StreamSource(theirs, source, "etl", "c1"), inorder.redis.StreamSink(sink)
        )
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids
    assert [o.get("data") for o in written] == ["a", None, "c", None, None, "d"]
    assert "not UTF-8" in written[4]["message"]
    assert (report.written, report.errors) == (3, 3)

    items, results = f"{source}-list", f"{sink}-list"
    client.lpush(items, b"one", b"\xff", b"two")
    with redis.Redis.from_url(redis_url, **settings) as theirs:
        await inorder.redis.run(
            fx.shout,
            inorder.redis.ListSource(theirs, items, "c1"),
            inorder.redis.ListSink(results),
            on_error="return",
            workers=1,
        )
    pushed = client.lrange(results, 0, -1)
    assert pushed[0::2] == [b"ONE!", b"TWO!"]  # first in, first out
    assert json.loads(pushed[1])["error"] == "BadEntry"


async def test_skip_acknowledges_failures_and_raise_leaves_the_entry_pending(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    ids = _bad_entries(client, source)
    report = await _run_fail_on_b(client, source, "skipping", sink, "skip")
    assert [o["id"] for o in outputs(client, sink)] == [ids[0], ids[2], ids[5]]
    assert report.skipped == 3
    assert client.xpending(source, "skipping")["pending"] == 0

    raising = f"{sink}-raise"
    with pytest.raises(inorder.redis.EntryFailed, match=f"entry {ids[1]}") as caught:
        await _run_fail_on_b(client, source, "raising", raising, "raise")
    assert caught.value.entry_id == ids[1]
    assert isinstance(caught.value.__cause__, ValueError)
    assert [o["id"] for o in outputs(client, raising)] == [ids[0]]  # what came before
    pending = client.xpending_range(source, "raising", "-", "+", 10)
    assert pending[0]["message_id"].decode() == ids[1]  # processed first on the next run


async def test_what_was_read_never_exceeds_the_window(anyio_backend: Any, client: Any) -> None:
    source, sink = names()
    fill(client, source, [f'{{"n": {i}}}' for i in range(400)])
    client.xgroup_create(source, "etl", id="0")  # for the watcher's first look
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            info = await anyio.to_thread.run_sync(client.xpending, source, "etl")
            peak = max(peak, info["pending"])
            await anyio.sleep(0.002)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(watch)
        await inorder.redis.run(
            fx.slow_double,
            inorder.redis.StreamSource(client, source, "etl", "c1"),
            inorder.redis.StreamSink(sink),
            format="json",
            window=16,
            workers=2,
        )
        tasks.cancel_scope.cancel()
    assert 2 <= peak <= 16
    assert [o["data"] for o in outputs(client, sink)] == [f'{{"n": {2 * i}}}' for i in range(400)]


async def outputs_reach(client: Any, stream: str, count: int) -> None:
    """Wait until ``stream`` holds ``count`` entries (written by another task: polled)."""
    while await anyio.to_thread.run_sync(client.xlen, stream) < count:  # noqa: ASYNC110
        await anyio.sleep(0.01)


async def test_follow_picks_up_later_entries_and_stops_when_cancelled(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    fill(client, source, ["first"])
    with anyio.move_on_after(30):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                lambda: inorder.redis.run(
                    fx.shout,
                    inorder.redis.StreamSource(client, source, "etl", "c1", follow=True),
                    inorder.redis.StreamSink(sink),
                    workers=1,
                )
            )
            await outputs_reach(client, sink, 1)
            fill(client, source, ["later"])
            await outputs_reach(client, sink, 2)
            started = time.monotonic()
            tasks.cancel_scope.cancel()
    assert time.monotonic() - started < 1.0
    assert [o["data"] for o in outputs(client, sink)] == ["FIRST!", "LATER!"]


def test_two_consumers_one_killed_the_other_claims_its_entries(
    processes: Processes, client: Any
) -> None:
    source, sink = names()
    items = [str(i) for i in range(3000)]
    ids = fill(client, source, items)

    def pending(name: str) -> int:
        try:
            return len(client.xpending_range(source, "g", "-", "+", 1, consumername=name))
        except redis.ResponseError:  # NOGROUP: no consumer has made the group yet
            return 0

    # Neither claims the other's entries while both run (idle 60 s): c1's stay its own.
    first = processes.consumer(source, sink, "c1", 60.0)
    second = processes.consumer(source, sink, "c2", 60.0)
    until(lambda: pending("c1") > 0 and pending("c2") > 0, first, second)
    first.send_signal(signal.SIGKILL)  # dies with entries pending: never restarted
    first.wait()
    assert pending("c1") > 0
    assert second.wait(120) == 0  # ends when no new entry is left, c1's still pending
    assert client.xlen(sink) < len(items)
    rounds = 0
    while client.xlen(sink) < len(items):  # c1's entries idle long enough: c2 claims them
        rounds += 1
        assert rounds <= 20
        time.sleep(0.5)  # the idle time XAUTOCLAIM asks of an entry before it is claimed
        assert processes.consumer(source, sink, "c2", 0.5).wait(120) == 0
    assert pending("c1") == 0
    written = outputs(client, sink)
    assert sorted(o["id"] for o in written) == sorted(ids)  # each input exactly once
    by_id = dict(zip(ids, items, strict=True))
    assert all(o["data"] == fx.jittery(by_id[o["id"]]) for o in written)
    assert client.xpending(source, "g")["pending"] == 0


# -- the command line ----------------------------------------------------------------------


def _inorder(*args: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "inorder", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **options,
    )


def inorder_map(
    function: str, source: str, sink: str, *options: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """``inorder map tests.FUNCTION SOURCE --output SINK OPTIONS...`` run to its end:
    its exit status and stderr."""
    command = _inorder(
        "map", f"tests.{function}", source, "--output", sink, *options,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    try:
        _, err = command.communicate(timeout=120)
    finally:
        command.kill()  # nothing left running if it did not end in time
        command.wait()
    return command.returncode, err


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_inorder_map_from_a_stream_to_a_stream(redis_url: str, client: Any, loop: str) -> None:
    source, sink = names()
    items = [f"line {i}" for i in range(2000)] + ["b"]
    ids = fill(client, source, items)
    status, err = inorder_map(
        "cli_functions:upper",
        f"{redis_url}?stream={source}&group=etl", f"{redis_url}?stream={sink}",
        "--loop", loop, "--on-error", "return",
    )  # fmt: skip
    assert status == 0, err
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids
    assert [o["data"] for o in written] == [item.upper() for item in items]


def test_inorder_map_reports_a_failed_entry_by_its_id(redis_url: str, client: Any) -> None:
    source, sink = names()
    ids = fill(client, source, ["1", "x", "3"])
    status, err = inorder_map(
        "cli_functions:number", f"{redis_url}?stream={source}&group=etl",
        f"{redis_url}?stream={sink}",
    )  # fmt: skip
    assert status == 1
    assert f"inorder map: entry {ids[1]}: ValueError" in err
    assert [o["data"] for o in outputs(client, sink)] == ["1"]  # what came before


def test_inorder_map_on_redis_retries_and_times_out_as_on_files(
    redis_url: str, client: Any, tmp_path: Path
) -> None:
    source, sink = names()
    ids = fill(client, source, ["a", "b", "c", "d"])
    status, err = inorder_map(
        "cli_functions:flaky", f"{redis_url}?stream={source}", f"{redis_url}?stream={sink}",
        "--retries", "1", "-j", "2", "--window", "2",
        env={"FLAKY_DIR": str(tmp_path)},
    )  # fmt: skip
    assert status == 0, err  # every first attempt failed, every retry worked
    assert [(o["id"], o["data"]) for o in outputs(client, sink)] == list(
        zip(ids, ["a", "b", "c", "d"], strict=True)
    )

    slow_in, slow_out = names()
    ids = fill(client, slow_in, ["a", "hang", "b"])
    status, err = inorder_map(
        "cli_functions:slow", f"{redis_url}?stream={slow_in}", f"{redis_url}?stream={slow_out}",
        "--timeout", "0.5", "--on-error", "return",
    )  # fmt: skip
    written = outputs(client, slow_out)
    assert status == 0, err  # as with files: a failed entry written in place is no failure
    assert f"inorder map: entry {ids[1]}: TaskTimeoutError" in err  # but it is reported
    assert [o["id"] for o in written] == ids
    assert (written[0]["data"], written[1]["error"], written[2]["data"]) == (
        "a", "TaskTimeoutError", "b"
    )  # fmt: skip


def test_inorder_map_follows_new_entries_and_stops_on_sigterm(
    processes: Processes, redis_url: str, client: Any
) -> None:
    source, sink = names()
    fill(client, source, ["first"])
    command = processes.inorder(
        "map", "--follow", "tests.cli_functions:upper",
        f"{redis_url}?stream={source}&group=etl", "--output", f"{redis_url}?stream={sink}",
    )  # fmt: skip
    until(lambda: client.xlen(sink) >= 1, command)
    fill(client, source, ["later"])
    until(lambda: client.xlen(sink) >= 2, command)
    started = time.monotonic()
    command.send_signal(signal.SIGTERM)
    _, err = command.communicate(timeout=10)
    assert time.monotonic() - started < 1.0
    assert command.returncode == 0, err
    assert "stopped (SIGTERM)" in err
    assert [o["data"] for o in outputs(client, sink)] == ["FIRST", "LATER"]
    assert client.xpending(source, "etl")["pending"] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["redis://127.0.0.1:1/0?group=g"], "must name one stream"),
        (["redis://127.0.0.1:1/0?stream=s"], "needs a Redis output"),
        (
            ["redis://127.0.0.1:1/0?list=l", "--output", "redis://127.0.0.1:1/1?stream=o"],
            "same Redis server and database",
        ),
        (["--follow", "a.txt"], "one Redis input URL"),
    ],
)
def test_inorder_map_refuses_a_bad_redis_command_line(
    processes: Processes, arguments: list[str], message: str
) -> None:
    command = processes.inorder("map", "tests.cli_functions:upper", *arguments)
    _, err = command.communicate(timeout=60)
    assert command.returncode == 2
    assert message in err


def _start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
         "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_redis(redis.Redis(port=port), server)
    return server


def test_redis_killed_mid_run_fails_clearly_and_a_rerun_loses_nothing(
    processes: Processes, tmp_path: Path
) -> None:
    port = free_port()
    server = _start_redis(port, tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        items = [str(i) for i in range(3000)]
        ids = fill(client, "in", items)
        arguments = (
            "map", "tests.redis_functions:jittery", f"{url}?stream=in&group=g",
            "--output", f"{url}?stream=out",
        )  # fmt: skip
        command = processes.inorder(*arguments)
        until(lambda: client.xlen("out") >= 300, command)  # some way into the stream
        server.send_signal(signal.SIGKILL)  # Redis dies mid-run
        server.wait()
        _, err = command.communicate(timeout=60)
        assert command.returncode == 1
        assert "lost the connection to Redis" in err
        server = _start_redis(port, tmp_path)  # back, from its append-only file
        _, err = processes.inorder(*arguments).communicate(timeout=120)
        written = outputs(client, "out")
        assert [o["id"] for o in written] == ids  # each input once, in order
        assert [o["data"] for o in written] == [fx.jittery(item) for item in items]
    finally:
        server.terminate()
        server.wait(20)


# -- lists ---------------------------------------------------------------------------------


def push(client: Any, key: str, items: list[Any]) -> None:
    for start in range(0, len(items), 5000):
        client.lpush(key, *items[start : start + 5000])  # producers push at the head


async def test_list_items_go_through_in_order(anyio_backend: Any, client: Any) -> None:
    source, sink = names()
    items = [f"item {i}" for i in range(10_000)]
    push(client, source, items)
    report = await inorder.redis.run(
        fx.shout,
        inorder.redis.ListSource(client, source, "c1"),
        inorder.redis.ListSink(sink),
        workers=2,
    )
    assert report.written == 10_000
    assert [v.decode() for v in client.lrange(sink, 0, -1)] == [fx.shout(i) for i in items]
    assert client.llen(f"{source}:processing:c1") == 0
    assert client.llen(source) == 0


async def test_a_bad_list_item_is_written_as_an_error_in_its_place(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    push(client, source, [b"a", b"b", b"\xff", b"c"])
    await fail_on_b_through(
        inorder.redis.ListSource(client, source, "c1"), inorder.redis.ListSink(sink)
    )
    written = [v.decode() for v in client.lrange(sink, 0, -1)]
    assert written[0] == "a"
    assert json.loads(written[1]) == {
        "error": "ValueError", "message": "b is not welcome", "input": "b"
    }  # fmt: skip
    assert json.loads(written[2])["error"] == "BadEntry"
    assert "not UTF-8" in json.loads(written[2])["message"]
    assert written[3] == "c"


def test_a_list_consumer_killed_and_restarted_writes_each_output_once(
    processes: Processes, client: Any
) -> None:
    source, sink = names()
    items = [str(i) for i in range(3000)]
    push(client, source, items)
    kills = kill_mid_stream(
        lambda: processes.consumer(source, sink, "c1", 60.0, kind="list"),
        lambda: int(client.llen(sink)),
        len(items),
    )
    written = [v.decode() for v in client.lrange(sink, 0, -1)]
    assert written == [fx.jittery(item) for item in items]  # each once, in order
    assert kills >= 3


async def test_pickled_tasks_run_only_when_asked_by_name(anyio_backend: Any, client: Any) -> None:
    source, sink = names()
    tasks = [pickle.dumps((fx.shout, (f"task {i}",))) for i in range(50)]
    tasks.insert(10, b"not a pickle")
    push(client, source, tasks)
    report = await inorder.redis.run_pickled_tasks(
        inorder.redis.ListSource(client, source, "c1"),
        inorder.redis.ListSink(sink),
        on_error="return",
        workers=2,
    )
    assert (report.written, report.errors) == (50, 1)
    written = client.lrange(sink, 0, -1)
    assert json.loads(written[10])["error"] == "BadEntry"
    results = [pickle.loads(v) for i, v in enumerate(written) if i != 10]
    assert results == [fx.shout(f"task {i}") for i in range(50)]

    # The same entries through run() are data: a pickle is not text, nothing is unpickled.
    again, out = names()
    push(client, again, tasks[:3])
    await inorder.redis.run(
        fx.shout,
        inorder.redis.ListSource(client, again, "c1"),
        inorder.redis.ListSink(out),
        on_error="return",
        workers=1,
    )
    assert [json.loads(v)["error"] for v in client.lrange(out, 0, -1)] == ["BadEntry"] * 3


# -- no sink: the outcomes in your own loop -------------------------------------------------


async def test_results_hands_out_pairs_in_order_and_acknowledges_what_was_handled(
    anyio_backend: Any, client: Any
) -> None:
    source, _ = names()
    items = [f"item {i}" for i in range(300)] + ["b"]
    ids = fill(client, source, items)
    seen: list[tuple[str, Any]] = []
    stream = inorder.redis.StreamSource(client, source, "loop", "c1")
    async with inorder.redis.results(fx.fail_on_b, stream, workers=2) as pairs:
        async for entry, outcome in pairs:
            seen.append((entry.id, outcome))
            if len(seen) == 100:
                break  # entry 99 was handed out, not handled
    assert [entry_id for entry_id, _ in seen] == ids[:100]
    assert [outcome for _, outcome in seen] == items[:100]
    pending = client.xpending_range(source, "loop", "-", "+", 1000, consumername="c1")
    assert pending[0]["message_id"].decode() == ids[99]  # handed out again next time

    again: list[tuple[str, Any]] = []
    stream = inorder.redis.StreamSource(client, source, "loop", "c1")
    async with inorder.redis.results(fx.fail_on_b, stream, workers=2) as pairs:
        async for entry, outcome in pairs:
            again.append((entry.id, outcome))
    assert [entry_id for entry_id, _ in again] == ids[99:]
    assert [o for _, o in again[:-1]] == items[99:-1]
    assert isinstance(again[-1][1], ValueError)  # the item's exception, in place
    assert client.xpending(source, "loop")["pending"] == 0


async def test_results_from_a_list(anyio_backend: Any, client: Any) -> None:
    source, _ = names()
    push(client, source, [str(i) for i in range(500)])
    got = []
    async with inorder.redis.results(
        fx.shout, inorder.redis.ListSource(client, source, "c1"), workers=2
    ) as pairs:
        async for _, outcome in pairs:
            got.append(outcome)
    assert got == [fx.shout(str(i)) for i in range(500)]
    assert client.llen(f"{source}:processing:c1") == 0


def test_a_consumer_whose_entries_were_claimed_cannot_write_them_again(client: Any) -> None:
    source, sink = names()
    ids = fill(client, source, ["a", "b", "c"])
    slow = inorder.redis.StreamSource(client, source, "g", "slow", claim_idle=None)
    slow.prepare(inorder.redis.StreamSink(sink))
    taken = slow.read(10, block=False)
    assert [entry.id for entry in taken] == ids
    # Another consumer takes them over (idle for 0 ms here: "seemed dead").
    other = inorder.redis.StreamSource(client, source, "g", "other", claim_idle=0.0)
    other.prepare(inorder.redis.StreamSink(sink))
    claimed = other.read(10, block=False)
    assert [entry.id for entry in claimed] == ids
    assert (
        other.commit(inorder.redis.StreamSink(sink), [(e, "data", "x", "") for e in claimed]) == 3
    )
    # The slow one comes back and commits what it had: nothing is written twice.
    assert slow.commit(inorder.redis.StreamSink(sink), [(e, "data", "y", "") for e in taken]) == 0
    assert [o["data"] for o in outputs(client, sink)] == ["x", "x", "x"]


# -- a stream to a list, a list to a stream ------------------------------------------------


async def test_a_stream_goes_to_a_list_and_a_list_to_a_stream(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    ids = _bad_entries(client, source)  # a, b (fails), c, no data, not UTF-8, d
    await _run_fail_on_b(client, source, "etl", sink, "return")  # stream -> stream: fine
    listed = f"{sink}-list"
    await fail_on_b_through(
        inorder.redis.StreamSource(client, source, "to-list", "c1"), inorder.redis.ListSink(listed)
    )
    pushed = [v.decode() for v in client.lrange(listed, 0, -1)]
    assert [pushed[0], pushed[2], pushed[5]] == ["a", "c", "d"]
    assert json.loads(pushed[1]) == {
        "error": "ValueError", "message": "b is not welcome", "id": ids[1]
    }  # fmt: skip
    assert json.loads(pushed[3])["id"] == ids[3]
    assert json.loads(pushed[4])["error"] == "BadEntry"
    assert client.xpending(source, "to-list")["pending"] == 0

    items, streamed = f"{source}-list", f"{sink}-stream"
    push(client, items, [b"a", b"b", b"\xff", b"c"])
    await fail_on_b_through(
        inorder.redis.ListSource(client, items, "c1"), inorder.redis.StreamSink(streamed)
    )
    written = outputs(client, streamed)
    assert written[0] == {"data": "a"}  # a list item has no ID
    assert written[1] == {"error": "ValueError", "message": "b is not welcome"}
    assert written[2]["error"] == "BadEntry"
    assert written[3] == {"data": "c"}
    assert client.llen(f"{items}:processing:c1") == 0


def written_to(client: Any, kind: str, key: str) -> list[str]:
    if kind == "list":
        return [v.decode() for v in client.lrange(key, 0, -1)]
    return [o["data"] for o in outputs(client, key)]


@pytest.mark.parametrize(
    ("source_kind", "sink_kind"), [("list", "list"), ("list", "stream"), ("stream", "list")]
)
def test_inorder_map_between_lists_and_streams(
    redis_url: str, client: Any, source_kind: str, sink_kind: str
) -> None:
    source, sink = names()
    items = [f"line {i}" for i in range(1000)]
    if source_kind == "list":
        push(client, source, items)
    else:
        fill(client, source, items)
    status, err = inorder_map(
        "cli_functions:upper",
        f"{redis_url}?{source_kind}={source}", f"{redis_url}?{sink_kind}={sink}",
    )  # fmt: skip
    assert status == 0, err
    assert written_to(client, sink_kind, sink) == [i.upper() for i in items]


# -- a password and TLS, as redis-py reads them from the URL --------------------------------


def test_inorder_map_over_tls_with_a_password(tmp_path: Path) -> None:
    import trustme  # the test extra installs it

    authority = trustme.CA()
    server_cert = authority.issue_cert("127.0.0.1")
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--dir", str(tmp_path), "--save", "", "--requirepass", "s3cret",
         "--tls-cert-file", str(tmp_path / "server.pem"),
         "--tls-key-file", str(tmp_path / "server.key"),
         "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"rediss://:s3cret@127.0.0.1:{port}/0"
    ca = f"ssl_ca_certs={tmp_path / 'ca.pem'}"
    try:
        client = redis.Redis.from_url(f"{base}?{ca}")
        wait_for_redis(client, server)
        ids = fill(client, "in", ["a", "b"])
        status, err = inorder_map(
            "cli_functions:upper", f"{base}?stream=in&{ca}", f"{base}?stream=out&{ca}"
        )
        assert status == 0, err
        assert outputs(client, "out") == [{"id": ids[0], "data": "A"}, {"id": ids[1], "data": "B"}]

        wrong = f"rediss://:wrong@127.0.0.1:{port}/0"
        status, err = inorder_map(
            "cli_functions:upper", f"{wrong}?stream=in&{ca}", f"{wrong}?stream=out&{ca}"
        )
        assert status == 1
        assert f"cannot reach Redis at rediss://:***@127.0.0.1:{port}/0" in err
        assert "wrong" not in err  # the password is not shown
        assert "invalid username-password pair" in err  # what Redis said
    finally:
        server.terminate()
        server.wait(20)


def test_inorder_map_from_a_stream_draws_progress_on_a_terminal(
    redis_url: str, client: Any
) -> None:
    source, sink = names()
    fill(client, source, [f"line {i}" for i in range(30)])
    status, out, drawn = run_on_a_terminal(
        [sys.executable, "-m", "inorder", "map", "tests.cli_functions:upper",
         f"{redis_url}?stream={source}", "--output", f"{redis_url}?stream={sink}",
         "--progress"],
        cwd=ROOT,
    )  # fmt: skip
    assert (status, out) == (0, "")
    assert "30 done" in drawn
    assert len(outputs(client, sink)) == 30


# -- a Feed: a source and a sink in the caller's own pipeline -------------------------------


async def test_a_feed_plugs_a_source_and_a_sink_into_a_pipeline(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    ids = _bad_entries(client, source)  # a, b (fails), c, no data, not UTF-8, d
    ids.append(client.xadd(source, {"other": "x"}).decode())  # one more after the last item
    feed = inorder.redis.Feed(
        inorder.redis.StreamSource(client, source, "etl", "c1"), inorder.redis.StreamSink(sink)
    )
    async with feed, inorder.OrderedPipeline(workers=2, on_error="return", window=4) as pipe:
        pipe.map(fx.fail_on_b, feed.items())
        async for outcomes in pipe.chunks():
            await feed.write_many(outcomes)
    written = outputs(client, sink)
    assert [o["id"] for o in written] == ids  # every entry, in order, bad ones in place
    assert [o.get("data") for o in written] == ["a", None, "c", None, None, "d", None]
    assert written[1]["error"] == "ValueError"
    assert [written[i]["error"] for i in (3, 4, 6)] == ["BadEntry"] * 3
    assert (feed.report.written, feed.report.errors) == (3, 4)
    assert client.xpending(source, "etl")["pending"] == 0


async def test_a_feed_one_outcome_at_a_time_stops_where_raise_says(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    items, results = f"{source}-list", f"{sink}-list"
    push(client, items, [b'{"n": 1}', b"not json", b'{"n": 3}', b'{"n": "b"}', b'{"n": 5}'])
    feed = inorder.redis.Feed(
        inorder.redis.ListSource(client, items, "c1"),
        inorder.redis.ListSink(results),
        format="json",
        on_error="raise",
    )

    async def one_at_a_time() -> None:
        async with feed, inorder.OrderedPipeline(workers=1) as pipe:
            pipe.map(fx.slow_double, feed.items())
            async for result in pipe:
                await feed.write(result)

    with pytest.raises(inorder.redis.EntryFailed, match="entry 2") as caught:
        await one_at_a_time()
    assert isinstance(caught.value.__cause__, inorder.redis.BadEntry)
    assert [json.loads(v) for v in client.lrange(results, 0, -1)] == [{"n": 2}]
    assert client.lrange(f"{items}:processing:c1", 0, -1)[-1] == b"not json"  # still there


async def test_a_feed_refuses_more_outcomes_than_items(anyio_backend: Any, client: Any) -> None:
    source, sink = names()
    fill(client, source, ["a"])
    feed = inorder.redis.Feed(
        inorder.redis.StreamSource(client, source, "etl", "c1"), inorder.redis.StreamSink(sink)
    )
    async with feed:
        async for _ in feed.items():
            pass
        with pytest.raises(RuntimeError, match="2 outcomes written, 1 items read"):
            await feed.write_many(["A", "B"])
        await feed.write("A")  # nothing was taken by the refused call
    assert outputs(client, sink)[0]["data"] == "A"
    with pytest.raises(RuntimeError, match="async with"):
        async for _ in inorder.redis.Feed(feed.source).items():
            pass


async def test_a_feed_without_a_sink_acknowledges_what_was_written(
    anyio_backend: Any, client: Any
) -> None:
    source, _ = names()
    ids = fill(client, source, ["a", "b", "c"])
    feed = inorder.redis.Feed(inorder.redis.StreamSource(client, source, "etl", "c1"))
    seen = []
    async with feed, inorder.OrderedPipeline(workers=1) as pipe:
        pipe.map(fx.shout, feed.items())
        async for result in pipe:
            seen.append(result)  # what the caller does with it, then:
            await feed.write(result)
            if len(seen) == 2:
                break
    assert seen == ["A!", "B!"]
    assert feed.report.written == 2
    pending = client.xpending_range(source, "etl", "-", "+", 10)
    assert [p["message_id"].decode() for p in pending] == [ids[2]]  # only the unwritten one


async def test_a_feed_writes_entries_without_an_item_even_when_no_outcome_follows(
    anyio_backend: Any, client: Any
) -> None:
    source, sink = names()
    only = client.xadd(source, {"other": "x"}).decode()
    feed = inorder.redis.Feed(
        inorder.redis.StreamSource(client, source, "etl", "c1"), inorder.redis.StreamSink(sink)
    )
    async with feed, inorder.OrderedPipeline(workers=1, on_error="return") as pipe:
        pipe.map(fx.shout, feed.items())
        async for outcomes in pipe.chunks():
            await feed.write_many(outcomes)  # never: no entry holds an item
    assert [(o["id"], o["error"]) for o in outputs(client, sink)] == [(only, "BadEntry")]
