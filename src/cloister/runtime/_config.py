"""The configuration a CAS released to this process, parsed and checked.

It lives in memory only: never logged, never written (except, for native
programs, the injected files onto a memory-backed filesystem).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cloister import errors
from cloister.runtime._volumes import VolumeMount


@dataclass(frozen=True, repr=False)
class InjectedFile:
    path: str
    mode: int
    content: bytes = field(repr=False)


@dataclass(frozen=True, repr=False)
class FspfConfig:
    path: str
    key: str
    tag: str


@dataclass(frozen=True, repr=False)
class LaunchConfig:
    """``repr`` is deliberately uninformative: the environment and files are secrets."""

    session: str
    service: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    pwd: str | None
    files: tuple[InjectedFile, ...]
    fspf: FspfConfig | None
    volumes: tuple[VolumeMount, ...] = ()
    #: a singleton service's lease: (id, lifetime in seconds)
    lease: tuple[str, float] | None = None
    #: the policy's debug switch: tracebacks of sealed code show its source lines
    debug_tracebacks: bool = False

    def __repr__(self) -> str:
        return f"LaunchConfig({self.session}/{self.service})"

    @classmethod
    def from_json(cls, blob: bytes) -> LaunchConfig:
        try:
            raw = json.loads(blob)
            return cls(
                session=_text(raw["session"]),
                service=_text(raw["service"]),
                command=tuple(_text(a) for a in _list(raw["command"])),
                environment={_text(k): _text(v) for k, v in _dict(raw["environment"]).items()},
                pwd=None if raw["pwd"] is None else _absolute(raw["pwd"]),
                files=tuple(
                    InjectedFile(
                        _absolute(f["path"]), _mode(f["mode"]),
                        base64.b64decode(_text(f["content"]), validate=True),
                    )
                    for f in map(_dict, _list(raw["files"]))
                ),
                fspf=_fspf(raw.get("fspf")),
                volumes=tuple(
                    VolumeMount(_text(v["name"]), _absolute(v["path"]), _hex64(v["key"]))
                    for v in map(_dict, _list(raw.get("volumes", [])))
                ),
                lease=_lease(raw.get("lease")),
                debug_tracebacks=raw.get("debug_tracebacks", False) is True,
            )
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise errors.LaunchError(
                "the CAS sent a configuration this runtime cannot read"
            ) from None

    def enter_pwd(self) -> None:
        """Change to the policy's ``pwd`` (if any); it must exist, as in SCONE."""
        if self.pwd is None:
            return
        try:
            os.chdir(self.pwd)
        except OSError as err:
            raise errors.LaunchError(
                f"cannot enter the policy's pwd {self.pwd}: {err.strerror}"
            ) from None

    def with_host_values(
        self, host_args: Sequence[str], host_env: Mapping[str, str]
    ) -> LaunchConfig:
        """Apply SCONE's host expansion: ``@@N`` arguments and ``@@NAME`` variables (0.3.8)."""
        command = [_host_arg(arg, host_args) for arg in self.command]
        environment: dict[str, str] = {}
        for key, value in self.environment.items():
            if key.startswith("@@"):
                environment[key[2:]] = host_env.get(key[2:], "")
            else:
                environment[key] = value
        return replace(self, command=tuple(command), environment=environment)


def _host_arg(arg: str, host_args: Sequence[str]) -> str:
    if not (arg.startswith("@@") and arg[2:].isdigit()):
        return arg
    index = int(arg[2:])
    if not 1 <= index <= len(host_args):
        raise errors.LaunchError(
            f"the policy's command asks for host argument {arg}, but only {len(host_args)} "
            "were given after the program name"
        )
    return host_args[index - 1]


def _text(value: Any) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise TypeError("expected a string")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return value


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError("expected an object")
    return value


def _absolute(value: Any) -> str:
    path = _text(value)
    if not path.startswith("/") or os.path.normpath(path) != path:
        raise ValueError("expected an absolute, normalized path")
    return path


def _hex64(value: Any) -> str:
    text = _text(value)
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError("expected 64 hex digits")
    return text


def _mode(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o7777:
        raise ValueError("expected a file mode")
    return value


def _lease(raw: Any) -> tuple[str, float] | None:
    if raw is None:
        return None
    raw = _dict(raw)
    ttl = raw["ttl"]
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 0 < ttl <= 3600:
        raise ValueError("expected a lease lifetime")
    return _text(raw["id"]), float(ttl)


def _fspf(raw: Any) -> FspfConfig | None:
    if raw is None:
        return None
    raw = _dict(raw)
    if raw.get("key") is None or raw.get("tag") is None:
        raise errors.LaunchError(
            f"the policy names protected files {raw.get('path')} but not both fspf_key and "
            "fspf_tag: add them to the service"
        )
    return FspfConfig(_absolute(raw["path"]), _text(raw["key"]), _text(raw["tag"]))
