"""The pipeline's options, validated once: ``inorder.Options``.

``OrderedPipeline``, ``inorder.map``, the CLI and the spool all build an ``Options``, so
an option means the same everywhere and a bad one is refused by the same message, before
any worker starts. The object is frozen and every attribute holds a value that is valid
input again, so ``Options(**options.as_kwargs())`` gives an equal object.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypedDict, TypeGuard, Unpack

from . import _progress
from ._backends.dask import check_running, cluster_threads, is_dask_client
from ._retry import ExceptionTypes, check_retry_on

if TYPE_CHECKING:
    from distributed import Client as DaskClient

    from ._workerpool import WorkerPool

OnError = Literal["raise", "return", "skip"]
ExecutorOption: TypeAlias = (
    'Literal["process", "thread"] | concurrent.futures.Executor | WorkerPool | DaskClient'
)
BatchOption = int | Literal["auto"]
WindowOption = int | Literal["auto"]
StartMethod = Literal["forkserver", "spawn"]


class PipelineOptions(TypedDict, total=False):
    """The keyword options of ``OrderedPipeline``, ``inorder.map`` and ``inorder.Options``.

    For typing a function that passes them on: ``**options: Unpack[PipelineOptions]``.
    """

    workers: int | None
    window: WindowOption
    executor: ExecutorOption
    ordered: bool
    on_error: OnError
    batch: BatchOption
    timeout: float | None
    retries: int
    retry_on: ExceptionTypes
    initializer: Callable[..., Any] | None
    initargs: Iterable[Any]
    max_tasks_per_child: int | None
    start_method: StartMethod | None
    progress: bool


def usable_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    if hasattr(os, "process_cpu_count"):  # Python 3.13+
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True, init=False)
class Options:
    """The options of a pipeline, checked: ``inorder.Options(workers=4, timeout=30)``.

    Takes the keyword arguments of ``OrderedPipeline`` (see there for what each does)
    and raises ``TypeError`` or ``ValueError`` naming the option, what it expects and
    what it got (``ImportError`` for ``progress=True`` without rich). ``workers`` is
    resolved here: left out, it is the size of a borrowed executor or shared pool, the
    threads of a Dask client's cluster (followed as the cluster scales:
    ``follows_cluster``), else the CPUs this process may use. Pass it on with
    ``OrderedPipeline(options)`` or ``inorder.map(fn, items, **options.as_kwargs())``;
    ``replace()`` makes a changed copy, checked again.
    """

    workers: int
    window: WindowOption
    executor: ExecutorOption
    ordered: bool
    on_error: OnError
    batch: BatchOption
    timeout: float | None
    retries: int
    retry_on: ExceptionTypes
    initializer: Callable[..., Any] | None
    initargs: tuple[Any, ...]
    max_tasks_per_child: int | None
    start_method: StartMethod | None
    progress: bool

    def __init__(
        self,
        *,
        workers: int | None = None,
        window: WindowOption = "auto",
        executor: ExecutorOption = "process",
        ordered: bool = True,
        on_error: OnError = "raise",
        batch: BatchOption = "auto",
        timeout: float | None = None,
        retries: int = 0,
        retry_on: ExceptionTypes = Exception,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_child: int | None = None,
        start_method: StartMethod | None = None,
        progress: bool = False,
    ) -> None:
        executor = _check_executor(executor)
        follows_cluster = workers is None and is_dask_client(executor)
        checked: dict[str, Any] = {
            "workers": _check_workers(workers, executor),
            "window": _check_auto_or_size("window", window),
            "executor": executor,
            "ordered": _check_bool("ordered", ordered),
            "on_error": _check_on_error(on_error),
            "batch": _check_auto_or_size("batch", batch),
            "timeout": _check_timeout(timeout),
            "retries": _check_non_negative_int("retries", retries),
            "retry_on": check_retry_on(retry_on),
            "initializer": _check_initializer(initializer),
            "initargs": _check_initargs(initargs),
            "max_tasks_per_child": (
                None
                if max_tasks_per_child is None
                else check_positive_int("max_tasks_per_child", max_tasks_per_child)
            ),
            "start_method": _check_start_method(start_method),
            "progress": _check_bool("progress", progress),
        }
        process_only = [
            name
            for name in ("timeout", "initializer", "max_tasks_per_child", "start_method")
            if checked[name] is not None
        ]
        if process_only and is_dask_client(executor):
            raise ValueError(_on_a_cluster(process_only))
        if process_only and _is_worker_pool(executor):
            raise ValueError(
                f"{', '.join(process_only)} belong(s) to the shared pool, for all the "
                "pipelines on it: give them to inorder.WorkerPool(...) instead"
            )
        if process_only and executor != "process":
            raise ValueError(
                f"{', '.join(process_only)} need(s) executor='process': inorder can stop, "
                "set up and replace only its own worker processes (threads cannot be "
                "killed, and a borrowed executor is yours to configure)"
            )
        if checked["progress"]:
            _progress.check_available()
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_follows_cluster", follows_cluster)

    @property
    def follows_cluster(self) -> bool:
        """Whether ``workers`` follows a Dask cluster's threads as it scales (a
        ``distributed.Client`` as executor, ``workers`` left out)."""
        return bool(getattr(self, "_follows_cluster", False))

    @property
    def fixed_window(self) -> int | None:
        """The window's size, or ``None`` for the automatic window."""
        return None if self.window == "auto" else self.window

    @property
    def fixed_batch(self) -> int | None:
        """The batch size, or ``None`` for adaptive batching."""
        return None if self.batch == "auto" else self.batch

    def as_kwargs(self) -> PipelineOptions:
        """The options as keyword arguments, for ``inorder.map`` or a wrapper of yours."""
        return PipelineOptions(
            workers=None if self.follows_cluster else self.workers,
            window=self.window,
            executor=self.executor,
            ordered=self.ordered,
            on_error=self.on_error,
            batch=self.batch,
            timeout=self.timeout,
            retries=self.retries,
            retry_on=self.retry_on,
            initializer=self.initializer,
            initargs=self.initargs,
            max_tasks_per_child=self.max_tasks_per_child,
            start_method=self.start_method,
            progress=self.progress,
        )

    def replace(self, **changes: Unpack[PipelineOptions]) -> Options:
        """A copy with ``changes`` applied, checked as a new ``Options`` is."""
        merged = self.as_kwargs()
        merged.update(changes)
        return Options(**merged)


