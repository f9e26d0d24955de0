"""Sphinx configuration: `make docs` builds the site into docs/_build/html."""

from __future__ import annotations

import concurrent.futures
import inspect
import re
import sys
import zlib
from pathlib import Path

import inorder
import inorder.redis


def _defined_in(obj: type) -> str | None:
    """The private module that defines the class ``obj`` (it names itself ``inorder``)."""
    for name, module in list(sys.modules.items()):
        if (
            name.startswith("inorder._")
            and getattr(module, obj.__name__, None) is obj
            and re.search(rf"^class {obj.__name__}\b", inspect.getsource(module), re.M)
        ):
            return name
    return None


# Public classes name their package as their module (``inorder.PipelineStatistics``, as
# users import them). For the docs they name the module that defines them again, so
# that autodoc reads their attributes' docstrings from its source; the pages document
# them under their public names, with the defining module's as the canonical alias.
for _package in (inorder, inorder.redis):
    for _name in _package.__all__:
        _obj = getattr(_package, _name)
        if isinstance(_obj, type) and (_module := _defined_in(_obj)) is not None:
            _obj.__module__ = _module

# Annotations name the Executor by the module that defines it, which Python's docs do not
# document: link it where they do.
concurrent.futures.Executor.__module__ = "concurrent.futures"

project = "inorder"
author = "The inorder developers"
copyright = "2026, the inorder developers"
release = inorder.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",  # the docstrings' "Args:" and "Raises:" sections
    "sphinxarg.ext",  # the CLI reference, from the command's own parser
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
nitpicky = True
# Type aliases of inorder's signatures (their values are in the options reference) and a
# type variable: names of annotations, not documented objects.
nitpick_ignore = [
    ("py:class", name)
    for name in (
        "OnError", "ExecutorOption", "BatchOption", "WindowOption", "StartMethod",
        "ExceptionTypes", "Format", "T", "inorder._map.T", "inorder._sync.T",
    )
]  # fmt: skip

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True

# The builds run without network, so the inventories are local files: Python's from
# Debian's python3-doc (`make docs` installs it), and for anyio and trio the names these
# pages link to (with {py:func} and the like), written by _inventory() below with their
# pages on the projects' sites: a page that links to another name adds it here.
_BUILT = Path(__file__).parent / "_build" / "inventories"
_LINKED = {
    "anyio": {
        "anyio.run": ("function", "api.html"),
        "anyio.create_task_group": ("function", "api.html"),
        "anyio.to_thread.run_sync": ("function", "api.html"),
        "anyio.to_process.run_sync": ("function", "api.html"),
    },
    "trio": {
        "trio.run": ("function", "reference-core.html"),
        "trio.open_nursery": ("function", "reference-core.html"),
        "trio.to_thread.run_sync": ("function", "reference-core.html"),
    },
}


def _inventory(project: str, names: dict[str, tuple[str, str]]) -> str:
    """A Sphinx inventory (version 2) of ``names``: each a (role, page) anchored by name."""
    lines = "".join(f"{name} py:{role} 1 {page}#$ -\n" for name, (role, page) in names.items())
    path = _BUILT / f"{project}.inv"
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Sphinx inventory version 2\n# Project: {project}\n# Version: \n"
    header += "# The remainder of this file is compressed using zlib.\n"
    path.write_bytes(header.encode() + zlib.compress(lines.encode()))
    return str(path)


def _python_inventory() -> str:
    """Python's inventory from Debian's python3-doc (one of /usr/share/doc/python3.*)."""
    found = sorted(Path("/usr/share/doc").glob("python3.*/html/objects.inv"))
    if not found:
        raise RuntimeError(
            "Python's objects.inv is missing: install Debian's python3-doc (make docs does)"
        )
    return str(found[-1])


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", _python_inventory()),
    "anyio": ("https://anyio.readthedocs.io/en/stable", _inventory("anyio", _LINKED["anyio"])),
    "trio": ("https://trio.readthedocs.io/en/stable", _inventory("trio", _LINKED["trio"])),
}

html_theme = "furo"
html_title = f"inorder {release}"
