"""Fuzz the policy loader and the reference renderer with hypothesis.

Invariant: on any input, :func:`cloister.policy.load_session` either returns a
session or raises :class:`cloister.errors.PolicyError` (``TemplateError`` is a
subclass); the renderers return or raise ``PolicyError``/``SecretError`` —
never another exception, never a hang (a 30 s alarm per example turns a hang
into a failure), and an error message never carries a secret value.

``make test`` runs a few hundred examples; ``make test-all`` adds the slow
cases (several thousand each; with the CAS endpoint fuzz ≥ 10,000 in total).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloister import errors
from cloister.policy import load_session, substitute_variables
from cloister.secrets import SecretValue, generate, render_bytes, render_text
from support import SEED_VARIABLES, seed_text

REPO = Path(__file__).resolve().parents[2]
PATIENT_POLICIES = REPO / "examples" / "patients" / "policies"

HANG_SECONDS = 30


@contextmanager
def no_hang() -> Iterator[None]:
    """Fail (not wait forever) when one example runs longer than HANG_SECONDS."""

    def alarm(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"one example ran longer than {HANG_SECONDS}s: a hang")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _seeds() -> list[str]:
    texts = [substitute_variables(seed_text(n), SEED_VARIABLES) for n in ("flask", "redis")]
    texts += [seed_text(n) for n in ("flask", "redis")]  # unsubstituted: $VAR left in
    if PATIENT_POLICIES.is_dir():
        texts += [p.read_text() for p in sorted(PATIENT_POLICIES.glob("*.yml"))]
    return texts


SEEDS = _seeds()

# --- mutations of real sessions ---------------------------------------------------------

_TOKENS = [
    ":", "- ", "  ", "\n", "\t", "'", '"', "[", "]", "{", "}", "&a", "*a", "!!python/object", "#",
    "$$SCONE::", "$$", ":crt$$", ".key$$", "$VAR", "${X}", "\x00", "\ufeff", "é", "0x", "-1",
    "1e999", "null", "~", "yes", "kind: ascii", "kind: binary", "kind: x509", "import:",
    "export:", "session:", "secret:", "predecessor: ", "mrenclaves: [", "size: 99999999",
    "key_type: RSA-1", "valid_for: -1d", "%", "---\n", "...\n", "? ", "|\n", ">-\n",
]


@st.composite
def mutated_seed(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "replace", "truncate",
                                   "indent", "swap"]))
        i = draw(st.integers(0, max(len(lines) - 1, 0)))
        if op == "delete" and lines:
            del lines[i]
        elif op == "duplicate" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent" and lines:
            lines[i] = draw(st.sampled_from(["", " ", "   ", "\t"])) + lines[i].lstrip()
        text = "\n".join(lines)
        pos = draw(st.integers(0, len(text)))
        if op == "insert":
            piece = draw(st.sampled_from(_TOKENS) | st.text(max_size=12))
            text = text[:pos] + piece + text[pos:]
        elif op == "replace" and text:
            end = min(len(text), pos + draw(st.integers(1, 8)))
            text = text[:pos] + draw(st.sampled_from(_TOKENS) | st.text(max_size=8)) + text[end:]
        elif op == "truncate":
            text = text[:pos]
    return text


_random_text = st.one_of(
    st.text(max_size=400),
    st.lists(st.sampled_from(_TOKENS) | st.text(max_size=6), max_size=60).map("".join),
    st.binary(max_size=400),
)


def _load(text: str | bytes) -> None:
    with no_hang():
        try:
            load_session(text)
        except errors.PolicyError as err:  # TemplateError included
            assert isinstance(err.message, str) and err.message
            assert all(isinstance(d, str) for d in err.details)


def _fuzz(strategy: st.SearchStrategy, check: Callable[..., None], examples: int) -> None:  # type: ignore[type-arg]
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(value: object) -> None:
        check(value)

    run()


def test_seeds_load() -> None:
    """Control: the unmutated seeds are valid (mutations start from real sessions).

    Templates get their variables first (the seed's values, plus a value for
    every other ``$VAR`` a patient policy template names), so every seed is loaded.
    """
    loaded = []
    for text in SEEDS:
        names = set(re.findall(r"(?<!\$)\$\{?([A-Z_][A-Z0-9_]*)", text))
        values = {name: "1" for name in names} | SEED_VARIABLES
        values |= {k: v for k, v in _TEMPLATE_VALUES.items() if k in names}
        loaded.append(load_session(substitute_variables(text, values)).name)
    assert len(loaded) == len(SEEDS) >= 4, loaded


#: values that must look like what they stand for (a port, a path) in the patient templates
_TEMPLATE_VALUES = {
    "API_PORT": "4996", "REDIS_PORT": "6379", "API_DIR": "/fspf/encrypted-files",
    "REDIS_TLS_DIR": "/dev/shm/redis-tls", "REDIS_DATA_DIR": "/var/lib/redis",
    "SCONE_FSPF_PATH": "/fspf/encrypted-files/fspf.pb",
}


def test_loader_random_text() -> None:
    _fuzz(_random_text, _load, 300)


def test_loader_mutated_seeds() -> None:
    _fuzz(mutated_seed(), _load, 300)


@pytest.mark.slow
def test_loader_random_text_many() -> None:
    _fuzz(_random_text, _load, 2500)


@pytest.mark.slow
def test_loader_mutated_seeds_many() -> None:
    _fuzz(mutated_seed(), _load, 2500)


# --- the reference renderer ---------------------------------------------------------------

_RENDER_SESSION = """\
name: render-fuzz
version: "0.3"
secrets:
  - name: pw
    kind: ascii
    size: 24
  - name: blob
    kind: binary
    size: 16
  - name: key
    kind: private-key
  - name: ca_key
    kind: private-key
  - name: ca
    kind: x509-ca
    private_key: ca_key
  - name: leaf
    kind: x509
    private_key: key
    issuer: ca
    dns: [leaf]
  - name: explicit
    kind: ascii
    value: "q$$u\\"ote"
