"""The ``inorder`` command, run as a real subprocess: output, options, errors, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from .helpers import alive

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = "tests.cli_functions"


def inorder(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inorder", *args],
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


def test_map_keeps_the_input_order_on_100k_lines(tmp_path: Path) -> None:
    lines = [f"line {i} {'x' * (i % 7)}" for i in range(100_000)]
    done = inorder("map", f"{FUNCTIONS}:upper", lines_file(tmp_path / "in.txt", lines))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [line.upper() for line in lines]
    assert done.stderr == ""


def test_map_reads_stdin_and_several_files_in_order(tmp_path: Path) -> None:
    a = lines_file(tmp_path / "a.txt", ["a1", "a2"])
    b = lines_file(tmp_path / "b.txt", ["b1"])
    done = inorder("map", f"{FUNCTIONS}:upper", a, "-", b, stdin="s1\ns2")  # no final newline
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A1\nA2\nS1\nS2\nB1\n"


def test_map_writes_str_results_as_they_are_and_others_as_json(tmp_path: Path) -> None:
    done = inorder("map", f"{FUNCTIONS}:words", stdin="a b\n\nc\n")
    assert done.stdout.splitlines() == ['["a", "b"]', "[]", '["c"]']


def test_jsonl_parses_input_and_writes_json() -> None:
    done = inorder("map", f"{FUNCTIONS}:square_json", "--jsonl", stdin='{"n": 3}\n{"n": 4}\n')
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [
        {"n": 3, "square": 9},
        {"n": 4, "square": 16},
    ]


@pytest.mark.parametrize(
    "options", [["-j", "1"], ["--window", "3"], ["--batch", "5"], ["-j", "2", "--batch", "auto"]]
)
def test_pipeline_options_keep_the_output(tmp_path: Path, options: list[str]) -> None:
    lines = [str(i) for i in range(500)]
    done = inorder("map", f"{FUNCTIONS}:upper", *options, lines_file(tmp_path / "in.txt", lines))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == lines


def test_unordered_writes_every_result_once(tmp_path: Path) -> None:
    lines = [str(i) for i in range(2000)]
    done = inorder(
        "map", f"{FUNCTIONS}:number", "--unordered", lines_file(tmp_path / "in.txt", lines)
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines(), key=int) == lines


def test_module_may_be_a_path_to_a_python_file(tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text("def shout(line):\n    return line + '!'\n")
    done = inorder("map", f"{script}:shout", stdin="hi\nho\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi!\nho!\n"


def test_progress_is_off_when_stderr_is_not_a_terminal() -> None:
    done = inorder("map", f"{FUNCTIONS}:upper", "--progress", stdin="a\nb\n")
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("A\nB\n", "")


# -- inorder map: failures ---------------------------------------------------------------


def test_on_error_raise_stops_after_the_results_before_the_failed_line(tmp_path: Path) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "2", "x", "4", "5"])
    done = inorder("map", f"{FUNCTIONS}:number", source)
    assert done.returncode == 1
    assert done.stdout == "1\n2\n"
    first = done.stderr.splitlines()[0]
    assert (
        first
        == f"inorder map: {source}:3: ValueError: invalid literal for int() with base 10: 'x'"
    )
    assert "Traceback (most recent call last):" in done.stderr
    assert "cli_functions.py" in done.stderr  # the traceback starts in the user's code
    assert "_worker.py" not in done.stderr


def test_on_error_skip_reports_and_goes_on(tmp_path: Path) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "x", "3", "y"])
    done = inorder("map", f"{FUNCTIONS}:number", "--on-error", "skip", source)
    assert done.returncode == 0
    assert done.stdout == "1\n3\n"
    reports = [line for line in done.stderr.splitlines() if line.startswith("inorder map:")]
    assert [r.split(": ")[1] for r in reports] == [f"{source}:2", f"{source}:4"]


def test_on_error_return_writes_an_error_object_in_place(tmp_path: Path) -> None:
    source = lines_file(tmp_path / "numbers.txt", ["1", "x", "3"])
    done = inorder("map", f"{FUNCTIONS}:number", "--on-error", "return", source)
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
        }
    }


def test_a_malformed_json_line_is_an_error_for_that_line() -> None:
    stdin = '{"n": 1}\n{"n": \n{"n": 3}\n'
    raised = inorder("map", f"{FUNCTIONS}:square_json", "--jsonl", stdin=stdin)
    assert raised.returncode == 1
    assert raised.stdout == '{"n": 1, "square": 1}\n'
    assert "inorder map: <stdin>:2: ValueError: the line is not valid JSON" in raised.stderr
    skipped = inorder(
        "map", f"{FUNCTIONS}:square_json", "--jsonl", "--on-error", "skip", stdin=stdin
    )
    assert skipped.stdout.splitlines() == ['{"n": 1, "square": 1}', '{"n": 3, "square": 9}']


def test_retries_rerun_failed_lines(tmp_path: Path) -> None:
    env = {"FLAKY_DIR": str(tmp_path)}
    failing = inorder("map", f"{FUNCTIONS}:flaky", stdin="a\nb\n", env=env)
    assert failing.returncode == 1
    assert "ConnectionError: first attempt at a" in failing.stderr
    for marker in tmp_path.iterdir():
        marker.unlink()
    retried = inorder("map", f"{FUNCTIONS}:flaky", "--retries", "1", stdin="a\nb\n", env=env)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout == "a\nb\n"


def test_timeout_stops_a_hanging_line() -> None:
    done = inorder(
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


def test_head_ends_it_quietly(tmp_path: Path) -> None:
    source = lines_file(tmp_path / "big.txt", [str(i) for i in range(200_000)])
    command = (
        f'"{sys.executable}" -m inorder map {FUNCTIONS}:upper "{source}" | head -3; '
        'echo "status ${PIPESTATUS[0]}" >&2'
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.stdout == "0\n1\n2\n"
    assert done.stderr == "status 141\n"


def test_ctrl_c_stops_it_within_a_second_with_no_orphans(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "inorder", "map", f"{FUNCTIONS}:sleep_long", "-j", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdin is not None
        process.stdin.write("a\nb\n")
        process.stdin.flush()
        parent = psutil.Process(process.pid)
        wait_for(lambda: sum(c.cpu_percent() >= 0 for c in parent.children(recursive=True)) >= 3)
        time.sleep(0.5)  # both items are now sleeping in their workers
        descendants = {c.pid for c in parent.children(recursive=True)}
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(10)
        took = time.monotonic() - started
        assert process.returncode == 130
        assert process.stderr is not None
        assert process.stderr.read() == "inorder map: interrupted\n"
        assert took < 1.0, f"took {took:.2f} s"
        wait_for(lambda: not alive(descendants), limit=10)
    finally:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_version_and_module_entry_point() -> None:
    done = inorder("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("inorder ")


# -- inorder spool -----------------------------------------------------------------------


def drop(folder: Path, name: str, text: str) -> None:
    """Write a task elsewhere, then move it in: what programs feeding a spool should do."""
    staging = folder.parent / f".staging-{name}"
    staging.write_text(text)
    os.replace(staging, folder / name)


def start_spool(folder: Path, *options: str, log: Path, **popen: Any) -> subprocess.Popen[str]:
    """A spool running in the background (for tests that kill or interrupt it)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inorder",
            "spool",
            str(folder),
            "--run",
            f"{FUNCTIONS}:record",
            *options,
        ],
        cwd=ROOT,
        env={**os.environ, "SPOOL_LOG": str(log)},
        text=True,
        **popen,
    )


