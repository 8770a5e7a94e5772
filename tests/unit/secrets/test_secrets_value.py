"""SecretValue: canonical serialisation, public parts, and a repr that hides secrets."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from secrets_kit import K, ca, cert, key, load_cert

from cloister.errors import SecretError
from cloister.policy import Secret
from cloister.secrets import SecretValue, generate


@pytest.fixture(scope="module")
def values() -> dict[str, SecretValue]:
    return generate([
        Secret(name="pw", kind=K.ASCII, value="SECRETMARK-ascii"),
        Secret(name="blob", kind=K.BINARY, value="5345435245544d41524b"),  # "SECRETMARK"
        key("k"), ca("ca", "k"), cert("leaf", "k", "ca", dns=("api",)),
    ])


def test_round_trip_of_every_kind(values: dict[str, SecretValue]) -> None:
    for name, value in values.items():
        blob = value.to_bytes()
        assert SecretValue.from_bytes(blob) == value, name
        assert SecretValue.from_bytes(blob).to_bytes() == blob


def test_serialisation_is_canonical_json(values: dict[str, SecretValue]) -> None:
    blob = values["leaf"].to_bytes()
    doc = json.loads(blob)
    assert blob == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert doc["kind"] == "x509" and doc["chain"] == [values["ca"].cert_pem]
    assert json.loads(values["blob"].to_bytes())["data"] == "5345435245544d41524b"


@pytest.mark.parametrize(
    "blob",
    [
        b"", b"not json SECRETMARK", b"[]", b'{"format":2,"kind":"ascii","text":"SECRETMARK"}',
        b'{"format":1,"kind":"nope","text":"SECRETMARK"}',
        b'{"format":1,"kind":"ascii"}',
        b'{"format":1,"kind":"ascii","text":"SECRETMARK","data":"00"}',
        b'{"format":1,"kind":"binary","data":"SECRETMARK"}',
        b'{"format":1,"kind":"ascii","text":"SECRETMARK","extra":1}',
        b'{"format":1,"kind":"x509","cert":"SECRETMARK","chain":"x"}',
        b'{"format":1,"kind":"ascii","text":7}',
    ],
)
def test_malformed_blobs_are_refused_without_echo(blob: bytes) -> None:
    with pytest.raises(SecretError) as err:
        SecretValue.from_bytes(blob)
    assert err.value.message == "stored secret value is malformed"
    assert "SECRETMARK" not in repr(err.value.__cause__)


def test_repr_never_shows_material(values: dict[str, SecretValue]) -> None:
    for value in values.values():
        shown = repr(value) + str(value) + f"{value}" + repr([value])
        assert "SECRETMARK" not in shown and "BEGIN" not in shown
        for material in (value.key_pem, value.cert_pem):
            if material is not None:
                assert material[30:60] not in shown
    assert repr(values["pw"]) == "<SecretValue ascii (hidden)>"
    assert repr(values["leaf"]).startswith("<SecretValue x509 sha256=")
    assert repr(values["leaf"]).endswith("with key, chain of 1>")


def test_public_parts(values: dict[str, SecretValue]) -> None:
    assert values["leaf"].public_part() == values["leaf"].cert_pem
    assert values["ca"].public_part() == values["ca"].cert_pem
    public = values["k"].public_part()
    assert public.startswith("-----BEGIN PUBLIC KEY-----")
    assert "PRIVATE" not in public
    loaded = serialization.load_pem_public_key(public.encode())
    assert loaded == load_cert(values["ca"].cert_pem or "").public_key()
    for name in ("pw", "blob"):
        with pytest.raises(SecretError) as err:
            values[name].public_part()
        assert err.value.message.endswith("has no public part: it cannot be exported publicly")
        assert "SECRETMARK" not in " ".join(err.value.lines())


def test_without_private_key(values: dict[str, SecretValue]) -> None:
    bare = values["leaf"].without_private_key()
    assert bare.key_pem is None and bare.cert_pem == values["leaf"].cert_pem
    assert bare.chain == values["leaf"].chain
    with pytest.raises(SecretError):
        values["k"].without_private_key()


def test_constructor_refuses_fields_of_another_kind() -> None:
    with pytest.raises(ValueError, match="missing"):
        SecretValue(K.ASCII)
    with pytest.raises(ValueError, match="unexpected"):
        SecretValue(K.PRIVATE_KEY, key_pem="x", chain=("y",))
