"""The ``forkserver`` start method, without importing the main module in every worker.

multiprocessing prepares each ``forkserver`` (and ``spawn``) child by importing the
parent's main module again, as ``__mp_main__``, so that objects pickled by reference to
``__main__`` resolve. inorder never needs that: functions and classes of ``__main__``
travel by value (cloudpickle), and what a worker sends back that plain pickle cannot
reference goes by value too. The import costs every worker the main module's own
imports (tens of milliseconds for a script that imports asyncio) and re-runs its
unguarded top-level code in each of them.

``WorkerContext`` is the ``forkserver`` context whose processes leave the main module
out of their preparation data; everything else (``sys.path``, the working directory,
``sys.argv``, the authentication key) is prepared as multiprocessing does. The launch
protocol it speaks to the fork server (``connect_to_new_process``, then the preparation
data and the pickled process object on one pipe) is the same in Python 3.11, 3.12, 3.13
and CPython's main branch; ``available()`` checks that its parts are there before the
pool relies on it.
"""

from __future__ import annotations

import functools
import io
import multiprocessing.context
import os
import sys
from typing import Any

# What multiprocessing's preparation data uses to import the main module in a child.
MAIN_MODULE_KEYS = ("init_main_from_path", "init_main_from_name")


@functools.cache
def available() -> bool:
    """Whether this platform and Python have the parts ``WorkerContext`` launches with."""
    if sys.platform == "win32" or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    try:
        from multiprocessing import forkserver, popen_forkserver, spawn, util
    except ImportError:
        return False
    needed = (
        (forkserver, "connect_to_new_process"),
        (forkserver, "read_signed"),
        (spawn, "get_preparation_data"),
        (util, "Finalize"),
        (util, "close_fds"),
        (popen_forkserver.Popen, "duplicate_for_child"),
    )
    return all(hasattr(owner, name) for owner, name in needed)


def preparation_without_main(name: str) -> dict[str, Any]:
    """multiprocessing's preparation data for a child, minus importing the main module."""
    from multiprocessing import spawn

    data: dict[str, Any] = spawn.get_preparation_data(name)
    for key in MAIN_MODULE_KEYS:
        data.pop(key, None)
    return data


# Made on first use: popen_forkserver refuses to import where file descriptors cannot be
# passed between processes.
@functools.cache
def _popen_class() -> type[Any]:
    from multiprocessing import forkserver, popen_forkserver, reduction, util

    class Popen(popen_forkserver.Popen):
        def _launch(self, process_obj: Any) -> None:
            payload = io.BytesIO()
            # While this is set, pipes and locks in the process object pickle as file
            # descriptors for the fork server to pass on (self._fds).
            multiprocessing.context.set_spawning_popen(self)
            try:
                reduction.dump(preparation_without_main(process_obj._name), payload)
                reduction.dump(process_obj, payload)
            finally:
                multiprocessing.context.set_spawning_popen(None)
            fds = self._fds  # type: ignore[attr-defined]
            self.sentinel, data_w = forkserver.connect_to_new_process(fds)
            # The child learns that its parent died when every copy of this write end
            # is closed: keep one until the child is reaped.
            keep = os.dup(data_w)
            close = util.close_fds  # type: ignore[attr-defined]
            self.finalizer = util.Finalize(self, close, (keep, self.sentinel))
            with open(data_w, "wb", closefd=True) as pipe:
                pipe.write(payload.getbuffer())
            self.pid = forkserver.read_signed(self.sentinel)

    return Popen


if sys.platform != "win32":

    class WorkerProcess(multiprocessing.context.ForkServerProcess):
        """A ``forkserver`` process whose child does not import the main module."""

        @staticmethod
        def _Popen(process_obj: Any) -> Any:
            return _popen_class()(process_obj)

    class WorkerContext(multiprocessing.context.ForkServerContext):
        """``multiprocessing.get_context("forkserver")``, its processes skip ``__main__``."""

        Process = WorkerProcess
