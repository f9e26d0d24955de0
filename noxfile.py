"""What `make test` runs, with nox: the checks once, the test suite on every supported
Python (each in a virtual environment of its own under .nox/).

    nox                      # lint, the docs, then the tests on 3.11, 3.12 and 3.13
    nox -s tests-3.12        # one Python
    nox -s tests-3.13 -- -k redis   # arguments after -- go to pytest

A Python that is not installed fails the run on CI (nox's default where CI is set) and
is skipped elsewhere, with nox saying so.
"""

from __future__ import annotations

import nox

# The versions pyproject.toml's classifiers promise.
PYTHONS = ["3.11", "3.12", "3.13"]
CHECKED = ["src", "tests", "examples", "benchmarks", "noxfile.py", "docs/conf.py"]

nox.options.sessions = ["lint", "docs", "tests"]
nox.options.reuse_existing_virtualenvs = True  # a second run only checks what is installed
nox.options.default_venv_backend = "venv"


@nox.session(python=PYTHONS[0])
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy --strict on src, once."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", *CHECKED)
    session.run("ruff", "format", "--check", *CHECKED)
    session.run("mypy")


@nox.session(python=PYTHONS[0])
def docs(session: nox.Session) -> None:
    """The documentation site into docs/_build/html, warnings (broken references
    included) as errors."""
    session.install("-e", ".[docs]")
    session.run(
        "sphinx-build", "--fail-on-warning", "--nitpicky", "--keep-going", "--quiet",
        "--builder", "html", "docs", "docs/_build/html",
    )  # fmt: skip


@nox.session(python=PYTHONS)
def tests(session: nox.Session) -> None:
    """The test suite."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)