def _check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__qualname__} {value!r}")
    return value


def _check_on_error(on_error: object) -> OnError:
    if on_error == "raise" or on_error == "return" or on_error == "skip":
        return on_error
    raise ValueError(f"on_error must be 'raise', 'return' or 'skip', got {on_error!r}")


def _check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__qualname__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, got {value}")
    return value


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__qualname__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(
            f"timeout must be a number of seconds or None, got {type(timeout).__qualname__} "
            f"{timeout!r}"
        )
    if not timeout > 0 or timeout == float("inf"):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout}")
    return float(timeout)


def _check_initializer(initializer: object) -> Callable[..., Any] | None:
    if initializer is not None and not callable(initializer):
        raise TypeError(
            f"initializer must be callable or None, got {type(initializer).__qualname__}"
        )
    return initializer


def _check_initargs(initargs: object) -> tuple[Any, ...]:
    if not isinstance(initargs, Iterable) or isinstance(initargs, (str, bytes)):
        raise TypeError(f"initargs must be a tuple of arguments, got {initargs!r:.60}")
    return tuple(initargs)


def _check_workers(workers: object, executor: ExecutorOption) -> int:
    """The ``workers`` option, or its default: a borrowed executor's size, else the CPUs."""
    if workers is None:
        if _is_worker_pool(executor):
            return executor.workers
        if is_dask_client(executor):
            return cluster_threads(executor)
        if isinstance(executor, concurrent.futures.Executor):
            size = getattr(executor, "_max_workers", None)
            if isinstance(size, int) and size > 0:
                return size
        return usable_cpu_count()
    return check_positive_int("workers", workers)


def _check_auto_or_size(name: str, value: object) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool):
        return check_positive_int(name, value)
    raise TypeError(f"{name} must be 'auto' or an int, got {type(value).__qualname__} {value!r}")


def _check_executor(executor: object) -> ExecutorOption:
    if executor == "process" or executor == "thread":
        return executor
    if isinstance(executor, concurrent.futures.Executor) or _is_worker_pool(executor):
        return executor
    if is_dask_client(executor):
        check_running(executor)
        return executor
    raise ValueError(
        "executor must be 'process', 'thread', an inorder.WorkerPool, a "
        f"concurrent.futures.Executor or a distributed.Client, got {executor!r}"
    )


# What to use on a Dask cluster for each option that belongs to inorder's own processes.
_CLUSTER_ADVICE = {
    "timeout": "Dask cannot stop a task once it runs (its workers run items in threads): "
    "bound the work inside the function, or use inorder's own pool for timeouts",
    "initializer": "set workers up with a Dask worker plugin "
    "(client.register_plugin(plugin), whose setup(worker) runs on every worker, new ones "
    "too) or the workers' --preload module",
    "max_tasks_per_child": "Dask restarts workers on its own terms: the workers' "
    "--lifetime and --lifetime-restart, or the nanny's memory limit",
    "start_method": "Dask's workers are started by the cluster (its nannies), not by inorder",
}


def _on_a_cluster(names: list[str]) -> str:
    return f"{', '.join(names)} cannot hold on a Dask cluster: " + "; ".join(
        f"for {name}, {_CLUSTER_ADVICE[name]}" for name in names
    )


def _is_worker_pool(executor: object) -> TypeGuard[WorkerPool]:
    from ._workerpool import WorkerPool  # it checks its own options here: imported late

    return isinstance(executor, WorkerPool)


def _check_start_method(start_method: object) -> StartMethod | None:
    if start_method is None:
        return None
    if start_method == "fork":
        raise ValueError(
            "start_method='fork' is not offered: a forked worker inherits the parent's "
            "threads' locks and every open socket and file (a server's client connections "
            "would never close); use 'forkserver' (the default on Linux) or 'spawn'"
        )
    if start_method != "forkserver" and start_method != "spawn":
        raise ValueError(
            f"start_method must be 'forkserver', 'spawn' or None (the platform's default), "
            f"got {start_method!r}"
        )
    if start_method not in multiprocessing.get_all_start_methods():
        raise ValueError(
            f"start_method {start_method!r} is not available on this platform; use 'spawn'"
        )
    return start_method


Options.__module__ = "inorder"
PipelineOptions.__module__ = "inorder"