def spool(folder: Path, *options: str, log: Path) -> subprocess.CompletedProcess[str]:
    return inorder(
        "spool", str(folder), "--run", f"{FUNCTIONS}:record", *options, env={"SPOOL_LOG": str(log)}
    )


def test_spool_once_processes_in_name_order_into_done_and_failed(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    for name in ["20-b.task", "10-a.task", "30-c.task"]:
        drop(folder, name, "hello")
    drop(folder, "15-bad.task", "fail")
    drop(folder, "notes.txt", "not a task")
    log = tmp_path / "log"
    done = spool(folder, "--once", "-j", "1", log=log)
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


def test_two_spools_on_one_folder_never_take_the_same_file(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    names = [f"{i:03}.task" for i in range(40)]
    for name in names:
        drop(folder, name, "sleep 0.02")
    log = tmp_path / "log"
    command = [
        sys.executable,
        "-m",
        "inorder",
        "spool",
        str(folder),
        "--run",
        f"{FUNCTIONS}:record",
        "--once",
        "-j",
        "2",
    ]
    env = {**os.environ, "SPOOL_LOG": str(log)}
    spools = [subprocess.Popen(command, cwd=ROOT, env=env) for _ in range(2)]
    assert [s.wait(60) for s in spools] == [0, 0]
    processed = log.read_text().split()
    assert sorted(processed) == names  # each exactly once
    assert sorted(p.name for p in (folder / "done").iterdir() if p.suffix == ".task") == names


def test_a_spool_killed_mid_way_is_taken_over_on_restart(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    names = [f"{i}.task" for i in range(6)]
    for name in names:
        drop(folder, name, "sleep 0.3")
    log = tmp_path / "log"
    first = start_spool(folder, "-j", "2", log=log)
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
    restarted = spool(folder, "--once", "-j", "2", log=log)
    assert restarted.returncode == 0, restarted.stderr
    assert sorted(p.name for p in done_dir.iterdir() if p.suffix == ".task") == names
    rerun = log.read_text().split()[runs_before:]
    assert not set(rerun) & done_before  # nothing done was processed again
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == []  # nothing lost
    assert list((folder / "running").iterdir()) == []


def test_a_watching_spool_takes_new_files_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    log = tmp_path / "log"
    process = start_spool(folder, "-j", "1", log=log, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: (folder / "running").exists() and any((folder / "running").iterdir()))
        time.sleep(0.3)  # let it settle into waiting for events
        drop(folder, "late.task", "hello")
        wait_for(lambda: (folder / "done" / "late.task").exists())
        descendants = {c.pid for c in psutil.Process(process.pid).children(recursive=True)}
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(10)
        assert time.monotonic() - started < 1.0
        assert process.returncode == 130
        wait_for(lambda: not alive(descendants), limit=10)
        assert list((folder / "running").iterdir()) == []  # it gave back its claim folder
    finally:
        process.kill()
        process.wait()
        if process.stderr is not None:
            process.stderr.close()


def test_spool_on_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    done = spool(tmp_path / "absent", "--once", log=tmp_path / "log")
    assert done.returncode == 2
    assert done.stderr == f"inorder spool: error: no such folder: {tmp_path / 'absent'}\n"


def test_spool_pattern_chooses_the_files(tmp_path: Path) -> None:
    folder = tmp_path / "inbox"
    folder.mkdir()
    drop(folder, "a.job", "x")
    drop(folder, "b.task", "x")
    done = spool(folder, "--once", "--pattern", "*.job", log=tmp_path / "log")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "log").read_text().split() == ["a.job"]
    assert (folder / "b.task").exists()


def test_an_input_that_fails_mid_way_is_one_line_and_status_1(tmp_path: Path) -> None:
    folder = tmp_path / "a-directory"
    folder.mkdir()  # os.read() on a directory: IsADirectoryError, after the open
    done = inorder("map", f"{FUNCTIONS}:upper", str(folder))
    assert done.returncode == 1
    assert done.stderr.startswith("inorder map: error: ")
    assert "Is a directory" in done.stderr
    assert "Traceback" not in done.stderr
