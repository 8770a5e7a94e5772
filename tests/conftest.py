"""Fixtures shared by every test layer (helpers live in ``support``)."""

from __future__ import annotations

import pytest

from support import SEED_VARIABLES


@pytest.fixture
def seed_variables() -> dict[str, str]:
    return dict(SEED_VARIABLES)
