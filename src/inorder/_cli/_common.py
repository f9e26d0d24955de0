"""What both commands share: exit statuses, usage errors, ``MODULE:FUNC``, the event
loop, and the pipeline options every command takes (``-j``, ``--batch``, ...)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import anyio
import cloudpickle

from .._options import Options

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

# The event loops --loop offers, and the package each needs.
LOOPS = ("uvloop", "asyncio", "trio")


class UsageError(Exception):
    """A mistake in the command line, reported in one line with exit status 2."""


def add_pipeline_options(
    parser: argparse.ArgumentParser, window: bool, cluster: bool = False
) -> None:
    parser.add_argument(
        "-j",
        "--workers",
        type=_positive_int,
        default=None,
        help="worker processes (default: CPUs); with --dask, items run at once "
        "(default: the cluster's threads, followed as it scales)",
    )
    if cluster:
        parser.add_argument(
            "--dask",
            metavar="ADDRESS",
            default=None,
            help="run FUNC on the Dask cluster whose scheduler is at ADDRESS (e.g. "
            "tcp://10.0.0.5:8786); MODULE must be importable on its workers, or a .py path "
            "(sent by value). Needs inorder[dask]",
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


def pipeline_options(args: argparse.Namespace, **fixed: Any) -> Options:
    """The pipeline options the command line gives, with ``fixed`` (the command's own
    choices) on top; a bad value is a ``UsageError``, reported before any work."""
    given: dict[str, Any] = {
        "workers": args.workers,
        "batch": args.batch,
        "retries": args.retries,
        "timeout": args.timeout,
        "start_method": args.start_method,
        "progress": args.progress,
    }
    try:
        return Options(**{**given, **fixed})
    except (TypeError, ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None


@contextlib.contextmanager
def executor_for(args: argparse.Namespace) -> Iterator[Any]:
    """The ``executor`` option the command line asks for: inorder's own processes, or
    a client of the Dask scheduler ``--dask`` names (connected here, closed on the way
    out: the command made it; the cluster stays as it was)."""
    address = getattr(args, "dask", None)
    if address is None:
        yield "process"
        return
    try:
        import distributed
    except ImportError:
        raise UsageError(
            "--dask needs the 'distributed' package: pip install 'inorder[dask]'"
        ) from None
    try:
        client = distributed.Client(  # type: ignore[no-untyped-call]
            address, timeout=CONNECT_SECONDS, set_as_default=False
        )
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
    with client:
        yield client


# How long --dask waits for its scheduler to answer.
CONNECT_SECONDS = 30


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
