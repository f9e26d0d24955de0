"""The ``inorder`` command, run as a real subprocess: output, options, errors, signals."""

from __future__ import annotations

import gzip
import importlib.metadata
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

import inorder as inorder_package

from .helpers import alive, run_on_a_terminal

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = "tests.cli_functions"


def command(*args: str, loop: str | None = None) -> list[str]:
    """The argv of ``inorder ARGS``, on ``loop`` if given (``--loop`` after the command)."""
    if loop is not None:
        args = (args[0], "--loop", loop, *args[1:])
    return [sys.executable, "-m", "inorder", *args]


class Cli:
    """The command on one event loop: what a test that does real work runs."""

    def __init__(self, loop: str) -> None:
        self.loop = loop

    def argv(self, *args: str) -> list[str]:
        return command(*args, loop=self.loop)

    def run(self, *args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return inorder(*args, loop=self.loop, **options)


@pytest.fixture(params=["asyncio", "uvloop", "trio"])
def cli(request: pytest.FixtureRequest) -> Cli:
    """The command on every event loop a user may choose (``--loop``)."""
    return Cli(str(request.param))


def inorder(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    loop: str | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(*args, loop=loop),
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def lines_file(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def wait_for(condition: Callable[[], bool], limit: float = 20.0) -> None:
    """Poll a condition on another process; ``limit`` only guards against hangs."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.01)


# -- inorder map: output -----------------------------------------------------------------


def test_map_keeps_the_input_order_on_100k_lines(tmp_path: Path, cli: Cli) -> None:
    lines = [f"line {i} {'x' * (i % 7)}" for i in range(100_000)]
    done = cli.run("map", f"{FUNCTIONS}:upper", lines_file(tmp_path / "in.txt", lines))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line.upper() for line in lines]
    assert done.stderr == ""


def test_map_reads_stdin_and_several_files_in_order(tmp_path: Path, cli: Cli) -> None:
    a = lines_file(tmp_path / "a.txt", ["a1", "a2"])
    b = lines_file(tmp_path / "b.txt", ["b1"])
    done = cli.run("map", f"{FUNCTIONS}:upper", a, "-", b, stdin="s1\ns2")  # no final newline
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A1\nA2\nS1\nS2\nB1\n"


def test_map_writes_str_results_as_they_are_and_others_as_json(tmp_path: Path, cli: Cli) -> None:
    done = cli.run("map", f"{FUNCTIONS}:words", stdin="a b\n\nc\n")
    assert done.stdout.splitlines() == ['["a", "b"]', "[]", '["c"]']


def test_jsonl_parses_input_and_writes_json(cli: Cli) -> None:
    done = cli.run("map", f"{FUNCTIONS}:square_json", "--jsonl", stdin='{"n": 3}\n{"n": 4}\n')
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"n": 3, "square": 9},
        {"n": 4, "square": 16},
    ]


def test_unordered_writes_every_result_once(tmp_path: Path, cli: Cli) -> None:
    lines = [str(i) for i in range(2000)]
    done = cli.run(
        "map", f"{FUNCTIONS}:number", "--unordered", lines_file(tmp_path / "in.txt", lines)
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines(), key=int) == lines


def test_start_method_option_starts_workers_that_way(cli: Cli) -> None:
    # spawn: each worker is the command's own child; forkserver: the fork server's.
    for method, own_child in (("spawn", True), ("forkserver", False)):
        process = subprocess.Popen(
            cli.argv("map", "--start-method", method, f"{FUNCTIONS}:parent_pid"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        out, _ = process.communicate("x\n", timeout=60)
        assert process.returncode == 0
        assert (out == f"{process.pid}\n") is own_child, (method, out, process.pid)


def test_workers_option_runs_that_many_worker_processes(tmp_path: Path, cli: Cli) -> None:
    # Each line waits until three workers run lines at once (10 s at most), so a fourth
    # worker, or a missing third, shows in the pids.
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    env = {"MEET_DIR": str(meeting), "MEET_COUNT": "3"}
    done = cli.run("map", f"{FUNCTIONS}:meet", "-j", "3", stdin="a\n" * 9, env=env)
    assert done.returncode == 0, done.stderr
    assert len(set(done.stdout.split())) == 3


@pytest.mark.parametrize(("window", "fifth_line_starts"), [(4, False), (5, True)])
def test_window_option_bounds_the_lines_taken_in(
    tmp_path: Path, window: int, fifth_line_starts: bool
) -> None:
    # Line 0 runs until line 4 starts, for a second at most; lines 1-3 are done meanwhile
    # and wait to be written behind it. With a window of 4 lines, line 4 is not read
    # into the pipeline before line 0 is written; with 5 it is.
    env = {"PROBE_DIR": str(tmp_path), "PROBE_WAIT_FOR": "4", "PROBE_SECONDS": "1"}
    if fifth_line_starts:
        env["PROBE_SECONDS"] = "20"  # it ends the wait as soon as line 4 starts
    lines = "".join(f"{i}\n" for i in range(12))
    done = inorder(
        "map", f"{FUNCTIONS}:probe", "-j", "2", "--window", str(window), stdin=lines, env=env
    )
    assert done.returncode == 0, done.stderr
    first = done.stdout.splitlines()[0]
    assert ("not seen" not in first) is fifth_line_starts, first
    assert len(done.stdout.splitlines()) == 12


def test_batch_option_sets_the_lines_per_worker_call(tmp_path: Path) -> None:
    # With --batch 5 and two workers, lines 0-4 go in one call and 5-9 in the other:
    # line 0 runs until line 5 starts, and lines 1-4 wait behind it in its worker.
    env = {"PROBE_DIR": str(tmp_path), "PROBE_WAIT_FOR": "5", "PROBE_SECONDS": "20"}
    source = lines_file(tmp_path / "in.txt", [str(i) for i in range(10)])
    done = inorder("map", f"{FUNCTIONS}:probe", "-j", "2", "--batch", "5", source, env=env)
    assert done.returncode == 0, done.stderr
    rows = [line.split(maxsplit=3) for line in done.stdout.splitlines()]
    assert rows[0][2:] == ["seen", rows[0][3]]
    started_then = set(json.loads(rows[0][3]))
    assert not started_then & {1, 2, 3, 4}, started_then
    pids = [row[1] for row in rows]
    assert len(set(pids[:5])) == len(set(pids[5:])) == 1
    assert pids[0] != pids[5]


def test_unordered_writes_a_fast_line_before_a_slow_one_read_earlier(
    tmp_path: Path, cli: Cli
) -> None:
    gate = tmp_path / "gate"
    process = subprocess.Popen(
        cli.argv("map", f"{FUNCTIONS}:slow_behind_gate", "--unordered", "-j", "2"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "GATE": str(gate)},
    )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write("slow\nfast\n")
        process.stdin.close()
        first = process.stdout.readline()  # written while "slow" waits for the gate
        gate.touch()
        rest = process.stdout.read()
        assert process.wait(60) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert (first, rest) == ("fast\n", "slow\n")


def test_progress_option_draws_on_a_terminal(cli: Cli) -> None:
    status, out, drawn = run_on_a_terminal(
        cli.argv("map", f"{FUNCTIONS}:slow_behind_gate", "--progress", "-j", "2"),
        input="".join(f"{i}\n" for i in range(30)),
        cwd=ROOT,
    )
    assert (status, out) == (0, "".join(f"{i}\n" for i in range(30)))
    assert "30 done" in drawn  # the final redraw shows every line
    assert "in flight" in drawn


def test_module_may_be_a_path_to_a_python_file(tmp_path: Path, cli: Cli) -> None:
    script = tmp_path / "etl.py"
    script.write_text("def shout(line):\n    return line + '!'\n")
    done = cli.run("map", f"{script}:shout", stdin="hi\nho\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi!\nho!\n"


def test_progress_is_off_when_stderr_is_not_a_terminal() -> None:
    done = inorder("map", f"{FUNCTIONS}:upper", "--progress", stdin="a\nb\n")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("A\nB\n", "")


# -- inorder map: failures ---------------------------------------------------------------


def test_on_error_raise_stops_after_the_results_before_the_failed_line(
    tmp_path: Path, cli: Cli
) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "2", "x", "4", "5"])
    done = cli.run("map", f"{FUNCTIONS}:number", source)
    assert done.returncode == 1
    assert done.stdout == "1\n2\n"
    first = done.stderr.splitlines()[0]
    assert (
        first
        == f"inorder map: {source}:3: ValueError: invalid literal for int() with base 10: 'x'"
    )
    assert done.stderr.splitlines()[1] == "  input: 'x'"  # which record failed
    assert "Traceback (most recent call last):" in done.stderr
    assert "cli_functions.py" in done.stderr  # the traceback starts in the user's code
    assert "_worker.py" not in done.stderr


def test_on_error_skip_reports_and_goes_on(tmp_path: Path, cli: Cli) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "x", "3", "y"])
    done = cli.run("map", f"{FUNCTIONS}:number", "--on-error", "skip", source)
    assert done.returncode == 0
    assert done.stdout == "1\n3\n"
    reports = [line for line in done.stderr.splitlines() if line.startswith("inorder map:")]
    assert [r.split(": ")[1] for r in reports] == [f"{source}:2", f"{source}:4"]


def test_on_error_return_writes_an_error_object_in_place(tmp_path: Path, cli: Cli) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "x", "3"])
    done = cli.run("map", f"{FUNCTIONS}:number", "--on-error", "return", source)
    assert done.returncode == 0
    out = done.stdout.splitlines()
    assert out[0] == "1"
    assert out[2] == "3"
    assert json.loads(out[1]) == {
        "error": {
            "type": "ValueError",
            "message": "invalid literal for int() with base 10: 'x'",
            "file": source,
            "line": 2,
            "input": "x",
        }
    }


def test_a_line_whose_worker_dies_is_reported_with_its_input(cli: Cli) -> None:
    done = cli.run(
        "map", f"{FUNCTIONS}:crash_on_boom", "--on-error", "return", stdin="a\nboom\nc\n"
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert (out[0], out[2]) == ("a", "c")
    error = json.loads(out[1])["error"]
    assert (error["type"], error["line"], error["input"]) == ("WorkerCrashedError", 2, "boom")
    assert "  input: 'boom'" in done.stderr.splitlines()


def test_a_long_failed_input_is_cut_in_the_report(tmp_path: Path) -> None:
    source = lines_file(tmp_path / "long.txt", ["y" * 5000])
    done = inorder("map", f"{FUNCTIONS}:number", "--on-error", "return", source)
    reported = json.loads(done.stdout)["error"]["input"]
    assert reported == "y" * 200 + "... (5,000 characters)"


def test_input_and_output_formats_are_chosen_apart() -> None:
    plain = inorder("map", f"{FUNCTIONS}:words", "--output-format", "jsonl", stdin="a b\n")
    assert plain.stdout == '["a", "b"]\n'
    upper = inorder("map", f"{FUNCTIONS}:upper", "--output-format", "jsonl", stdin="ab\n")
    assert upper.stdout == '"AB"\n'  # a str is JSON too, in jsonl output
    parsed = inorder(
        "map", f"{FUNCTIONS}:square_json", "--input-format", "jsonl", stdin='{"n": 3}\n'
    )
    assert json.loads(parsed.stdout) == {"n": 3, "square": 9}
    # --jsonl is both; an explicit format wins over it for its side
    mixed = inorder(
        "map", f"{FUNCTIONS}:first_key", "--jsonl", "--output-format", "text",
        stdin='{"k": 1}\n',
    )  # fmt: skip
    assert mixed.stdout == "k\n"


def test_nan_and_infinity_are_not_json_in_or_out() -> None:
    stdin = '{"n": 1}\n{"n": NaN}\n{"n": Infinity}\n'
    parsed = inorder(
        "map", f"{FUNCTIONS}:square_json", "--jsonl", "--on-error", "skip", stdin=stdin
    )
    assert parsed.stdout == '{"n": 1, "square": 1}\n'
    assert "<stdin>:2: ValueError: the line is not valid JSON: NaN is not JSON" in parsed.stderr
    assert "<stdin>:3: ValueError: the line is not valid JSON: Infinity is not JSON" in (
        parsed.stderr
    )
    written = inorder(
        "map", f"{FUNCTIONS}:as_float", "--output-format", "jsonl", "--on-error", "return",
        stdin="1.5\nnan\ninf\n",
    )  # fmt: skip
    out = written.stdout.splitlines()
    assert out[0] == "1.5"
    for line in out[1:]:
        error = json.loads(line)["error"]
        assert error["type"] == "ValueError"
        assert "NaN or Infinity, which JSON has no way to write" in error["message"]


def test_raw_output_writes_bytes_as_they_are_in_order(tmp_path: Path, cli: Cli) -> None:
    # An ordered parallel compressor: each line becomes a gzip member; members
    # concatenated in order make one gzip stream of the whole input.
    lines = [f"record {i} {'z' * (i % 50)}" for i in range(3000)]
    done = subprocess.run(
        cli.argv(
            "map", f"{FUNCTIONS}:gzip_line", "--output-format", "raw",
            lines_file(tmp_path / "in.txt", lines),
        ),
        capture_output=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert gzip.decompress(done.stdout).decode() == "".join(f"{line}\n" for line in lines)


def test_raw_output_refuses_what_is_not_bytes_and_on_error_return() -> None:
    refused = inorder("map", f"{FUNCTIONS}:words", "--output-format", "raw", stdin="a\n")
    assert refused.returncode == 1
    assert "cannot be written raw: with --output-format raw the function returns bytes" in (
        refused.stderr
    )
    usage = inorder(
        "map", f"{FUNCTIONS}:upper", "--output-format", "raw", "--on-error", "return",
        stdin="a\n",
    )  # fmt: skip
    assert usage.returncode == 2
    assert "raw output could not tell from the results" in usage.stderr


def test_a_long_line_arriving_in_pieces_is_one_line(cli: Cli) -> None:
    process = subprocess.Popen(
        cli.argv("map", f"{FUNCTIONS}:length"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    assert process.stdin is not None
    piece = b"w" * 4096
    for _ in range(2048):  # 8 MiB in 4 KiB writes, then the newline
        process.stdin.write(piece)
    process.stdin.write(b"\nshort\nlast without newline")
    out, _ = process.communicate(timeout=60)
    assert out.decode().splitlines() == [str(4096 * 2048), "5", "20"]


def test_a_malformed_json_line_is_an_error_for_that_line(cli: Cli) -> None:
    stdin = '{"n": 1}\n{"n": \n{"n": 3}\n'
    raised = cli.run("map", f"{FUNCTIONS}:square_json", "--jsonl", stdin=stdin)
    assert raised.returncode == 1
    assert raised.stdout == '{"n": 1, "square": 1}\n'
    assert "inorder map: <stdin>:2: ValueError: the line is not valid JSON" in raised.stderr
    skipped = cli.run(
        "map", f"{FUNCTIONS}:square_json", "--jsonl", "--on-error", "skip", stdin=stdin
    )
    assert skipped.stdout.splitlines() == ['{"n": 1, "square": 1}', '{"n": 3, "square": 9}']


def test_retries_rerun_failed_lines(tmp_path: Path, cli: Cli) -> None:
    env = {"FLAKY_DIR": str(tmp_path)}
    failing = cli.run("map", f"{FUNCTIONS}:flaky", stdin="a\nb\n", env=env)
    assert failing.returncode == 1
    assert "ConnectionError: first attempt at a" in failing.stderr
    for marker in tmp_path.iterdir():
        marker.unlink()
    retried = cli.run("map", f"{FUNCTIONS}:flaky", "--retries", "1", stdin="a\nb\n", env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == "a\nb\n"


def test_timeout_stops_a_hanging_line(cli: Cli) -> None:
    done = cli.run(
        "map",
        f"{FUNCTIONS}:slow",
        "--timeout",
        "0.5",
        "--on-error",
        "return",
        stdin="a\nhang\nb\n",
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert (out[0], out[2]) == ("a", "b")
    assert json.loads(out[1])["error"]["type"] == "TaskTimeoutError"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("upper", "expected MODULE:FUNC"),
        ("no_such_module_here:f", "cannot import module 'no_such_module_here'"),
        (f"{FUNCTIONS}:missing", "tests.cli_functions has no attribute 'missing'"),
        (f"{FUNCTIONS}:not_callable", "is a int, not a function"),
        ("./no/such/file.py:f", "no such file: no/such/file.py"),
    ],
)
def test_a_bad_function_is_one_line_and_status_2_before_any_work(spec: str, message: str) -> None:
    done = inorder("map", spec, stdin="a\n")
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("inorder map: error: ")
    assert message in done.stderr


def test_a_module_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    done = inorder("map", f"{broken}:f", stdin="a\n")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1
    assert "importing" in done.stderr
    assert "SyntaxError" in done.stderr


def test_a_missing_file_is_one_line_and_status_2_before_any_work(tmp_path: Path) -> None:
    present = lines_file(tmp_path / "present.txt", ["a"])
    done = inorder("map", f"{FUNCTIONS}:upper", present, str(tmp_path / "absent.txt"))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"inorder map: error: no such file: {tmp_path / 'absent.txt'}\n"


def test_a_bad_option_is_a_usage_error() -> None:
    done = inorder("map", f"{FUNCTIONS}:upper", "--workers", "0", stdin="a\n")
    assert done.returncode == 2
    assert "--workers: must be at least 1, got 0" in done.stderr


# -- inorder map: a good Unix citizen ----------------------------------------------------


def test_head_ends_it_quietly(tmp_path: Path, cli: Cli) -> None:
    source = lines_file(tmp_path / "big.txt", [str(i) for i in range(200_000)])
    argv = " ".join(f'"{arg}"' for arg in cli.argv("map", f"{FUNCTIONS}:upper", source))
    command = f'{argv} | head -3; echo "status ${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.stdout == "0\n1\n2\n"
    assert done.stderr == "status 141\n"


def test_ctrl_c_stops_it_with_no_orphans(tmp_path: Path, cli: Cli) -> None:
    started = tmp_path / "started"
    started.mkdir()
    process = subprocess.Popen(
        cli.argv("map", f"{FUNCTIONS}:announce_then_sleep", "-j", "2"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "STARTED_DIR": str(started)},
    )
    try:
        assert process.stdin is not None
        process.stdin.write("a\nb\n")
        process.stdin.flush()
        wait_for(lambda: sorted(p.name for p in started.iterdir()) == ["a", "b"])
        # Both lines now sleep for ten minutes in their workers.
        descendants = {c.pid for c in psutil.Process(process.pid).children(recursive=True)}
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(60)
        took = time.monotonic() - began
        assert process.returncode == 130
        assert process.stderr is not None
        assert process.stderr.read() == "inorder map: interrupted\n"
        # Stopped, not waited for: the bound leaves a loaded machine room and is still
        # far below the items' ten minutes (unloaded it takes a fraction of a second).
        assert took < 10, f"took {took:.2f} s"
        wait_for(lambda: not alive(descendants), limit=10)
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio", None])
def test_loop_option_chooses_the_event_loop(loop: str | None) -> None:
    argv = command("map", f"{FUNCTIONS}:upper", loop=loop)
    done = subprocess.run(  # python -v: a line for every module imported
        [argv[0], "-v", *argv[1:]],
        input="a\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (0, "A\n"), done.stderr
    imported = set(re.findall(r"^import '([\w.]+)' #", done.stderr, flags=re.MULTILINE))
    chosen = loop or "uvloop"  # uvloop when it is installed, as it is for the tests
    backend = "trio" if chosen == "trio" else "asyncio"
    assert {"anyio._backends._asyncio", "anyio._backends._trio"} & imported == {
        f"anyio._backends._{backend}"
    }
    assert ("uvloop.loop" in imported) is (chosen == "uvloop")


def test_a_loop_whose_package_is_missing_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inorder._cli import _common

    monkeypatch.setattr(_common.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(_common.UsageError, match=r"--loop trio needs the 'trio' package: pip"):
        _common.check_loop("trio")


def test_version_and_module_entry_point() -> None:
    done = inorder("--version")
    assert done.returncode == 0
    installed = importlib.metadata.version("inorder")  # the package's metadata
    assert done.stdout == f"inorder {installed}\n"
    assert installed == inorder_package.__version__  # one version, written in one place


# -- inorder spool -----------------------------------------------------------------------


def drop(folder: Path, name: str, text: str) -> None:
    """Write a task elsewhere, then move it in: what programs feeding a spool should do."""
    staging = folder.parent / f".staging-{name}"
    staging.write_text(text)
    os.replace(staging, folder / name)


def start_spool(
    folder: Path, *options: str, log: Path, loop: str | None = None, **popen: Any
) -> subprocess.Popen[str]:
    """A spool running in the background (for tests that kill or interrupt it)."""
    return subprocess.Popen(
        command("spool", str(folder), "--run", f"{FUNCTIONS}:record", *options, loop=loop),
        cwd=ROOT,
        env={**os.environ, "SPOOL_LOG": str(log)},
        text=True,
        **popen,
    )


def spool(
    folder: Path, *options: str, log: Path, loop: str | None = None
) -> subprocess.CompletedProcess[str]:
    return inorder(
        "spool",
        str(folder),
        "--run",
        f"{FUNCTIONS}:record",
        *options,
        env={"SPOOL_LOG": str(log)},
        loop=loop,
    )


def test_spool_once_processes_in_name_order_into_done_and_failed(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ["20-b.task", "10-a.task", "30-c.task"]:
        drop(folder, name, "hello")
    drop(folder, "15-bad.task", "fail")
    drop(folder, "notes.txt", "not a task")
    log = tmp_path / "log"
    done = spool(folder, "--once", "-j", "1", log=log, loop=cli.loop)
    assert done.returncode == 1  # one task failed
    assert log.read_text().split() == ["10-a.task", "15-bad.task", "20-b.task", "30-c.task"]
    assert sorted(p.name for p in (folder / "done").iterdir()) == [
        "10-a.task",
        "10-a.task.result",
        "20-b.task",
        "20-b.task.result",
        "30-c.task",
        "30-c.task.result",
    ]
    assert json.loads((folder / "done" / "10-a.task.result").read_text()) == {
        "name": "10-a.task",
        "size": 5,
    }
    error = (folder / "failed" / "15-bad.task.error").read_text()
    assert error.startswith("ValueError: cannot process 15-bad.task")
    assert "cli_functions.py" in error  # with the traceback
    assert "15-bad.task failed: ValueError" in done.stderr
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == ["notes.txt"]
    assert list((folder / "running").iterdir()) == []


def test_two_spools_on_one_folder_never_take_the_same_file(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    names = [f"{i:03}.task" for i in range(40)]
    for name in names:
        # Each task waits until both spools have started one (20 s at most): however
        # late the second spool starts, the first cannot take every file meanwhile.
        drop(folder, name, "meet 2")
    logs = tmp_path / "logs"
    logs.mkdir()
    spools = [
        start_spool(folder, "--once", "-j", "2", log=logs / f"spool-{i}", loop=cli.loop)
        for i in range(2)
    ]
    assert [s.wait(60) for s in spools] == [0, 0]
    processed = [(logs / f"spool-{i}").read_text().split() for i in range(2)]
    assert all(processed), "each spool processed some files"
    assert sorted(processed[0] + processed[1]) == names  # each exactly once
    assert sorted(p.name for p in (folder / "done").iterdir() if p.suffix == ".task") == names


def test_a_spool_killed_mid_way_is_taken_over_on_restart(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    names = [f"{i}.task" for i in range(6)]
    for name in names:
        drop(folder, name, "sleep 0.3")
    log = tmp_path / "log"
    first = start_spool(folder, "-j", "2", log=log, loop=cli.loop)
    try:
        done_dir = folder / "done"
        wait_for(
            lambda: (
                done_dir.exists()
                and len([p for p in done_dir.iterdir() if p.suffix == ".task"]) >= 2
            )
        )
        first.kill()  # SIGKILL: no cleanup at all
        first.wait()
    finally:
        first.kill()
        first.wait()
    done_before = {p.name for p in done_dir.iterdir() if p.suffix == ".task"}
    runs_before = len(log.read_text().split())
    assert 2 <= len(done_before) < len(names)
    assert any((folder / "running").iterdir())  # its claims are still there
    restarted = spool(folder, "--once", "-j", "2", log=log, loop=cli.loop)
    assert restarted.returncode == 0, restarted.stderr
    assert sorted(p.name for p in done_dir.iterdir() if p.suffix == ".task") == names
    rerun = log.read_text().split()[runs_before:]
    assert not set(rerun) & done_before  # nothing done was processed again
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == []  # nothing lost
    assert list((folder / "running").iterdir()) == []


def test_a_watching_spool_takes_new_files_and_stops_on_ctrl_c(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, "early.task", "hello")
    log = tmp_path / "log"
    process = start_spool(folder, "-j", "1", log=log, loop=cli.loop, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        # The spool says when its watcher sees events: a file dropped after that line
        # can only be found through an event (the first listing is over by then).
        ready = process.stderr.readline()
        assert ready == f"inorder spool: watching {folder} for *.task (Ctrl-C to stop)\n"
        wait_for(lambda: (folder / "done" / "early.task").exists())
        drop(folder, "late.task", "hello")
        wait_for(lambda: (folder / "done" / "late.task").exists())
        descendants = {c.pid for c in psutil.Process(process.pid).children(recursive=True)}
        began = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(60)
        assert time.monotonic() - began < 10  # it waits for nothing: an idle spool
        assert process.returncode == 130
        wait_for(lambda: not alive(descendants), limit=10)
        assert list((folder / "running").iterdir()) == []  # it gave back its claim folder
        assert log.read_text().split() == ["early.task", "late.task"]
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_spool_on_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = spool(tmp_path / "absent", "--once", log=tmp_path / "log")
    assert done.returncode == 2
    assert done.stderr == f"inorder spool: error: no such folder: {tmp_path / 'absent'}\n"


def test_spool_pattern_chooses_the_files(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, "a.job", "x")
    drop(folder, "b.task", "x")
    done = spool(folder, "--once", "--pattern", "*.job", log=tmp_path / "log", loop=cli.loop)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "log").read_text().split() == ["a.job"]
    assert (folder / "b.task").exists()


def test_an_input_that_fails_mid_way_is_one_line_and_status_1(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()  # os.read() on a directory: IsADirectoryError, after the open
    done = cli.run("map", f"{FUNCTIONS}:upper", str(folder))
    assert done.returncode == 1
    assert done.stderr.startswith("inorder map: error: ")
    assert "Is a directory" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.anyio
async def test_sources_keep_the_text_of_lines_not_yet_written_only(tmp_path: Path) -> None:
    """A unit test of Sources: what a failure report can quote, and no more."""
    from inorder._cli._map import Sources

    path = lines_file(tmp_path / "in.txt", [f"line {i}" for i in range(50_000)])
    sources = Sources([path])
    read = 0
    async for chunk in sources.chunks():
        read += len(chunk)
        assert sources.text(read - 1) == f"line {read - 1}"
        sources.keep_from(read - 1)  # everything before the last line read was written
        assert sources.text(0) is None or read <= len(chunk)
    assert read == 50_000
    assert sources.text(49_999) == "line 49999"
    sources.keep_from(50_000)
    assert sources.text(49_999) is None
    unkept = Sources([path], keep_lines=False)
    async for _ in unkept.chunks():
        assert unkept.text(0) is None


# -- inorder spool: hostile files --------------------------------------------------------


def test_a_name_dropped_twice_keeps_each_result(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    log = tmp_path / "log"
    drop(folder, "x.task", "first")
    assert spool(folder, "--once", log=log, loop=cli.loop).returncode == 0
    drop(folder, "x.task", "second!")
    assert spool(folder, "--once", log=log, loop=cli.loop).returncode == 0
    done = folder / "done"
    assert sorted(p.name for p in done.iterdir()) == [
        "x.task",
        "x.task.2",
        "x.task.2.result",
        "x.task.result",
    ]
    assert (done / "x.task").read_text() == "first"
    assert json.loads((done / "x.task.result").read_text())["size"] == 5
    assert (done / "x.task.2").read_text() == "second!"
    assert json.loads((done / "x.task.2.result").read_text())["size"] == 7


def test_a_name_dropped_again_while_the_first_runs_keeps_both(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    log = tmp_path / "log"
    process = start_spool(folder, "-j", "2", log=log, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        assert "watching" in process.stderr.readline()
        drop(folder, "x.task", "sleep 1")
        wait_for(lambda: log.exists() and log.read_text().split() == ["x.task"])
        drop(folder, "x.task", "sleep 0")  # claimed while the first still runs
        wait_for(lambda: len(list((folder / "done").glob("*.result"))) == 2)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)
        process.stderr.close()  # type: ignore[union-attr]
    done = folder / "done"
    contents = sorted((done / name).read_text() for name in ("x.task", "x.task.2"))
    assert contents == ["sleep 0", "sleep 1"]
    for name in ("x.task", "x.task.2"):
        result = json.loads((done / f"{name}.result").read_text())
        assert result["size"] == len((done / name).read_text())


def test_names_too_long_for_a_result_go_to_failed_and_the_rest_go_on(
    tmp_path: Path, cli: Cli
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    longest = "a" * (255 - len(".99999.result") - len(".task")) + ".task"  # 242 bytes
    too_long = "b" * 240 + ".task"  # 245 bytes
    for name in (longest, too_long, "c.task"):
        drop(folder, name, "hello")
    done = spool(folder, "--once", log=tmp_path / "log", loop=cli.loop)
    assert done.returncode == 1
    assert sorted(p.name for p in (folder / "done").iterdir()) == sorted(
        [longest, f"{longest}.result", "c.task", "c.task.result"]
    )
    assert [p.name for p in (folder / "failed").iterdir()] == [too_long]
    assert f"inorder spool: {too_long}: skipped: its name is 245 bytes long" in done.stderr
    assert "rename it to at most 242 bytes (moved to failed/)" in done.stderr


def test_a_name_that_is_not_utf8_is_filed_with_its_bytes(tmp_path: Path, cli: Cli) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    raw_name = b"caf\xe9.task"  # Latin-1, not UTF-8
    (folder.parent / "staged").write_text("hello")
    os.replace(folder.parent / "staged", os.path.join(os.fsencode(folder), raw_name))
    done = spool(folder, "--once", log=tmp_path / "log", loop=cli.loop)
    assert done.returncode == 0, done.stderr
    filed = sorted(os.listdir(os.fsencode(folder / "done")))
    assert filed == [raw_name, raw_name + b".result"]  # nothing else: no stray temp file
    result = Path(os.fsdecode(os.fsencode(folder / "done") + b"/" + raw_name + b".result"))
    assert raw_name in result.read_bytes()  # the result names the file, byte for byte


def test_hidden_files_are_not_taken(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, ".partial.task", "still being written")
    drop(folder, "ready.task", "hello")
    done = spool(folder, "--once", log=tmp_path / "log")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "log").read_text().split() == ["ready.task"]
    assert (folder / ".partial.task").exists()


def _immutable(path: Path) -> bool:
    """Make ``path`` immutable (chattr +i: not even root may move it); whether it worked."""
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_a_file_that_cannot_be_moved_is_skipped_and_the_rest_go_on(
    tmp_path: Path, cli: Cli
) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, "a.task", "hello")
    drop(folder, "stuck.task", "hello")
    drop(folder, "z.task", "hello")
    if not _immutable(folder / "stuck.task"):
        pytest.skip("chattr +i is not available here (it needs root and ext4, xfs or btrfs)")
    try:
        done = spool(folder, "--once", log=tmp_path / "log", loop=cli.loop)
    finally:
        subprocess.run(["chattr", "-i", str(folder / "stuck.task")], check=True)
    assert done.returncode == 1
    assert sorted((tmp_path / "log").read_text().split()) == ["a.task", "z.task"]
    reports = [line for line in done.stderr.splitlines() if "stuck.task" in line]
    assert reports == [
        "inorder spool: stuck.task: skipped: it cannot be moved out of the folder: "
        f"[Errno 1] Operation not permitted: '{folder / 'stuck.task'}' -> "
        f"'{folder / 'running'}/{reports[0].split('running/')[1].split(chr(39))[0]}'"
    ]
    assert (folder / "stuck.task").exists()


def test_reading_a_100_mib_line_takes_time_in_proportion_to_it(tmp_path: Path) -> None:
    # Reading appended each 64 KiB to a growing bytes object: quadratic, a 50 MiB line took
    # 15.6 s and a 200 MiB one 253 s. Read in pieces and joined once, 100 MiB takes about a
    # second of CPU here; the limit (CPU seconds, not wall time, so a loaded machine does
    # not matter) is a tenth of what the quadratic reading needs.
    source = tmp_path / "long.txt"
    with source.open("wb") as f:
        for _ in range(100):
            f.write(b"v" * (1 << 20))
        f.write(b"\n")

    def limit_cpu() -> None:
        resource.setrlimit(resource.RLIMIT_CPU, (6, 6))

    done = subprocess.run(
        command("map", f"{FUNCTIONS}:length", str(source)),
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        preexec_fn=limit_cpu,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == f"{100 << 20}\n"
