"""The public surface: what ``inorder`` exports, and what workers import."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

import inorder


def test_all_names_resolve_and_nothing_private_leaks() -> None:
    for name in inorder.__all__:
        assert getattr(inorder, name) is not None, name
    public = {n for n in dir(inorder) if not n.startswith("_")}
    modules = {"annotations", "importlib", "TYPE_CHECKING", "Any"}
    # Public submodules with an extra dependency, attributes once imported.
    submodules = {"redis"}
    assert public - modules - submodules == set(inorder.__all__)


def test_the_redis_submodule_exports_what_it_lists() -> None:
    import inorder.redis

    for name in inorder.redis.__all__:
        assert getattr(inorder.redis, name).__module__ == "inorder.redis", name


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'no_such_thing'"):
        inorder.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_exception_tree() -> None:
    assert issubclass(inorder.PipelineClosedError, inorder.InorderError)
    assert issubclass(inorder.PipelineClosedError, RuntimeError)
    assert issubclass(inorder.RemoteTraceback, Exception)


def test_worker_modules_import_only_the_standard_library() -> None:
    """Every worker process imports inorder._worker: it must stay light (cloudpickle
    alone takes 11-14 ms to import; workers import it only when a result needs it;
    typing 4-8 ms, and the workers' modules use it only for annotations)."""
    code = (
        "import sys, inorder._worker, inorder._worker_process\n"
        "heavy = {'anyio', 'trio', 'asyncio', 'inorder._pipeline', 'sniffio', 'cloudpickle',\n"
        "         'typing'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_public_names_show_as_inorder_names_and_errors_pickle() -> None:
    for name in inorder.__all__:
        assert getattr(inorder, name).__module__ == "inorder", name
    error = inorder.WorkerCrashedError("died", pid=7, exitcode=-9)
    assert repr(inorder.OrderedPipeline).startswith("<class 'inorder.OrderedPipeline'")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), copy.pid, copy.signal) == (inorder.WorkerCrashedError, 7, 9)
