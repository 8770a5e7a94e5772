"""The seed document's two sessions load unchanged, with their references understood."""

from __future__ import annotations

from cloister.policy import Form, SecretKind, find_references, load_session
from support import MEASUREMENT, MEASUREMENT_REDIS, SEED_VARIABLES, seed_text


def test_flask_session_structure() -> None:
    session = load_session(seed_text("flask"), variables=SEED_VARIABLES)
    assert session.name == "flask-session-1"
    assert session.version == "0.3"
    assert session.access_policy.read == ("CREATOR",)
    assert session.access_policy.effective_create_sessions == ("CREATOR",)
    (service,) = session.services
    assert service.name == "flask_restapi"
    assert service.command == ("python3", "/fspf/encrypted-files/rest_api.py")
    assert dict(service.environment) == {"REDIS_HOST": "redis", "REDIS_PORT": "6379"}
    assert service.mrenclaves == (MEASUREMENT,)
    assert (service.fspf_path, service.fspf_key, service.fspf_tag) == (
        "/fspf/fs.fspf",
        "0f" * 32,
        "1e" * 16,
    )
    (image,) = session.images
    assert [f.path for f in image.injection_files] == [
        "/tls/redis-ca.crt",
        "/tls/client.crt",
        "/tls/client.key",
        "/tls/flask.crt",
        "/tls/flask.key",
    ]
    imports = {s.name: s.import_ for s in session.secrets if s.import_}
    assert {n: (i.session, i.secret) for n, i in imports.items()} == {
        "redis_client_key": ("redis-session-1", "redis_client_key"),
        "redis_client_cert": ("redis-session-1", "redis_client_cert"),
        "redis_ca_cert": ("redis-session-1", "redis_ca_cert"),
    }
    ca = session.secret("api_ca_cert")
    assert ca is not None and ca.kind is SecretKind.X509_CA and ca.export_public
    flask = session.secret("flask")
    assert flask is not None and flask.issuer == "api_ca_cert" and flask.dns_names == ("api",)


def test_flask_session_references() -> None:
    session = load_session(seed_text("flask"), variables=SEED_VARIABLES)
    names = {s.name for s in session.secrets}
    kinds = {"redis_ca_cert": "x509-ca", "redis_client_cert": "x509", "flask": "x509"}
    rendered = {}
    for injected in session.images[0].injection_files:
        (ref,) = find_references(injected.content or "", names)
        rendered[injected.path] = (ref.secret, ref.form_for(kinds[ref.secret]))
    assert rendered == {
        "/tls/redis-ca.crt": ("redis_ca_cert", Form.LEGACY_CHAIN),
        "/tls/client.crt": ("redis_client_cert", Form.CRT_PEM),
        "/tls/client.key": ("redis_client_cert", Form.KEY_PEM),
        "/tls/flask.crt": ("flask", Form.CRT_PEM),
        "/tls/flask.key": ("flask", Form.KEY_PEM),
    }


def test_redis_session_structure() -> None:
    session = load_session(seed_text("redis"), variables=SEED_VARIABLES)
    (service,) = session.services
    assert service.command[:5] == ("redis-server", "--port", "0", "--tls-port", "6379")
    assert "--tls-auth-clients" in service.command
    assert service.mrenclaves == (MEASUREMENT_REDIS,)
    exported = {s.name: [t.session for t in s.export] for s in session.secrets if s.export}
    assert exported == {
        "redis_client_key": ["flask-session-1"],
        "redis_client_cert": ["flask-session-1"],
        "redis_ca_cert": ["flask-session-1"],
    }
    redis = session.secret("redis")
    assert (
        redis is not None and redis.issuer == "redis_ca_cert" and redis.private_key == "redis_key"
    )


def test_current_reference_forms() -> None:
    text = (
        seed_text("redis")
        .replace("redis.crt$$", "redis:crt$$")
        .replace("redis.key$$", "redis:privatekey$$")
        .replace("redis_ca_cert.chain$$", "redis_ca_cert:crt$$")
    )
    session = load_session(text, variables=SEED_VARIABLES)
    names = {s.name for s in session.secrets}
    forms = [
        next(find_references(f.content or "", names)).form_for("x509")
        for f in session.images[0].injection_files
    ]
    assert forms == [Form.CRT_PEM, Form.CRT_PEM, Form.KEY_PEM]


def test_digest_is_stable_across_key_order_and_formatting() -> None:
    text = seed_text("redis")
    reordered = (
        "version: '0.3'\n" + text.replace('version: "0.3"\n', "").replace("# ", "#  ")
    ).replace("  read:\n   - CREATOR\n", "  read: [CREATOR]\n")
    a = load_session(text, variables=SEED_VARIABLES)
    b = load_session(reordered, variables=SEED_VARIABLES)
    assert a.digest == b.digest
    changed = load_session(text.replace("- redis\n", "- redis2\n"), variables=SEED_VARIABLES)
    assert changed.digest != a.digest


def test_numeric_looking_values_keep_their_text() -> None:
    """Template values are substituted before YAML reads them: digits must stay text."""
    values = SEED_VARIABLES | {"MRENCLAVE": "0" * 64, "SCONE_FSPF_TAG": "1" * 32}
    session = load_session(seed_text("flask").replace("6379", "06379"), variables=values)
    service = session.services[0]
    assert service.mrenclaves == ("0" * 64,)
    assert service.fspf_tag == "1" * 32
    assert service.environment["REDIS_PORT"] == "06379"


def test_tpm_pcr_pins_are_read_sorted_and_lower_case() -> None:
    pins = f"      7: {'AB' * 32}\n      0: {'0' * 64}\n"
    text = seed_text("redis") + "security:\n  attestation:\n    tpm_pcrs:\n" + pins
    session = load_session(text, variables=SEED_VARIABLES)
    assert session.security.attestation.extensions["tpm_pcrs"] == ((0, "0" * 64), (7, "ab" * 32))
