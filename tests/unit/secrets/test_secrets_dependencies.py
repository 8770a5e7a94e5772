"""Dependency order, reference errors, cycles, imports, explicit certificates, updates."""

from __future__ import annotations

import pytest
from secrets_kit import K, ca, cert, imported, key, load_cert

from cloister.errors import PolicyError
from cloister.policy import Secret
from cloister.secrets import SecretValue, generate


def policy_error(secrets: list[Secret], **kw: object) -> PolicyError:
    with pytest.raises(PolicyError) as err:
        generate(secrets, **kw)  # type: ignore[arg-type]
    return err.value


# --- order and cycles -------------------------------------------------------------------


def test_result_follows_declaration_order_whatever_the_dependency_order() -> None:
    specs = [cert("leaf", "k", "mid"), ca("mid", "k", "root"), ca("root", "k"), key("k")]
    assert list(generate(specs)) == ["leaf", "mid", "root", "k"]


@pytest.mark.parametrize(
    ("specs", "cycle"),
    [
        ([key("k"), ca("a", "k", "b"), ca("b", "k", "a")], "a -> b -> a"),
        ([key("k"), ca("a", "k", "b"), ca("b", "k", "c"), ca("c", "k", "a")], "a -> b -> c -> a"),
        ([key("k"), ca("root", "k"), cert("leaf", "k", "b"), ca("b", "k", "c"),
          ca("c", "k", "b")], "b -> c -> b"),
    ],
)
def test_issuer_cycle_is_an_error_naming_it(specs: list[Secret], cycle: str) -> None:
    err = policy_error(specs)
    assert err.message == f"secrets depend on each other in a cycle: {cycle}"
    assert "omitting its 'issuer'" in err.details[0]


def test_long_issuer_chain_has_no_recursion_limit() -> None:
    depth = 1500
    specs = [key("k", "Ed25519"), ca("ca0", "k")]
    specs += [ca(f"ca{i}", "k", f"ca{i - 1}") for i in range(1, depth)]
    specs.reverse()
    values = generate(specs)
    assert len(values[f"ca{depth - 1}"].chain) == depth - 1


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([key("k"), cert("y", "k", "x")],
         "issuer 'x' of secret 'y' is not a secret of this session"),
        ([key("k"), cert("x", "k"), cert("y", "k", "x")],
         "issuer 'x' of secret 'y' is not an x509-ca (it is x509)"),
        ([key("k"), cert("y", "nokey")],
         "private_key 'nokey' of secret 'y' is not a secret of this session"),
        ([Secret(name="pw", kind=K.ASCII), cert("y", "pw")],
         "private_key 'pw' of secret 'y' is not a private-key (it is ascii)"),
        ([key("k"), ca("c", "k"), cert("y", "c")],
         "private_key 'c' of secret 'y' is not a private-key (it is x509-ca)"),
        ([key("k"), key("k")], "secret 'k' is defined twice: rename one of them"),
    ],
)
def test_reference_errors_name_the_reference(specs: list[Secret], message: str) -> None:
    assert policy_error(specs).message == message


def test_every_reference_problem_is_reported_at_once() -> None:
    err = policy_error([key("k"), cert("a", "missing"), cert("b", "k", "k"), cert("c", "k", "z")])
    assert err.lines() == [
        "private_key 'missing' of secret 'a' is not a secret of this session",
        "issuer 'k' of secret 'b' is not an x509-ca (it is private-key)",
        "issuer 'z' of secret 'c' is not a secret of this session",
    ]


# --- imports ------------------------------------------------------------------------------


def test_imported_ca_with_key_issues_local_certificates() -> None:
    redis = generate([key("redis_ca_key"), ca("redis_ca_cert", "redis_ca_key")])
    values = generate(
        [imported("their_ca", "redis", "redis_ca_cert"), key("k"), cert("c", "k", "their_ca")],
        imported={"their_ca": redis["redis_ca_cert"]},
    )
    assert values["their_ca"] == redis["redis_ca_cert"]
    assert values["c"].chain == (redis["redis_ca_cert"].cert_pem,)
    load_cert(values["c"].cert_pem or "").verify_directly_issued_by(
        load_cert(redis["redis_ca_cert"].cert_pem or "")
    )


def test_import_errors() -> None:
    redis = generate([key("redis_ca_key"), ca("redis_ca_cert", "redis_ca_key")])
    public_ca = redis["redis_ca_cert"].without_private_key()
    missing = policy_error([imported("x", "redis", "redis_ca_cert")])
    assert missing.message == (
        "imported secret 'x' (secret 'redis_ca_cert' of session 'redis') is not available: "
        "that session must exist and export it to this one"
    )
    wrong = policy_error([imported("x", "redis", "redis_ca_key", K.ASCII)],
                         imported={"x": redis["redis_ca_key"]})
    assert wrong.message == (
        "imported secret 'x' is a private-key secret, but this policy declares kind ascii"
    )
    not_ca = policy_error([imported("x", "redis", "redis_ca_key"), key("k"), cert("c", "k", "x")],
                          imported={"x": redis["redis_ca_key"]})
    assert not_ca.message == "issuer 'x' of secret 'c' is not an x509-ca (it is private-key)"
    keyless = policy_error([imported("x", "redis", "redis_ca_cert"), key("k"), cert("c", "k", "x")],
                           imported={"x": public_ca})
    assert keyless.message == "issuer 'x' of secret 'c' has no private key here, so it cannot sign"


# --- explicit certificate values --------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> dict[str, SecretValue]:
    return generate([
        key("ca_key"), ca("ca", "ca_key"), key("other_key"), ca("other", "other_key"),
        key("leaf_key"), cert("leaf", "leaf_key", "ca", dns=("api",)),
    ])


