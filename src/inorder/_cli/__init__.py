"""The command line: ``inorder map`` (GNU ``parallel --keep-order`` for Python functions)
and ``inorder spool`` (a folder other programs drop work into).

Both are thin layers over ``OrderedPipeline``. Exit statuses: 0 done (failures written
or skipped under ``--on-error return|skip`` included); 1 an item failed under
``--on-error raise``, a spool's file failed with ``--once``, or Redis could not be
reached or was lost; 2 a usage error (bad option, bad ``MODULE:FUNC``, missing
file), reported before any work; 130 interrupted (Ctrl-C); 141 the reader of stdout
went away (``| head``), as for any Unix tool killed by SIGPIPE.
"""

from __future__ import annotations

from collections.abc import Sequence

# Nothing else at import: worker processes import this package to reach ``_lines``.


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inorder`` command."""
    from ._main import main as run

    return run(argv)
