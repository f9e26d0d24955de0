"""``python -m inorder``: the command line (see ``inorder --help``)."""

import sys

from ._cli import main

sys.exit(main())
