"""The seed's flask and redis sessions: generate their secrets, render their files, shake hands.

The secret sections are the seed document's (shared/reference/seed-confidential-flask.md)
verbatim; the injection files are those the seed's services read.  What the CAS
hands the flask session on import is modelled as SCONE does it: the redis CA
certificate without its key (``redis_ca_key`` is not exported), the client
certificate with its key (``redis_client_key`` is exported).
"""

from __future__ import annotations

import ssl

import pytest
from cryptography import x509
from secrets_kit import connect, load_cert, memfile, tls_server

from cloister.policy import Session, load_session
from cloister.secrets import SecretValue, generate, render_bytes, render_text

VARIABLES = {"FLASK_SESSION": "flask-session-1", "REDIS_SESSION": "redis-session-1"}

REDIS = """\
name: $REDIS_SESSION
version: "0.3"
secrets:
  - name: redis_key
    kind: private-key
  - name: redis # automatically generate Redis server certificate
    kind: x509
    private_key: redis_key
    issuer: redis_ca_cert
    dns:
     - redis
  - name: redis_client_key
    kind: private-key
    export:
    - session: $FLASK_SESSION
  - name: redis_client_cert # automatically generate client certificate
    kind: x509
    issuer: redis_ca_cert
    private_key: redis_client_key
    export:
    - session: $FLASK_SESSION # export client cert/key to client session
  - name: redis_ca_key
    kind: private-key
  - name: redis_ca_cert # export session CA certificate as Redis CA certificate
    kind: x509-ca
    private_key: redis_ca_key
    export:
    - session: $FLASK_SESSION # export the session CA certificate to client session
images:
  - name: redis_image
    injection_files:
      - path: /tls/redis.crt
        content: $$SCONE::redis.crt$$
      - path: /tls/redis.key
        content: $$SCONE::redis.key$$
      - path: /tls/redis-ca.crt
        content: $$SCONE::redis_ca_cert.chain$$
"""

FLASK = """\
name: $FLASK_SESSION
version: "0.3"
secrets:
    - name: api_ca_key
      kind: private-key
    - name: api_ca_cert
      kind: x509-ca
      export_public: true
      private_key: api_ca_key
    - name: flask_key
      kind: private-key
    - name: flask
      kind: x509
      private_key: flask_key
      issuer: api_ca_cert
      dns:
        - api
    - name: redis_client_key
      import:
        session: $REDIS_SESSION
        secret: redis_client_key
    - name: redis_client_cert
      import:
        session: $REDIS_SESSION
        secret: redis_client_cert
    - name: redis_ca_cert
      import:
        session: $REDIS_SESSION
        secret: redis_ca_cert
images:
   - name: flask_restapi_image
     injection_files:
        - path: /tls/redis-ca.crt
          content: $$SCONE::redis_ca_cert.chain$$
        - path: /tls/client.crt
          content: $$SCONE::redis_client_cert.crt$$
        - path: /tls/client.key
          content: $$SCONE::redis_client_cert.key$$
        - path: /tls/flask.crt
          content: $$SCONE::flask.crt$$
        - path: /tls/flask.key
          content: $$SCONE::flask.key$$
"""


Values = dict[str, SecretValue]
Seed = tuple[dict[str, bytes], dict[str, bytes], Values, Values]


def files(session: Session, values: dict[str, SecretValue]) -> dict[str, bytes]:
    names = {s.name for s in session.secrets}
    return {
        f.path: render_bytes(f.content or "", values, names)
        for image in session.images
        for f in image.injection_files
    }


@pytest.fixture(scope="module")
def seed() -> Seed:
    redis_session = load_session(REDIS, variables=VARIABLES)
    flask_session = load_session(FLASK, variables=VARIABLES)
    redis = generate(redis_session.secrets)
    handed_over = {
        "redis_client_key": redis["redis_client_key"],
        "redis_client_cert": redis["redis_client_cert"],
        "redis_ca_cert": redis["redis_ca_cert"].without_private_key(),
    }
    flask = generate(flask_session.secrets, imported=handed_over)
    return files(redis_session, redis), files(flask_session, flask), redis, flask


