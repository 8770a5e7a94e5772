"""Every reference form rendered and parsed back; text substitution and its refusals."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from secrets_kit import K, ca, cert, imported, key, load_cert

from cloister.errors import PolicyError, SecretError
from cloister.policy import Form, Reference, Secret, find_references
from cloister.secrets import SecretValue, generate, render, render_bytes, render_text

SPECS = [
    Secret(name="pw", kind=K.ASCII),
    Secret(name="quoted", kind=K.ASCII, value='say "hi" \\ bye\n'),
    Secret(name="blob", kind=K.BINARY, value="fbff"),
    Secret(name="rand", kind=K.BINARY),
    key("k"), key("k_ed", "Ed25519"), key("k_rsa", "RSA-2048"),
    ca("root", "k"), ca("inter", "k_rsa", "root"),
    cert("leaf", "k_ed", "inter", dns=("api",)),
    cert("dotted.name", "k", "root"),
]


@pytest.fixture(scope="module")
def values() -> dict[str, SecretValue]:
    return generate(SPECS)


def ref(text: str) -> Reference:
    (reference,) = find_references(text, {s.name for s in SPECS})
    return reference


def out(text: str, values: dict[str, SecretValue]) -> bytes:
    return render(ref(text), values)


def pem_of(values: dict[str, SecretValue], name: str) -> str:
    pem = values[name].cert_pem
    assert pem is not None
    return pem


def certs(blob: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(blob) if blob else []


# --- ascii and binary -------------------------------------------------------------------------


def test_ascii_value(values: dict[str, SecretValue]) -> None:
    assert out("$$SCONE::pw$$", values) == (values["pw"].text or "").encode()


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [
        ("", b"\xfb\xff"), (":bin", b"\xfb\xff"), (".hex", b"fbff"), (":hex", b"fbff"),
        (":base64", b"+/8="), (":base64url", b"-_8="), (":base32", b"7P7Q===="),
        (":base32nopad", b"7P7Q"),
    ],
)
def test_binary_forms(suffix: str, expected: bytes, values: dict[str, SecretValue]) -> None:
    assert out(f"$$SCONE::blob{suffix}$$", values) == expected


def test_binary_forms_of_a_random_value_decode_back(values: dict[str, SecretValue]) -> None:
    data = values["rand"].data
    assert out("$$SCONE::rand:hex$$", values) == (data or b"").hex().encode()
    assert base64.b64decode(out("$$SCONE::rand:base64$$", values)) == data
    assert base64.urlsafe_b64decode(out("$$SCONE::rand:base64url$$", values)) == data
    assert base64.b32decode(out("$$SCONE::rand:base32$$", values)) == data
    nopad = out("$$SCONE::rand:base32nopad$$", values)
    assert b"=" not in nopad and base64.b32decode(nopad + b"=" * (-len(nopad) % 8)) == data


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["k", "k_ed", "k_rsa"])
@pytest.mark.parametrize("suffix", ["", ":pem", ":pkcs8:pem"])
def test_private_key_pem(name: str, suffix: str, values: dict[str, SecretValue]) -> None:
    blob = out(f"$$SCONE::{name}{suffix}$$", values)
    assert blob.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    assert blob.decode() == values[name].key_pem
    serialization.load_pem_private_key(blob, None)


@pytest.mark.parametrize("suffix", [":der", ":pkcs8:der"])
def test_private_key_der(suffix: str, values: dict[str, SecretValue]) -> None:
    der = serialization.load_der_private_key(out(f"$$SCONE::k_ed{suffix}$$", values), None)
    pem = serialization.load_pem_private_key((values["k_ed"].key_pem or "").encode(), None)
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    assert der.public_key().public_bytes(*raw) == pem.public_key().public_bytes(*raw)


# --- certificates -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ":crt", ":crt:pem", ".crt"])
def test_certificate_pem(suffix: str, values: dict[str, SecretValue]) -> None:
    assert out(f"$$SCONE::leaf{suffix}$$", values).decode() == pem_of(values, "leaf")


def test_certificate_der(values: dict[str, SecretValue]) -> None:
    der = out("$$SCONE::leaf:crt:der$$", values)
    assert x509.load_der_x509_certificate(der) == load_cert(pem_of(values, "leaf"))


@pytest.mark.parametrize(
    "suffix", [".key", ":privatekey", ":privatekey:pem", ":privatekey:pkcs8:pem"]
)
def test_certificate_private_key_pem(suffix: str, values: dict[str, SecretValue]) -> None:
    assert out(f"$$SCONE::leaf{suffix}$$", values).decode() == values["k_ed"].key_pem


@pytest.mark.parametrize("suffix", [":privatekey:der", ":privatekey:pkcs8:der"])
def test_certificate_private_key_der(suffix: str, values: dict[str, SecretValue]) -> None:
    assert out(f"$$SCONE::leaf{suffix}$$", values) == out("$$SCONE::k_ed:der$$", values)


def test_chain_is_issuers_only_intermediate_first(values: dict[str, SecretValue]) -> None:
    chain = certs(out("$$SCONE::leaf:chain$$", values))
    assert chain == [load_cert(pem_of(values, "inter")), load_cert(pem_of(values, "root"))]
    load_cert(pem_of(values, "leaf")).verify_directly_issued_by(chain[0])
    chain[0].verify_directly_issued_by(chain[1])


def test_legacy_chain_is_root_first_and_the_certificate_last(
    values: dict[str, SecretValue],
) -> None:
    chain = certs(out("$$SCONE::leaf.chain$$", values))
    assert chain == [load_cert(pem_of(values, n)) for n in ("root", "inter", "leaf")]


def test_chains_of_a_self_signed_root(values: dict[str, SecretValue]) -> None:
    assert out("$$SCONE::root:chain$$", values) == b""  # no issuers: documented as empty
    assert certs(out("$$SCONE::root.chain$$", values)) == [load_cert(pem_of(values, "root"))]


def test_pkcs12_holds_key_certificate_and_chain(values: dict[str, SecretValue]) -> None:
    blob = out("$$SCONE::leaf:pkcs12-with-private-key$$", values)
    p12_key, p12_cert, extra = pkcs12.load_key_and_certificates(blob, None)
    assert p12_cert == load_cert(pem_of(values, "leaf"))
    assert extra == [load_cert(pem_of(values, "inter")), load_cert(pem_of(values, "root"))]
    assert p12_key is not None
    assert p12_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode() == values["k_ed"].key_pem


def test_name_with_dots_and_legacy_suffix(values: dict[str, SecretValue]) -> None:
    reference = ref("$$SCONE::dotted.name.crt$$")
    assert (reference.secret, reference.form_for("x509")) == ("dotted.name", Form.CRT_PEM)
    assert out("$$SCONE::dotted.name.crt$$", values).decode() == pem_of(values, "dotted.name")


# --- escape(json) -----------------------------------------------------------------------------


def test_escape_json(values: dict[str, SecretValue]) -> None:
    escaped = out("$$SCONE::quoted|escape(json)$$", values)
    assert escaped == b'say \\"hi\\" \\\\ bye\\n'
    assert json.loads(b'"' + escaped + b'"') == values["quoted"].text
    pem = out("$$SCONE::leaf.crt|escape(json)$$", values)
    assert b"\n" not in pem and json.loads(b'"' + pem + b'"') == pem_of(values, "leaf")


def test_escape_json_of_non_text_bytes_is_refused(values: dict[str, SecretValue]) -> None:
    with pytest.raises(SecretError, match=r"binary data cannot be JSON-escaped"):
        out("$$SCONE::blob|escape(json)$$", values)


# --- refusals ---------------------------------------------------------------------------------


def test_unknown_secret_and_wrong_form_name_the_reference(values: dict[str, SecretValue]) -> None:
    with pytest.raises(SecretError) as err:
        render(Reference("$$SCONE::nope$$", "nope", "", None), values)
    assert err.value.message == "$$SCONE::nope$$ names secret 'nope', which has no value here"
    cases = {
        "$$SCONE::pw:hex$$": "$$SCONE::pw:hex$$: an ascii secret has no form ':hex'",
        "$$SCONE::k:crt$$": "$$SCONE::k:crt$$: a private-key secret has no form ':crt'",
        "$$SCONE::blob.crt$$": "$$SCONE::blob.crt$$: a binary secret has no form '.crt'",
    }
    for text, message in cases.items():
        with pytest.raises(SecretError) as err:
            out(text, values)
        assert err.value.message == message
        assert err.value.details[0].startswith("use one of: ")
        assert (values["pw"].text or "") not in " ".join(err.value.lines())


def test_private_key_not_visible_after_import_without_key(values: dict[str, SecretValue]) -> None:
    mine = generate([imported("ca", "s", "root")],
                    imported={"ca": values["root"].without_private_key()})
    with pytest.raises(SecretError, match=r"private key of secret 'ca' is not available"):
        render_text("$$SCONE::ca.key$$", mine)
    assert render_text("$$SCONE::ca.crt$$", mine) == pem_of(values, "root")


# --- whole strings ----------------------------------------------------------------------------


def test_render_text_replaces_every_reference(values: dict[str, SecretValue]) -> None:
    template = "--key=$$SCONE::blob:hex$$ pw=$$SCONE::pw$$ $$SCONE::blob:base32nopad$$ $x $$"
    expected = f"--key=fbff pw={values['pw'].text} 7P7Q $x $$"
    assert render_text(template, values) == expected
    assert render_text("no references", values) == "no references"
    assert render_text("$$SCONE::leaf.chain$$", values, {s.name for s in SPECS}).count(
        "BEGIN CERTIFICATE"
    ) == 3


@pytest.mark.parametrize(
    "text",
    ["$$SCONE::blob$$", "x=$$SCONE::blob:bin$$", "$$SCONE::k:der$$", "$$SCONE::leaf:crt:der$$",
     "$$SCONE::leaf:pkcs12-with-private-key$$", "$$SCONE::blob|escape(json)$$"],
)
def test_render_text_refuses_binary_forms(text: str, values: dict[str, SecretValue]) -> None:
    with pytest.raises(SecretError) as err:
        render_text(text, values)
    assert "renders binary data, which cannot go in text" in err.value.message
    assert err.value.message.startswith("$$SCONE::")


def test_render_bytes_allows_binary_forms_in_files(values: dict[str, SecretValue]) -> None:
    assert render_bytes("[$$SCONE::blob$$]", values) == b"[\xfb\xff]"
    der = render_bytes("$$SCONE::leaf:crt:der$$", values)
    assert x509.load_der_x509_certificate(der) == load_cert(pem_of(values, "leaf"))


def test_bad_reference_syntax_is_a_policy_error(values: dict[str, SecretValue]) -> None:
    with pytest.raises(PolicyError, match=r"only \|escape\(json\) is known"):
        render_text("$$SCONE::pw|escape(xml)$$", values)
