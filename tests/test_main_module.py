"""Functions defined in ``__main__`` (a script, or ``python -c``) travel by value."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

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
        anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
    """
)
EXPECTED = [6, 40, 42, 0, 3, 6]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_script_main_functions_lambdas_and_classes(tmp_path: Path, backend: str) -> None:
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), backend], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED


def test_python_dash_c_has_no_main_file_and_still_works(tmp_path: Path) -> None:
    # With -c there is no file for the workers to re-import: everything goes by value.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED


def test_a_module_imported_under_the_main_guard_still_reaches_main_functions(
    tmp_path: Path,
) -> None:
    # README advises importing what only the parent needs under the guard: workers
    # import the main module as they start, but not what the guard imports.
    script = tmp_path / "guarded.py"
    script.write_text(
        textwrap.dedent(
            """
            import anyio, inorder

            def encode(x):
                return json.dumps({"x": x})

            async def main():
                print(json.dumps([r async for r in inorder.map(encode, range(2), workers=1)]))

            if __name__ == "__main__":
                import json
                anyio.run(main)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ['{"x": 0}', '{"x": 1}']


def test_missing_main_guard_gives_a_clear_error(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import anyio, inorder\n"
        "async def main():\n"
        "    async with inorder.OrderedPipeline(workers=1):\n"
        "        pass\n"
        "anyio.run(main)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr
    assert "a worker process died while starting" in done.stderr