def test_chain_relations(seed: Seed) -> None:
    _, _, redis, flask = seed
    redis_ca = load_cert(redis["redis_ca_cert"].cert_pem or "")
    api_ca = load_cert(flask["api_ca_cert"].cert_pem or "")
    redis_ca.verify_directly_issued_by(redis_ca)
    api_ca.verify_directly_issued_by(api_ca)
    for name in ("redis", "redis_client_cert"):
        load_cert(redis[name].cert_pem or "").verify_directly_issued_by(redis_ca)
        assert redis[name].chain == (redis["redis_ca_cert"].cert_pem,)
    load_cert(flask["flask"].cert_pem or "").verify_directly_issued_by(api_ca)
    assert flask["flask"].chain == (flask["api_ca_cert"].cert_pem,)
    assert flask["redis_client_cert"] == redis["redis_client_cert"]
    assert flask["redis_ca_cert"].key_pem is None  # the CA key stays in the redis session
    assert flask["redis_client_cert"].key_pem == redis["redis_client_key"].key_pem
    assert flask["api_ca_cert"].public_part() == flask["api_ca_cert"].cert_pem
    assert redis_ca.subject != api_ca.subject


def test_injected_files(seed: Seed) -> None:
    redis_files, flask_files, redis, flask = seed
    ca_pem = (redis["redis_ca_cert"].cert_pem or "").encode()
    assert redis_files["/tls/redis-ca.crt"] == flask_files["/tls/redis-ca.crt"] == ca_pem
    assert redis_files["/tls/redis.crt"] == (redis["redis"].cert_pem or "").encode()
    assert redis_files["/tls/redis.key"] == (redis["redis_key"].key_pem or "").encode()
    assert flask_files["/tls/client.crt"] == (redis["redis_client_cert"].cert_pem or "").encode()
    assert flask_files["/tls/client.key"] == (redis["redis_client_key"].key_pem or "").encode()
    assert flask_files["/tls/flask.crt"] == (flask["flask"].cert_pem or "").encode()
    assert flask_files["/tls/flask.key"] == (flask["flask_key"].key_pem or "").encode()


def test_flask_and_redis_attest_each_other_over_tls(
    seed: Seed,
) -> None:
    """redis-server's TLS set-up (cert, key, CA, --tls-auth-clients yes) against redis-py's."""
    redis_files, flask_files, _, _ = seed
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.verify_mode = ssl.CERT_REQUIRED
    server.load_verify_locations(cadata=redis_files["/tls/redis-ca.crt"].decode())
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cadata=flask_files["/tls/redis-ca.crt"].decode())
    with memfile(redis_files["/tls/redis.crt"].decode()) as crt, memfile(
        redis_files["/tls/redis.key"].decode()
    ) as key:
        server.load_cert_chain(crt, key)
    with memfile(flask_files["/tls/client.crt"].decode()) as crt, memfile(
        flask_files["/tls/client.key"].decode()
    ) as key:
        client.load_cert_chain(crt, key)
    with tls_server(server) as (port, outcome):
        assert connect(port, client, "redis") == b"ok"
    assert outcome.error is None and outcome.peer is not None
    assert outcome.peer["subject"] == ((("commonName", "redis_client_cert"),),)


def test_api_reached_with_the_public_ca_certificate(
    seed: Seed,
) -> None:
    """``curl --cacert cacert.pem https://api:4996`` with the exported api_ca_cert."""
    _, flask_files, _, flask = seed
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with memfile(flask_files["/tls/flask.crt"].decode()) as crt, memfile(
        flask_files["/tls/flask.key"].decode()
    ) as key:
        server.load_cert_chain(crt, key)
    client = ssl.create_default_context(cadata=flask["api_ca_cert"].public_part())
    with tls_server(server) as (port, _):
        assert connect(port, client, "api") == b"ok"
    with tls_server(server) as (port, _), pytest.raises(ssl.SSLCertVerificationError):
        connect(port, client, "localhost")


def test_legacy_chain_of_the_api_certificate(
    seed: Seed,
) -> None:
    _, _, _, flask = seed
    text = render_text("$$SCONE::flask.chain$$", flask)
    assert x509.load_pem_x509_certificates(text.encode()) == [
        load_cert(flask["api_ca_cert"].cert_pem or ""), load_cert(flask["flask"].cert_pem or "")
    ]
