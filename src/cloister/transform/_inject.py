"""``--inject PATH=SECRET_REF``: files the transformed program reads, filled from secrets
the generated policy creates.

A reference is ``NAME`` (a random ASCII secret, e.g. a token) or ``NAME:FORM`` with
FORM one of ``crt``, ``privatekey``, ``chain`` (a TLS certificate ``NAME`` with key
``NAME_key``, issued by the bundle's CA, whose certificate is public) — the SCONE
``$$SCONE::NAME:FORM$$`` forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloister import errors

CERT_FORMS = ("crt", "privatekey", "chain")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Injection:
    """One injected file: where the program reads it, and which secret fills it."""

    path: str
    secret: str
    form: str | None

    @property
    def reference(self) -> str:
        return f"$$SCONE::{self.secret}{':' + self.form if self.form else ''}$$"

    @property
    def is_private(self) -> bool:
        return self.form in (None, "privatekey")


def parse_injection(text: str) -> Injection:
    """``/tls/app.key=app:privatekey`` → Injection; ConfigError naming what is wrong."""
    path, sep, ref = text.partition("=")
    if not sep or not path or not ref:
        raise errors.ConfigError(
            f"--inject {text!r}: write --inject PATH=SECRET or PATH=SECRET:crt|privatekey|chain"
        )
    if not path.startswith("/"):
        raise errors.ConfigError(f"--inject {text!r}: the path must be absolute")
    secret, _, form = ref.partition(":")
    if not _NAME.match(secret):
        raise errors.ConfigError(
            f"--inject {text!r}: secret name {secret!r} must be letters, digits and _"
        )
    if form and form not in CERT_FORMS:
        raise errors.ConfigError(
            f"--inject {text!r}: unknown form {form!r}", details=[f"use one of {CERT_FORMS}"]
        )
    return Injection(path, secret, form or None)
