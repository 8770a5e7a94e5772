"""``python -m cloister.cli``: the same as the ``cloister`` command."""

import sys

from cloister.cli import main

sys.exit(main())