"""

VALUES: dict[str, SecretValue] = generate(load_session(_RENDER_SESSION).secrets)
SECRET_NEEDLES = [VALUES["pw"].text or "", (VALUES["blob"].data or b"").hex()]

_SUFFIXES = [
    "", ".crt", ".key", ".chain", ":crt", ":privatekey", ":chain", ":hex", ".hex", ":base64",
    ":base64url", ":base32", ":base32nopad", ":bin", ":der", ":pem", ":crt:der", ":crt:pem",
    ":privatekey:der", ":privatekey:pem", ":pkcs12-with-private-key", ":pkcs8:pem", ":nope",
    "|escape(json)", ":crt|escape(json)", ":hex|escape(json)", "|escape(yaml)", "::", ".",
]
_NAMES = [*VALUES, "missing", "", "pw.crt", "leaf.key", " ", "$$"]


@st.composite
def template(draw: st.DrawFn) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 3))
        if kind == 0:
            parts.append(draw(st.text(max_size=20)))
        elif kind == 1:
            parts.append(draw(st.sampled_from(["$$", "$$SCONE::", "$SCONE::", "$$SCONE:", "$$$"])))
        else:
            name = draw(st.sampled_from(_NAMES) | st.text(max_size=8))
            suffix = draw(st.sampled_from(_SUFFIXES) | st.text(max_size=6))
            parts.append(f"$$SCONE::{name}{suffix}$$")
    return "".join(parts)


def _render(text: str) -> None:
    with no_hang():
        for render in (render_text, render_bytes):
            try:
                render(text, VALUES)
            except (errors.PolicyError, errors.SecretError) as err:
                shown = " ".join([err.message, *err.details])
                for needle in SECRET_NEEDLES:
                    assert needle not in shown, "a secret value in a renderer error"
                assert "PRIVATE KEY" not in shown


def test_renderer_controls() -> None:
    """Control: well-formed references do render (the fuzz reaches the real code paths)."""
    assert render_text("$$SCONE::pw$$", VALUES) == VALUES["pw"].text
    assert render_bytes("$$SCONE::blob$$", VALUES) == VALUES["blob"].data
    assert render_text("$$SCONE::leaf:crt$$", VALUES).startswith("-----BEGIN CERTIFICATE")


def test_renderer_random_templates() -> None:
    _fuzz(template(), _render, 300)


@pytest.mark.slow
def test_renderer_random_templates_many() -> None:
    _fuzz(template(), _render, 3000)


def test_control_character_is_a_policy_error_with_its_place() -> None:
    """Found by the fuzz: PyYAML's reader raised ReaderError (a CLI traceback) on \\x1f."""
    with pytest.raises(errors.PolicyError, match="line 3 column 5: control character #x001f"):
        load_session("name: a\nversion: '0.3'\nab: \x1f\n")
