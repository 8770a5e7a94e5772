"""A released configuration is parsed strictly: a malformed one is one clear LaunchError."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from cloister import errors
from cloister.runtime._config import LaunchConfig

GOOD: dict[str, Any] = {
    "version": 1, "session": "s", "service": "app", "command": ["python3", "/app/x.py"],
    "environment": {"A": "1"}, "pwd": "/",
    "files": [{"path": "/tls/k", "mode": 0o600,
               "content": base64.b64encode(b"KEY").decode()}],
    "fspf": {"path": "/fspf/fs.pb", "key": "0" * 64, "tag": "1" * 32},
}


def test_a_well_formed_configuration_loads() -> None:
    config = LaunchConfig.from_json(json.dumps(GOOD).encode())
    assert config.command == ("python3", "/app/x.py") and config.files[0].content == b"KEY"
    assert repr(config) == "LaunchConfig(s/app)"  # no secret in its repr


@pytest.mark.parametrize(("field", "value"), [
    ("pwd", ["/"]), ("pwd", 0), ("pwd", "relative"), ("command", "python3 x.py"),
    ("command", [1]), ("environment", []), ("environment", {"A": 1}),
    ("files", [{"path": 5, "mode": 384, "content": ""}]),
    ("files", [{"path": "/a/../b", "mode": 384, "content": ""}]),
    ("files", [{"path": "/a", "mode": True, "content": ""}]),
    ("files", [{"path": "/a", "mode": 384, "content": "not base64!"}]),
    ("fspf", {"path": "/p", "key": 5, "tag": "1" * 32}), ("fspf", "x"),
])
def test_malformed_fields_are_one_clear_error(field: str, value: Any) -> None:
    with pytest.raises(errors.LaunchError, match="configuration this runtime cannot read"):
        LaunchConfig.from_json(json.dumps(GOOD | {field: value}).encode())
