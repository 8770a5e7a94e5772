"""The one rule for "this program is a Python interpreter" (by its file name).

``python``, ``python3``, ``python3.N``, each optionally with the
free-threaded ``t`` or debug ``d`` suffix (``python3.13t``).  ``python2`` is
not: cloister runs a Python program inside its own Python 3 interpreter, and
measures it as one.
"""

from __future__ import annotations

import os
import re

_PYTHON_NAME = re.compile(r"python(3(\.\d+)?[td]?)?")


def is_python_name(program: str) -> bool:
    """True when the last path component of ``program`` names a Python 3 interpreter."""
    return _PYTHON_NAME.fullmatch(os.path.basename(program)) is not None
