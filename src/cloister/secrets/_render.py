"""Render a secret in the form a reference asks for (``.crt``, ``:chain``, ``:base64`` …).

Forms (see :class:`cloister.policy.Form`):
- ascii: the text; binary: the raw bytes, ``hex`` (lower case), ``base64``
  and ``base64url`` (RFC 4648, padded), ``base32`` (padded), ``base32nopad``;
- private keys: PKCS#8 PEM or DER;
- certificates: the certificate PEM or DER, the private key (when this
  session may see it), ``:chain`` = the issuers' certificates, intermediates
  first and the root last, *without* the certificate itself — empty for a
  self-signed certificate; legacy ``.chain`` = root first … the certificate
  itself last (so a self-signed CA's ``.chain`` is its own certificate);
  ``:pkcs12-with-private-key`` = an unencrypted PKCS#12 of key, certificate
  and chain.
- ``|escape(json)`` escapes the rendered text as the inside of a JSON string
  (no surrounding quotes).

Errors name the reference (``$$SCONE::name:form$$``), never a value.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Container, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from cloister.errors import PolicyError, SecretError
from cloister.policy._refs import Form, Reference, ReferenceSyntaxError, find_references
from cloister.secrets import _keys
from cloister.secrets._value import SecretValue


def render(reference: Reference, values: Mapping[str, SecretValue]) -> bytes:
    """The bytes ``reference`` stands for, given the session's secret ``values``."""
    value = values.get(reference.secret)
    if value is None:
        raise SecretError(
            f"{reference.text} names secret {reference.secret!r}, which has no value here",
            details=["declare the secret under 'secrets:' (or import it)"],
        )
    form = reference.form_for(value.kind.value)
    if form is None:
        allowed = ", ".join(reference.allowed_suffixes(value.kind.value))
        raise SecretError(
            f"{reference.text}: {_a(value.kind.value)} secret has no form "
            f"{reference.suffix or '(none)'!r}",
            details=[f"use one of: {allowed}"],
        )
    rendered = _RENDERERS[form](value, reference)
    if reference.escape == "json":
        try:
            text = rendered.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(
                f"{reference.text}: binary data cannot be JSON-escaped",
                details=["render it as text first, e.g. :hex or :base64"],
            ) from None
        rendered = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8")
    return rendered


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiox" else f"a {kind}"


def render_text(
    template: str,
    values: Mapping[str, SecretValue],
    secret_names: Container[str] | None = None,
) -> str:
    """``template`` with every reference replaced; binary forms are refused.

    For environment values, command arguments and text files.  ``secret_names``
    (default: the keys of ``values``) decides how ``name.suffix`` is split.
    """
    return _substitute(template, values, secret_names, text_only=True).decode("utf-8")


def render_bytes(
    template: str,
    values: Mapping[str, SecretValue],
    secret_names: Container[str] | None = None,
) -> bytes:
    """``template`` (UTF-8) with every reference replaced, binary forms allowed.

    For injected file content, which may be DER, PKCS#12 or raw bytes.
    """
    return _substitute(template, values, secret_names, text_only=False)


def _substitute(
    template: str,
    values: Mapping[str, SecretValue],
    secret_names: Container[str] | None,
    *,
    text_only: bool,
) -> bytes:
    names: Container[str] = values.keys() if secret_names is None else secret_names
    out: list[bytes] = []
    position = 0
    try:
        references = list(find_references(template, names))
    except ReferenceSyntaxError as err:
        raise PolicyError(str(err)) from None
    for reference in references:
        start = template.index(reference.text, position)
        out.append(template[position:start].encode("utf-8"))
        position = start + len(reference.text)
        value = values.get(reference.secret)
        form = None if value is None else reference.form_for(value.kind.value)
        if text_only and form is not None and form.is_binary:
            raise SecretError(
                f"{reference.text} renders binary data, which cannot go in text "
                "(environment, command, text file)",
                details=["use a text form such as :hex, :base64, :crt or :privatekey"],
            )
        rendered = render(reference, values)
        if text_only:
            _check_text(rendered, reference)
        out.append(rendered)
    out.append(template[position:].encode("utf-8"))
    return b"".join(out)


def _check_text(rendered: bytes, reference: Reference) -> None:
    try:
        text = rendered.decode("utf-8")
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise SecretError(f"{reference.text} renders bytes that are not text")


# --- one function per form ------------------------------------------------------


def _text(value: SecretValue, ref: Reference) -> bytes:
    assert value.text is not None
    return value.text.encode("utf-8")


def _data(value: SecretValue) -> bytes:
    assert value.data is not None
    return value.data


def _key(value: SecretValue, ref: Reference) -> _keys.PrivateKey:
    if value.key_pem is None:
        raise SecretError(
            f"{ref.text}: the private key of secret {ref.secret!r} is not available "
            "in this session",
            details=["the exporting session must export the private key too"],
        )
    return _keys.load_pem(value.key_pem)


def _cert(value: SecretValue) -> x509.Certificate:
    return value.certificate_object()


def _pems(pems: list[str]) -> bytes:
    return "".join(p if p.endswith("\n") else p + "\n" for p in pems).encode("ascii")


def _pkcs12(value: SecretValue, ref: Reference) -> bytes:
    key = _key(value, ref)
    chain = [x509.load_pem_x509_certificate(p.encode("ascii")) for p in value.chain]
    return pkcs12.serialize_key_and_certificates(
        ref.secret.encode("utf-8"), key, _cert(value), chain or None,
        serialization.NoEncryption(),
    )


def _chain(value: SecretValue, ref: Reference) -> bytes:
    return _pems(list(value.chain))


def _legacy_chain(value: SecretValue, ref: Reference) -> bytes:
    assert value.cert_pem is not None
    return _pems([*reversed(value.chain), value.cert_pem])


def _key_pem(value: SecretValue, ref: Reference) -> bytes:
    if value.key_pem is None:
        _key(value, ref)  # raises: the key is not available
    assert value.key_pem is not None
    # a stored key is PKCS#8 PEM already (SecretValue's invariant): no parse and re-encode
    return value.key_pem.encode("ascii")


def _crt_pem(value: SecretValue, ref: Reference) -> bytes:
    assert value.cert_pem is not None
    return _pems([value.cert_pem])


_RENDERERS: dict[Form, Callable[[SecretValue, Reference], bytes]] = {
    Form.VALUE: _text,
    Form.BIN: lambda v, r: _data(v),
    Form.HEX: lambda v, r: _data(v).hex().encode("ascii"),
    Form.BASE64: lambda v, r: base64.b64encode(_data(v)),
    Form.BASE64URL: lambda v, r: base64.urlsafe_b64encode(_data(v)),
    Form.BASE32: lambda v, r: base64.b32encode(_data(v)),
    Form.BASE32NOPAD: lambda v, r: base64.b32encode(_data(v)).rstrip(b"="),
    Form.KEY_PEM: _key_pem,
    Form.KEY_DER: lambda v, r: _keys.to_der(_key(v, r)),
    Form.CRT_PEM: _crt_pem,
    Form.CRT_DER: lambda v, r: _cert(v).public_bytes(serialization.Encoding.DER),
    Form.CHAIN: _chain,
    Form.LEGACY_CHAIN: _legacy_chain,
    Form.PKCS12: _pkcs12,
}
