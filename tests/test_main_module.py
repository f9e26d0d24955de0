"""Functions defined in ``__main__`` (a script, or ``python -c``) travel by value."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from .helpers import run_arguments

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import anyio, inorder

    def triple(x):
        return 3 * x

    class Box:
        def __init__(self, v):
            self.v = v

    def unbox(box):
        return box.v + 1

    async def main():
        scale = 10
        results = []
        async with inorder.OrderedPipeline(workers=2) as pipe:
            await pipe.put(triple, 2)
            await pipe.put(lambda x: x * scale, 4)
            await pipe.put(unbox, Box(41))
            pipe.close()
            results = [r async for r in pipe]
        results += [r async for r in inorder.map(triple, range(3), workers=2)]
        print(json.dumps(results))

    if __name__ == "__main__":
        anyio.run(main, **json.loads(sys.argv[1]))
    """
)
EXPECTED = [6, 40, 42, 0, 3, 6]


def run_python(*args: str, cwd: Path | str | None = None) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter running ``args``, its output captured."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=60, cwd=cwd
    )


def json_printed_by(*args: str, cwd: Path | str | None = None) -> Any:
    """What a fresh interpreter running ``args`` printed, as JSON; it must succeed."""
    done = run_python(*args, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_script_main_functions_lambdas_and_classes(tmp_path: Path, loop: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    assert json_printed_by(str(script), run_arguments(loop)) == EXPECTED


def test_python_dash_c_has_no_main_file_and_still_works(tmp_path: Path, loop: str) -> None:
    # With -c there is no file for the workers to re-import: everything goes by value.
    assert json_printed_by("-c", SCRIPT, run_arguments(loop), cwd=tmp_path) == EXPECTED


def test_a_module_imported_under_the_main_guard_still_reaches_main_functions(
    tmp_path: Path, loop: str
) -> None:
    # docs/pipelines.md advises importing what only the parent needs under the guard (spawn
    # workers import the main module as they start, but not what the guard imports).
    script = tmp_path / "guarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import anyio, inorder

            def encode(x):
                return json.dumps({"x": x})

            async def main():
                print(json.dumps([r async for r in inorder.map(encode, range(2), workers=1)]))

            if __name__ == "__main__":
                import json
                anyio.run(main, **json.loads(sys.argv[1]))
            """
        )
    )
    assert json_printed_by(str(script), run_arguments(loop)) == ['{"x": 0}', '{"x": 1}']


UNGUARDED = textwrap.dedent(
    """
    import json, os, sys
    import anyio, inorder

    print("imported in", os.getpid(), file=sys.stderr)

    class Box:
        def __init__(self, v):
            self.v = v

    def box(x):
        return Box(x * 2)

    async def main():
        results = [b async for b in inorder.map(box, range(4), workers=2)]
        assert all(type(b) is Box for b in results), [type(b) for b in results]
        print(json.dumps({"values": [b.v for b in results], "pid": os.getpid()}))

    anyio.run(main, **json.loads(sys.argv[1]))
    """
)


def _main_module_imports(stderr: str) -> list[int]:
    return [
        int(line.split()[-1]) for line in stderr.splitlines() if line.startswith("imported in")
    ]


@pytest.mark.parametrize("run_as", ["script", "python -m"])
def test_workers_do_not_import_the_main_module(tmp_path: Path, run_as: str, loop: str) -> None:
    # On Linux (forkserver) the workers leave the main module alone: a script without
    # the main guard works, its top level runs once, and its classes come back as the
    # parent's own. python -m names the main module by import name, a script by path.
    package = tmp_path / "jobs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "run.py").write_text(UNGUARDED)
    command = [str(package / "run.py")] if run_as == "script" else ["-m", "jobs.run"]
    done = run_python(*command, run_arguments(loop), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert output["values"] == [0, 2, 4, 6]
    assert _main_module_imports(done.stderr) == [output["pid"]]


def test_workers_see_the_parents_sys_path(tmp_path: Path, loop: str) -> None:
    # The main module is left out of the workers' preparation, not the rest of it: a
    # module found through a directory the script put on sys.path is imported by name
    # in the workers too.
    library = tmp_path / "lib"
    library.mkdir()
    (library / "shapes.py").write_text("def area(side):\n    return side * side\n")
    script = tmp_path / "uses_lib.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, sys
            sys.path.insert(0, {str(library)!r})
            import anyio, inorder
            import shapes

            async def main():
                print(json.dumps([a async for a in inorder.map(shapes.area, range(3), workers=1)]))

            if __name__ == "__main__":
                anyio.run(main, **json.loads(sys.argv[1]))
            """
        )
    )
    assert json_printed_by(str(script), run_arguments(loop), cwd="/") == [0, 1, 4]


def test_missing_main_guard_with_spawn_gives_a_clear_error(tmp_path: Path, loop: str) -> None:
    # The spawn start method (macOS, Windows) imports the main module in each worker:
    # a script that starts the pipeline at its top level starts it again there.
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import json, sys\n"
        "import anyio, inorder\n"
        "async def main():\n"
        "    async with inorder.OrderedPipeline(workers=1, start_method='spawn'):\n"
        "        pass\n"
        "anyio.run(main, **json.loads(sys.argv[1]))\n"
    )
    done = run_python(str(script), run_arguments(loop))
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr
    assert "worker processes keep dying while they start" in done.stderr
