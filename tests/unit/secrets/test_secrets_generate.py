"""Generation of every secret kind and key type, explicit values, ordering and errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from secrets_kit import K, ca, cert, ext, key, load_cert

from cloister.errors import PolicyError
from cloister.policy import Secret
from cloister.policy._model import Invalid
from cloister.secrets import ASCII_ALPHABET, CLOCK_SKEW, DEFAULT_VALIDITY, SecretValue, generate

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def cn(c: x509.Certificate) -> str:
    return str(c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


# --- ascii and binary ---------------------------------------------------------------


def test_ascii_default_size_is_20_printable_and_fresh_each_time() -> None:
    spec = [Secret(name="pw", kind=K.ASCII)]
    a, b = generate(spec)["pw"], generate(spec)["pw"]
    assert a.kind is K.ASCII and a.text is not None and b.text is not None
    assert len(a.text) == 20 and set(a.text) <= set(ASCII_ALPHABET)
    assert all(c.isprintable() and not c.isspace() for c in ASCII_ALPHABET)
    assert not set(ASCII_ALPHABET) & set("\"'\\`$ ")
    assert a.text != b.text


def test_ascii_and_binary_sizes() -> None:
    values = generate([
        Secret(name="a", kind=K.ASCII, size=64),
        Secret(name="b", kind=K.BINARY),
        Secret(name="c", kind=K.BINARY, size=32),
    ])
    assert values["a"].text is not None and len(values["a"].text) == 64
    assert values["b"].data is not None and len(values["b"].data) == 20
    assert values["c"].data is not None and len(values["c"].data) == 32


def test_explicit_ascii_and_binary_values() -> None:
    values = generate([
        Secret(name="a", kind=K.ASCII, value="hello world"),
        Secret(name="b", kind=K.BINARY, value="00FF1a"),
    ])
    assert values["a"] == SecretValue.ascii("hello world")
    assert values["b"] == SecretValue.binary(b"\x00\xff\x1a")


@pytest.mark.parametrize("bad", ["zz-not-hex-SECRETMARK", "abc", ""])
def test_explicit_binary_that_is_not_hex_is_refused_without_echo(bad: str) -> None:
    # the model refuses malformed hex when the policy loads; the generator checks again
    try:
        secret = Secret(name="b", kind=K.BINARY, value=bad)
    except Invalid as invalid:
        assert "written as hex digits" in invalid.message
        assert "SECRETMARK" not in invalid.message
        return
    with pytest.raises(PolicyError) as err:
        generate([secret])
    assert err.value.message.startswith("explicit value of binary secret 'b' is not hex")
    assert "SECRETMARK" not in " ".join(err.value.lines())


# --- private keys ----------------------------------------------------------------------

KEY_CHECKS: dict[str | None, Callable[[object], bool]] = {
    None: lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1",
    "P-256": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1",
    "P-384": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp384r1",
    "Ed25519": lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
    "RSA-2048": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048,
    "RSA-3072": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 3072,
}


@pytest.mark.parametrize("key_type", list(KEY_CHECKS))
def test_private_key_of_each_type_is_pkcs8_pem(key_type: str | None) -> None:
    value = generate([key("k", key_type)])["k"]
    assert value.kind is K.PRIVATE_KEY and value.key_pem is not None
    assert value.key_pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    loaded = serialization.load_pem_private_key(value.key_pem.encode(), None)
    assert KEY_CHECKS[key_type](loaded)


@pytest.mark.parametrize("key_type", ["P-256", "P-384", "Ed25519", "RSA-2048"])
def test_explicit_private_key_is_kept_and_normalised_to_pkcs8(key_type: str) -> None:
    original = generate([key("k", key_type)])["k"].key_pem
    assert original is not None
    loaded = serialization.load_pem_private_key(original.encode(), None)
    values = generate([key("k", key_type, value=original), key("free", value=original)])
    assert values["k"].key_pem == original == values["free"].key_pem
    if key_type != "Ed25519":  # traditional OpenSSL format is accepted too
        traditional = loaded.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ).decode()
        assert "BEGIN PRIVATE KEY" not in traditional
        assert generate([key("k", value=traditional)])["k"].key_pem == original


def test_bad_explicit_private_keys_are_clear_policy_errors_without_echo() -> None:
    good = generate([key("k", "P-384")])["k"].key_pem
    assert good is not None
    encrypted = serialization.load_pem_private_key(good.encode(), None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    ).decode()
    cases = {
        "-----BEGIN PRIVATE KEY-----\nSECRETMARK\n-----END PRIVATE KEY-----\n":
            "explicit value of private-key secret 'k' is not a PEM private key",
        "SECRETMARK": "explicit value of private-key secret 'k' is not a PEM private key",
        encrypted: "explicit value of private-key secret 'k' is encrypted",
        good: "explicit value of private-key secret 'k' is a P-384 key but key_type says P-256",
    }
    for text, expected in cases.items():
        with pytest.raises(PolicyError) as err:
            generate([key("k", "P-256", value=text)])
        assert err.value.message.startswith(expected)
        assert "SECRETMARK" not in str(err.value) and good[40:80] not in str(err.value)


# --- certificates ------------------------------------------------------------------------


def test_self_signed_ca_profile() -> None:
    values = generate([key("ca_key"), ca("root", "ca_key")], now=NOW)
    value = values["root"]
    assert value.kind is K.X509_CA and value.chain == ()
    assert value.key_pem == values["ca_key"].key_pem
    c = load_cert(value.cert_pem or "")
    assert cn(c) == "root" and c.issuer == c.subject
    c.verify_directly_issued_by(c)
    bc = ext(c, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    ku = ext(c, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert ku.value.digital_signature
    ski = ext(c, x509.SubjectKeyIdentifier).value
    assert ext(c, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    assert c.signature_hash_algorithm is not None
    assert c.signature_hash_algorithm.name == "sha256"
    assert c.not_valid_before_utc == NOW - CLOCK_SKEW
    assert c.not_valid_after_utc == NOW + DEFAULT_VALIDITY
    assert 0 < c.serial_number < 2**159
    with pytest.raises(x509.ExtensionNotFound):
        ext(c, x509.ExtendedKeyUsage)


@pytest.mark.parametrize(
    ("endpoint", "usages"),
    [
        ("server", [ExtendedKeyUsageOID.SERVER_AUTH]),
        ("client", [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (None, [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
    ],
)
def test_leaf_profile_per_endpoint(
    endpoint: str | None, usages: list[x509.ObjectIdentifier]
) -> None:
    dns = () if endpoint == "client" else ("api", "api.example")
    ips = ("127.0.0.1", "::1")
    values = generate(
        [
            cert("leaf", "leaf_key", "ca", dns=dns, ips=ips, endpoint=endpoint,
                 valid_for=timedelta(days=90)),
            key("leaf_key"), ca("ca", "ca_key"), key("ca_key"),
        ],
        now=NOW,
    )
    leaf, root = values["leaf"], load_cert(values["ca"].cert_pem or "")
    c = load_cert(leaf.cert_pem or "")
    assert leaf.kind is K.X509 and leaf.chain == (values["ca"].cert_pem,)
    c.verify_directly_issued_by(root)
    assert c.issuer == root.subject
    assert cn(c) == (dns[0] if dns else "leaf")
    bc = ext(c, x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ku = ext(c, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not ku.value.key_encipherment  # EC key
    assert list(ext(c, x509.ExtendedKeyUsage).value) == usages
    san = ext(c, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == list(dns)
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == list(ips)
    root_ski = ext(root, x509.SubjectKeyIdentifier).value.digest
    assert ext(c, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert c.not_valid_after_utc == NOW + timedelta(days=90)
    assert c.not_valid_before_utc < NOW


def test_common_name_explicit_and_defaults() -> None:
    values = generate([
        key("k"),
        cert("named", "k", common_name="Patients API"),
        cert("by_dns", "k", dns=("redis", "cache")),
        cert("by_name", "k"),
        cert("long_" + "x" * 100, "k"),
    ])
    assert cn(load_cert(values["named"].cert_pem or "")) == "Patients API"
    assert cn(load_cert(values["by_dns"].cert_pem or "")) == "redis"
    assert cn(load_cert(values["by_name"].cert_pem or "")) == "by_name"
    assert cn(load_cert(values["long_" + "x" * 100].cert_pem or "")) == ("long_" + "x" * 100)[:64]


def test_self_signed_leaf_has_empty_chain() -> None:
    values = generate([key("k"), cert("self", "k", dns=("api",))])
    c = load_cert(values["self"].cert_pem or "")
    c.verify_directly_issued_by(c)
    assert values["self"].chain == ()
    assert ext(c, x509.BasicConstraints).value.ca is False


@pytest.mark.parametrize("ca_type", ["P-256", "P-384", "Ed25519", "RSA-2048", "RSA-3072"])
@pytest.mark.parametrize("leaf_type", ["P-256", "Ed25519", "RSA-2048"])
def test_every_key_type_signs_and_is_signed(ca_type: str, leaf_type: str) -> None:
    values = generate([
        key("ca_key", ca_type), ca("ca", "ca_key"),
        key("leaf_key", leaf_type), cert("leaf", "leaf_key", "ca", dns=("api",)),
    ])
    root, leaf = load_cert(values["ca"].cert_pem or ""), load_cert(values["leaf"].cert_pem or "")
    leaf.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)
    if ca_type == "Ed25519":
        assert leaf.signature_hash_algorithm is None
    else:
        assert isinstance(leaf.signature_hash_algorithm, hashes.SHA256)
    assert ext(leaf, x509.KeyUsage).value.key_encipherment is leaf_type.startswith("RSA")


def test_intermediate_ca_chain_is_intermediates_then_root() -> None:
    values = generate([
        cert("leaf", "k", "inter", dns=("api",)),
        ca("inter", "k", "root"),
        ca("root", "k"),
        key("k"),
    ])
    root, inter = values["root"].cert_pem, values["inter"].cert_pem
    assert values["inter"].chain == (root,)
    assert values["leaf"].chain == (inter, root)
    load_cert(inter or "").verify_directly_issued_by(load_cert(root or ""))
    load_cert(values["leaf"].cert_pem or "").verify_directly_issued_by(load_cert(inter or ""))
    assert ext(load_cert(inter or ""), x509.BasicConstraints).value.ca is True


def test_leaf_never_outlives_its_issuer() -> None:
    values = generate(
        [key("k"), ca("ca", "k", valid_for=timedelta(days=30)),
         cert("leaf", "k", "ca", valid_for=timedelta(days=365))],
        now=NOW,
    )
    leaf = load_cert(values["leaf"].cert_pem or "")
    assert leaf.not_valid_after_utc == NOW + timedelta(days=30)


def test_random_serials_differ() -> None:
    values = generate([key("k")] + [cert(f"c{i}", "k") for i in range(8)])
    serials = {load_cert(values[f"c{i}"].cert_pem or "").serial_number for i in range(8)}
    assert len(serials) == 8 and all(0 < s < 2**159 for s in serials)


def test_naive_now_is_taken_as_utc() -> None:
    values = generate([key("k"), cert("c", "k")], now=NOW.replace(tzinfo=None))
    assert load_cert(values["c"].cert_pem or "").not_valid_before_utc == NOW - CLOCK_SKEW
