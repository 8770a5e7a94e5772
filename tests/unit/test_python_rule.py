"""One rule for "is this a Python interpreter", used by measurement and by cloister run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister._python import is_python_name
from cloister.attest._measure import is_python_interpreter
from cloister.runtime import is_python_command

PYTHONS = ["python", "python3", "python3.11", "/usr/bin/python3.13t", "python3.12d"]
NOT_PYTHONS = ["python2", "python2.7", "redis-server", "pythonista", "python3.x", "sh"]


@pytest.mark.parametrize("name", PYTHONS)
def test_python_3_names(name: str) -> None:
    assert is_python_name(name)
    assert is_python_command(name)
    assert is_python_interpreter(Path(f"/nonexistent/{Path(name).name}"))


@pytest.mark.parametrize("name", NOT_PYTHONS)
def test_other_names(name: str) -> None:
    """The two places once disagreed on python2 and python3.13t; now neither can."""
    assert not is_python_name(name)
    assert not is_python_command(name)
    assert not is_python_interpreter(Path(f"/nonexistent/{name}"))
