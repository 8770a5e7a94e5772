"""Load a session from YAML text into a validated :class:`~cloister.policy._model.Session`.

Steps: template variables (optional) → strict YAML (positions kept) →
config-fragments expanded (:mod:`cloister.policy._fragments`) → typed sections,
every bad key or value recorded with its line and column → checks across
sections (references, issuers, images) → digest (of the text as written).
Every problem found is reported in one :class:`~cloister.errors.PolicyError`:
the cause first (a wrong ``version`` before what it leads to), then by
position, the first in its message, the rest in ``details``.  SCONE features
cloister's CAS cannot serve are not errors here: they are listed in
``Session.unserved`` (the CAS refuses them), and hints in ``Session.notes``.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from cloister.errors import PolicyError
from cloister.policy import _fragments, _sections
from cloister.policy._crosscheck import check_session
from cloister.policy._model import (
    AccessPolicy,
    Invalid,
    Security,
    Session,
    check_session_name,
)
from cloister.policy._reader import Reader, get, is_null
from cloister.policy._scone import CREATOR_SIGNER, OLD_SYNTAX, VERSION_RE
from cloister.policy._template import substitute_variables
from cloister.policy._yaml import Mark, Node, parse, plain

TOP_LEVEL_KEYS = (
    "name",
    "version",
    "predecessor",
    "creator",
    "access_policy",
    "services",
    "images",
    "secrets",
    "security",
    "volumes",
    "secret_config",
)

#: largest session text accepted (bytes); real sessions are a few KiB
MAX_SESSION_BYTES = 1 << 20


def load_session(
    text: str | bytes,
    *,
    variables: Mapping[str, str] | None = None,
    fragments: Mapping[str, tuple[str, str]] | None = None,
) -> Session:
    """Parse and validate a session; raise :class:`PolicyError` listing every problem.

    ``fragments`` maps imported config-fragment secrets to ``(text, origin)`` (the CAS
    resolves them); without it their places are noted and checked by the CAS."""
    text = _decode(text)
    if variables is not None:
        text = substitute_variables(text, variables)
    root = parse(text)
    reader = Reader(text)
    expanded = _fragments.apply(reader, root, fragments)
    session = _read_session(reader, expanded, session_digest(plain(root)))
    if session is not None:
        check_session(reader, session, expanded)
    messages = reader.messages()
    if messages or session is None:
        first, *rest = messages or ["invalid session"]
        raise PolicyError(first, details=rest)
    unserved, notes = tuple(reader.unserved_messages()), tuple(reader.note_messages())
    if not (unserved or notes):
        return session  # the common case: no second construction (and validation)
    return replace(session, unserved=unserved, notes=notes)


def session_digest(data: Any) -> str:
    """Hex SHA-256 of the canonical JSON form of plain session data (key order irrelevant)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _decode(text: str | bytes) -> str:
    if isinstance(text, bytes):
        if len(text) > MAX_SESSION_BYTES:
            raise PolicyError(f"session is {len(text)} bytes; the limit is {MAX_SESSION_BYTES}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PolicyError(
                f"session is not UTF-8: invalid byte at offset {err.start}; save it as UTF-8"
            ) from None
    if len(text) > MAX_SESSION_BYTES:
        raise PolicyError(f"session is {len(text)} characters; the limit is {MAX_SESSION_BYTES}")
    if "\0" in text:
        raise PolicyError("session contains a NUL character")
    return text


def _read_session(reader: Reader, root: Node, digest: str) -> Session | None:
    fields = reader.mapping(root, TOP_LEVEL_KEYS, "the session")
    if fields is None:
        return None
    name_node = get(fields, "name")
    name = None
    if name_node is None:
        reader.error(root.mark, "missing required key 'name'")
    else:
        name = reader.string(name_node, "name")
        if name is not None:
            try:
                check_session_name(name)
            except Invalid as err:
                reader.error(name_node.mark, err.message)
                name = None
    reader.session_name = name
    version = _version(reader, get(fields, "version"), root.mark)
    predecessor = _optional_string(reader, get(fields, "predecessor"), "predecessor")
    if predecessor is not None and not _is_hex64(predecessor):
        node = get(fields, "predecessor")
        assert node is not None
        reader.error(node.mark, f"predecessor {predecessor!r} is not a session hash (64 hex)")
    creator = _creator(reader, get(fields, "creator"))
    _sections.secret_config(reader, get(fields, "secret_config"))
    access = _sections.access_policy(reader, get(fields, "access_policy"))
    services = _sections.services(reader, get(fields, "services"))
    images = _sections.images(reader, get(fields, "images"))
    secrets = _sections.secrets(reader, get(fields, "secrets"))
    security = _sections.security(reader, get(fields, "security"))
    volumes = _sections.volumes(reader, get(fields, "volumes"))
    if name is None:
        return None
    return Session(
        name=name,
        version=version,
        predecessor=predecessor.lower() if predecessor else None,
        creator=creator,
        access_policy=access or AccessPolicy(),
        services=services,
        images=images,
        secrets=secrets,
        security=security or Security(),
        digest=digest,
        volumes=volumes,
    )


def _version(reader: Reader, node: Node | None, root: Mark) -> str | None:
    """SCONE 0.3 or 0.3.x; no version means 0.1 to SCONE, whose syntax differs."""
    fix = 'write version: "0.3" (or "0.3.N")'
    if node is None or is_null(node):
        reader.error(root, f"the session has no version, which SCONE reads as 0.1: {OLD_SYNTAX}; "
                     f"{fix}", cause=True)
        return None
    version = reader.string(node, "version", coerce=True)
    if version is None or VERSION_RE.fullmatch(version):
        return version
    if version in ("0.1", "0.2"):
        reader.error(node.mark, f"version {version} is SCONE's old session language: "
                     f"{OLD_SYNTAX}; {fix} after updating the session", cause=True)
    else:
        reader.error(node.mark, f"version {version!r} is not a SCONE session language version "
                     f"cloister reads: {fix}", cause=True)
    return None


def _creator(reader: Reader, node: Node | None) -> str | None:
    """``creator:`` as SCONE's read-back writes it (a certificate PEM; ignored by the CAS),
    or ``{signer: …}`` of a signed session, which cloister's CAS cannot serve."""
    if node is not None and node.kind == "map" and "signer" in node.value:
        reader.unserve(node.value["signer"].key_mark, "creator signer", CREATOR_SIGNER)
        return None
    return _optional_string(reader, node, "creator")


def _optional_string(
    reader: Reader, node: Node | None, where: str, *, coerce: bool = False
) -> str | None:
    if node is None or is_null(node):
        return None
    return reader.string(node, where, coerce=coerce)


def _is_hex64(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdefABCDEF" for c in value)


def split_command(command: str) -> tuple[str, ...]:
    """Split a command string like a shell would (quotes), without expanding anything."""
    return tuple(shlex.split(command))


def frozen_env(values: dict[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(values))
