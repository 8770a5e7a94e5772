"""Secret values: generate each secret kind of a session, and render them where referenced.

- :func:`generate` turns a session's ``secrets:`` (:class:`cloister.policy.Secret`)
  into a :class:`SecretValue` each, in dependency order, honouring SCONE's
  update rules when given the previous version's values;
- :func:`render` gives the bytes of one reference (``$$SCONE::flask.crt$$``);
  :func:`render_text` / :func:`render_bytes` replace every reference in a string.

This package knows nothing of HTTP or storage: the CAS stores
:meth:`SecretValue.to_bytes` encrypted and resolves imports across sessions.
Exceptions name secrets and references, never their values.
"""

from cloister.secrets._generate import ASCII_ALPHABET, generate
from cloister.secrets._keys import DEFAULT_KEY_TYPE, KEY_TYPES
from cloister.secrets._render import render, render_bytes, render_text
from cloister.secrets._value import SecretValue
from cloister.secrets._x509 import CLOCK_SKEW, DEFAULT_VALIDITY

__all__ = [
    "ASCII_ALPHABET",
    "CLOCK_SKEW",
    "DEFAULT_KEY_TYPE",
    "DEFAULT_VALIDITY",
    "KEY_TYPES",
    "SecretValue",
    "generate",
    "render",
    "render_bytes",
    "render_text",
]
