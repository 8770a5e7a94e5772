"""Shared pieces of the session model: the validation error and value checks."""

from __future__ import annotations

import base64
import binascii
import posixpath
import re


class Invalid(ValueError):
    """A value is invalid; ``field`` names the key it came from (for the error's location)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


NAME_RE = re.compile(r"[A-Za-z0-9_\-.~]{1,128}")
HEX64_RE = re.compile(r"[0-9a-fA-F]{64}")
HEX32_RE = re.compile(r"[0-9a-fA-F]{32}")
ENV_NAME_RE = re.compile(r"(@@)?[A-Za-z_][A-Za-z0-9_]*")
REFERENCE_ONLY_RE = re.compile(r"\$\$SCONE::[^$]+\$\$")
#: characters of a whole session name (namespace segments included)
MAX_SESSION_NAME = 1024
#: SCONE: an image has "an arbitrary but unique name" (``volume-demo:1.0``, ``registry/app:tag``)
IMAGE_NAME_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")
#: SCONE: the OTP shared secret is RFC 4648 base32 of at least 128 bits
MIN_OTP_SECRET_BYTES = 16


def check_session_name(value: str, field_name: str = "name") -> str:
    """A session name: ``/``-separated segments of ``[A-Za-z0-9_-.~]{1,128}``."""
    segments = value.split("/")
    if len(value) > MAX_SESSION_NAME:
        raise Invalid(
            field_name, f"session name is {len(value)} characters long: use at most "
            f"{MAX_SESSION_NAME}"
        )
    if not value or any(not NAME_RE.fullmatch(s) or s in (".", "..") for s in segments):
        raise Invalid(
            field_name,
            f"invalid session name {value!r}: use 1-128 of A-Z a-z 0-9 _ - . ~, "
            "with / between namespace segments",
        )
    return value


def check_name(value: str, what: str, field_name: str = "name") -> str:
    if not NAME_RE.fullmatch(value):
        raise Invalid(
            field_name, f"invalid {what} name {value!r}: use 1-128 of A-Z a-z 0-9 _ - . ~"
        )
    return value


def check_image_name(value: str) -> str:
    if not IMAGE_NAME_RE.fullmatch(value):
        raise Invalid(
            "name", f"invalid image name {value!r}: use 1-256 visible characters, no spaces"
        )
    return value


def resolve_session_path(value: str, base: str | None, field_name: str = "session") -> str:
    """A session name written relative to session ``base`` (SCONE 0.3.10) made absolute.

    ``./x`` is nested in ``base`` (``base/x``); ``../x`` is a sibling of ``base`` (each
    further ``../`` goes up one namespace).  Other names are returned as they are."""
    if not value.startswith(("./", "../")):
        return value
    if base is None:
        raise Invalid(field_name, f"relative session path {value!r} needs the session's name")
    if value.startswith("./"):
        return f"{base}/{value[2:]}"
    parent = base.split("/")[:-1]
    rest = value[3:]
    while rest.startswith("../"):
        if not parent:
            raise Invalid(field_name, f"relative session path {value!r} goes above the top "
                                      f"namespace (from session {base!r})")
        parent, rest = parent[:-1], rest[3:]
    return "/".join([*parent, rest])


def otp_secret_bytes(value: str) -> bytes | None:
    """The key of a base32 OTP shared secret (padding optional, any case), None if invalid."""
    text = value.strip().replace(" ", "").upper()
    try:
        return base64.b32decode(text + "=" * (-len(text) % 8))
    except (binascii.Error, ValueError):
        return None


def check_otp_secret(value: str, field_name: str = "one_time_password_shared_secret") -> str:
    """A literal OTP shared secret is base32 of at least 128 bits; a reference is checked
    when it is rendered."""
    if REFERENCE_ONLY_RE.fullmatch(value):
        return value
    key = otp_secret_bytes(value)
    if key is None or len(key) < MIN_OTP_SECRET_BYTES:
        raise Invalid(
            field_name,
            f"{field_name} must be RFC 4648 base32 of at least {MIN_OTP_SECRET_BYTES * 8} bits "
            "(26 or more base32 characters), or a $$SCONE::secret:base32nopad$$ reference",
        )
    return value


def check_absolute_path(value: str, field_name: str) -> str:
    """An absolute, normalized POSIX path: no ``..``, ``.``, ``//`` or trailing ``/``."""
    if "\0" in value:
        raise Invalid(field_name, f"path {value!r} contains a NUL byte")
    if not value.startswith("/"):
        raise Invalid(field_name, f"path {value!r} is relative: use an absolute path")
    if ".." in value.split("/"):
        raise Invalid(field_name, f"path {value!r} contains '..': use a normalized path")
    if value != "/" and posixpath.normpath(value) != value:
        raise Invalid(
            field_name,
            f"path {value!r} is not normalized: write {posixpath.normpath(value)!r}",
        )
    return value


def hex_or_reference(value: str, pattern: re.Pattern[str], what: str, field_name: str) -> str:
    if pattern.fullmatch(value) or REFERENCE_ONLY_RE.fullmatch(value):
        return value.lower() if pattern.fullmatch(value) else value
    # a key is never echoed, not even a malformed one: it may be a typo of the real key
    shown = f"({len(value)} characters)" if "key" in what else repr(value)
    raise Invalid(field_name, f"invalid {what} {shown}: expected {_hex_len(pattern)} hex digits")


def _hex_len(pattern: re.Pattern[str]) -> int:
    return 64 if pattern is HEX64_RE else 32