def pem(v: SecretValue) -> str:
    assert v.cert_pem is not None
    return v.cert_pem


def test_explicit_certificates(pki: dict[str, SecretValue]) -> None:
    leaf_key = pki["leaf_key"].key_pem or ""
    values = generate(
        [
            key("leaf_key", value=leaf_key), ca("ca", None, value=pem(pki["ca"])),
            cert("plain", None, value=pem(pki["leaf"])),
            cert("with_key", "leaf_key", "ca", value=pem(pki["leaf"])),
            cert("bundled", None, value=pem(pki["leaf"]) + leaf_key + pem(pki["ca"])),
        ]
    )
    assert values["ca"] == SecretValue.certificate(pem(pki["ca"]), ca=True)
    assert values["plain"] == SecretValue.certificate(pem(pki["leaf"]))
    assert values["with_key"] == SecretValue.certificate(
        pem(pki["leaf"]), key_pem=leaf_key, chain=(pem(pki["ca"]),)
    )
    assert values["bundled"] == values["with_key"]


def test_bad_explicit_certificates_are_clear_errors_without_echo(
    pki: dict[str, SecretValue],
) -> None:
    leaf, other_key = pem(pki["leaf"]), pki["other_key"].key_pem or ""
    cases: list[tuple[list[Secret], str]] = [
        ([cert("c", None, value="-----BEGIN CERTIFICATE-----\nSECRETMARK\n"
                                 "-----END CERTIFICATE-----\n")],
         "explicit value of x509 secret 'c' is not a PEM certificate"),
        ([cert("c", None, value="SECRETMARK")],
         "explicit value of x509 secret 'c' is not a PEM certificate"),
        ([ca("c", None, value=leaf)],
         "explicit value of x509-ca secret 'c' is not a CA certificate"),
        ([key("k", value=other_key), cert("c", "k", value=leaf)],
         "explicit value of secret 'c' does not match its private_key 'k'"),
        ([cert("c", None, value=leaf + other_key)],
         "explicit value of x509 secret 'c': the private key does not match the certificate"),
        ([cert("c", None, value=leaf + "-----BEGIN ENCRYPTED PRIVATE KEY-----\nSECRETMARK\n")],
         "explicit value of x509 secret 'c' holds an encrypted private key"),
        ([ca("o", None, value=pem(pki["other"])), cert("c", None, "o", value=leaf)],
         "explicit value of secret 'c' is not signed by its issuer 'o'"),
    ]
    for specs, expected in cases:
        err = policy_error(specs)
        assert err.message.startswith(expected), err.message
        shown = " ".join(err.lines())
        assert "SECRETMARK" not in shown
        assert leaf[30:90] not in shown and other_key[30:90] not in shown


# --- update semantics ---------------------------------------------------------------------------

OLD = [
    Secret(name="pw", kind=K.ASCII), Secret(name="blob", kind=K.BINARY),
    Secret(name="pw_resized", kind=K.ASCII), Secret(name="kind_changed", kind=K.ASCII),
    Secret(name="was_explicit", kind=K.ASCII, value="fixed"),
    key("mig", migrate=True), key("mig_old_only", migrate=True), key("mig_new_only"),
    key("nomig"), key("mig_retyped", "P-256", migrate=True),
    ca("ca", "mig"), cert("leaf", "mig", "ca", dns=("api",)),
]
NEW = [
    Secret(name="pw", kind=K.ASCII), Secret(name="blob", kind=K.BINARY),
    Secret(name="pw_resized", kind=K.ASCII, size=30), Secret(name="kind_changed", kind=K.BINARY),
    Secret(name="was_explicit", kind=K.ASCII), Secret(name="brand_new", kind=K.ASCII),
    key("mig", migrate=True), key("mig_old_only"), key("mig_new_only", migrate=True),
    key("nomig"), key("mig_retyped", "P-384", migrate=True),
    ca("ca", "mig"), cert("leaf", "mig", "ca", dns=("api",)),
]
#: secret → kept (True) or regenerated (False) on update
UPDATE_TABLE = {
    "pw": True, "blob": True, "pw_resized": False, "kind_changed": False, "was_explicit": False,
    "mig": True, "mig_old_only": False, "mig_new_only": False, "nomig": False,
    "mig_retyped": False, "ca": False, "leaf": False,
}


def test_update_keeps_and_regenerates_per_scone_rules() -> None:
    old = generate(OLD)
    new = generate(NEW, existing=old, previous=OLD)
    for name, kept in UPDATE_TABLE.items():
        assert (new[name] == old[name]) is kept, name
    assert "brand_new" in new
    # re-issued certificates of a migrated key keep its public key
    old_leaf, new_leaf = load_cert(pem(old["leaf"])), load_cert(pem(new["leaf"]))
    assert old_leaf.public_key() == new_leaf.public_key()
    assert old_leaf.serial_number != new_leaf.serial_number
    new_leaf.verify_directly_issued_by(load_cert(pem(new["ca"])))


def test_update_without_previous_specs_keeps_only_fitting_ascii_and_binary() -> None:
    old = generate(OLD)
    new = generate(NEW, existing=old)
    kept = {name for name in UPDATE_TABLE if new[name] == old[name]}
    # 'was_explicit' held 5 characters where the new spec wants 20: regenerated
    assert kept == {"pw", "blob"}


def test_explicit_value_in_new_version_always_wins() -> None:
    old = generate([Secret(name="pw", kind=K.ASCII)])
    spec = [Secret(name="pw", kind=K.ASCII, value="new-value")]
    assert generate(spec, existing=old, previous=spec)["pw"].text == "new-value"
