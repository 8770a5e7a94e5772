"""``cloister session|values|cas attest|cas show-certificate`` against a real CAS process.

Every command runs as a user runs it (the console script, a fresh process),
with ``CLOISTER_HOME`` in a temp dir so the real home is never touched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cas_harness import CAS, CLOISTER, make_identity

SESSION = """\
# the client must keep this comment and layout byte-for-byte
name: $NAME
version: "0.3"
access_policy:
  read: [CREATOR]
  update: [CREATOR]
secrets:
  - name: api_ca_key
    kind: private-key
  - name: api_ca_cert
    kind: x509-ca
    private_key: api_ca_key
    export_public: true
  - name: password
    kind: ascii
    size: 24
"""

HEX64 = re.compile(r"[0-9a-f]{64}")


def _openssl_fingerprint(cert: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        check=True, capture_output=True, text=True,
    ).stdout
    return out.strip().split("=", 1)[1]


class Cli:
    """Runs ``cloister`` with a private ``CLOISTER_HOME`` and no CAS variables from outside."""

    def __init__(self, home: Path, cas: CAS) -> None:
        self.home = home
        self.cas = cas

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.cas.port}"

    def __call__(
        self, *args: str, env: dict[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            k: v for k, v in os.environ.items()
            if k not in ("CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR", "CLOISTER_CAS_CERT")
        }
        full_env["CLOISTER_HOME"] = str(self.home)
        full_env.update(env or {})
        return subprocess.run(
            [CLOISTER, *args], env=full_env, input=input, capture_output=True, text=True,
            timeout=120,
        )

    def ok(self, *args: str, **kw: object) -> str:
        result = self(*args, **kw)  # type: ignore[arg-type]
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout


def _one_error(result: subprocess.CompletedProcess[str], code: int = 5) -> str:
    """The first stderr line of a failed command, checked to be a one-line error."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    # notices (a new identity) may come first; the error is one line plus its details
    errors = [i for i, line in enumerate(lines) if line.startswith("cloister: error: ")]
    assert len(errors) == 1, result.stderr
    assert all(line.startswith("  - ") for line in lines[errors[0] + 1 :]), result.stderr
    return lines[errors[0]]


@pytest.fixture(scope="module")
def cas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CAS]:
    root = tmp_path_factory.mktemp("cas")
    server = CAS(root / "state", root / "cas.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cli(tmp_path: Path, cas: CAS) -> Cli:
    return Cli(tmp_path / "home", cas)


@pytest.fixture
def session_file(tmp_path: Path) -> Path:
    path = tmp_path / "session.yml"
    path.write_text(SESSION)
    return path


def test_create_read_update_read_old_version(cli: Cli, cas: CAS, session_file: Path) -> None:
    pin = ("--cas", cli.addr, "--cas-cert", str(cas.state / "cas-ca.pem"))
    first = cli.ok("session", "create", str(session_file), "-e", "NAME=cli-app", *pin).strip()
    assert HEX64.fullmatch(first)
    created_text = SESSION.replace("$NAME", "cli-app")
    assert cli.ok("session", "read", "cli-app", *pin) == created_text

    # the session was created with this client's identity (first use created it, 0600)
    ident_cert = cli.home / "client.pem"
    assert (cli.home / "client-key.pem").stat().st_mode & 0o777 == 0o600
    assert cli.home.stat().st_mode & 0o777 == 0o700

    second = cli.ok("session", "update", str(session_file), "-e", "NAME=cli-app", *pin).strip()
    assert HEX64.fullmatch(second) and second != first
    updated = cli.ok("session", "read", "cli-app", *pin)
    lines = created_text.splitlines(keepends=True)
    assert updated == "".join([*lines[:2], f'predecessor: "{first}"\n', *lines[2:]])
    assert cli.ok("session", "read", "cli-app", "--hash", first, *pin) == created_text

    # curl sees the same history, and the creator is the client identity
    me = make_identity(cli.home.parent / "ids", "unused")  # only to satisfy the route's auth
    reply = cas.curl("/v1/sessions/cli-app", identity=me)
    assert reply.status == 403  # CREATOR-only: another identity is refused
    body = cas.curl(
        "/v1/sessions/cli-app",
        extra=("--cert", str(ident_cert), "--key", str(cli.home / "client-key.pem")),
    ).json()
    assert body["hash"] == second and body["predecessor"] == first
    assert body["creator"].strip() == ident_cert.read_text().strip()


def test_update_with_env_variables_and_name_override(
    cli: Cli, cas: CAS, session_file: Path
) -> None:
    env = {"CLOISTER_CAS_ADDR": cli.addr, "CLOISTER_CAS_CERT": str(cas.state / "cas-ca.pem"),
           "NAME": "from-env"}
    first = cli.ok("session", "create", str(session_file), "--use-env", "--name", "renamed",
                   env=env).strip()
    second = cli.ok("session", "update", str(session_file), "--use-env", "--name", "renamed",
                    env=env).strip()
    text = cli.ok("session", "read", "renamed", env=env)
    assert "name: \"renamed\"\n" in text and f'predecessor: "{first}"' in text
    assert cli.ok("session", "read", "renamed", "--hash", second, env=env) == text
    assert _one_error(cli("session", "read", "from-env", env=env)).endswith("does not exist")


def test_values_of_export_public_ca(
    cli: Cli, cas: CAS, session_file: Path, tmp_path: Path
) -> None:
    pin = ("--cas", cli.addr, "--cas-cert", str(cas.state / "cas-ca.pem"))
    Cli(tmp_path / "creator", cas).ok(
        "session", "create", str(session_file), "-e", "NAME=values-app", *pin
    )
    out = cli.ok("values", "values-app", *pin)
    values = json.loads(out)["values"]
    assert set(values) == {"api_ca_cert"}
    pem = values["api_ca_cert"]["value"]
    assert pem.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE" not in out
    one = cli.ok("values", "values-app", "api_ca_cert", *pin)
    assert one == pem
    # the same as curl + jq, as the users do it
    curl_pem = subprocess.run(
        f"curl -s --cacert {cas.state / 'cas-ca.pem'} "
        f"{cas.base}/v1/values/session=values-app | jq -r .values.api_ca_cert.value",
        shell=True, check=True, capture_output=True, text=True,
    ).stdout
    assert curl_pem.strip() == pem.strip()
    # no identity was needed (or created) for public values
    assert not (cli.home / "client-key.pem").exists()
    # a secret that is not public is refused, with the CAS's reason as a detail
    line = _one_error(cli("values", "values-app", "password", *pin))
    assert "no public secret 'password' in that session" in line


def test_first_contact_is_refused_with_instructions(cli: Cli) -> None:
    result = cli("session", "read", "anything", "--cas", cli.addr)
    line = _one_error(result, code=2)  # a local configuration to fix, not a CAS refusal
    assert f"no pinned certificate for the CAS at {cli.addr}" in line
    assert "--cas-cert FILE" in result.stderr and "--insecure-first-contact" in result.stderr
    assert not (cli.home / "known-cas").exists()
    # values too (no identity involved)
    assert "no pinned certificate" in _one_error(cli("values", "x", "--cas", cli.addr), code=2)


def test_unknown_session_is_one_line_exit_5(cli: Cli, cas: CAS) -> None:
    result = cli("session", "read", "no-such-session", "--cas", cli.addr,
                 "--cas-cert", str(cas.state / "cas-ca.pem"))
    line = _one_error(result, 5)
    assert line == f"cloister: error: CAS {cli.addr}: session 'no-such-session' does not exist"


def test_wrong_pinned_certificate_is_refused(cli: Cli, cas: CAS, tmp_path: Path) -> None:
    other = make_identity(tmp_path / "other", "not-the-cas")
    result = cli("session", "read", "x", "--cas", cli.addr, "--cas-cert", str(other.cert))
    line = _one_error(result)
    assert line.startswith(f"cloister: error: REFUSED: the CAS at {cli.addr} presents")
    assert _openssl_fingerprint(other.cert) in line
    assert _openssl_fingerprint(cas.state / "cas-ca.pem") in line  # what it presents instead
    # the same through $CLOISTER_CAS_CERT, and for values and attest
    env = {"CLOISTER_CAS_CERT": str(other.cert)}
    assert "REFUSED" in _one_error(cli("values", "x", "--cas", cli.addr, env=env))
    assert "REFUSED" in _one_error(cli("cas", "attest", cli.addr, env=env))
    assert not (cli.home / "known-cas").exists()


def test_server_certificate_can_be_pinned_too(cli: Cli, cas: CAS, tmp_path: Path) -> None:
    leaf = tmp_path / "leaf.pem"
    chain = (cas.state / "cas-server.pem").read_text()
    leaf.write_text(chain[: chain.index("-----END CERTIFICATE-----") + 26])
    result = cli("session", "read", "none-yet", "--cas", f"localhost:{cas.port}",
                 "--cas-cert", str(leaf))
    assert _one_error(result).endswith("'none-yet' does not exist")  # TLS was accepted


def test_attest_and_show_certificate(cli: Cli, cas: CAS) -> None:
    ca = cas.state / "cas-ca.pem"
    out = cli.ok("cas", "attest", cli.addr, "--cas-cert", str(ca))
    assert out == f"CAS {cli.addr} at https://{cli.addr}/ is trustworthy\n"
    assert (cli.home / "known-cas" / f"127.0.0.1_{cas.port}.pem").read_text() == ca.read_text()
    # later commands use the pin without any flag
    assert cli.ok("cas", "attest", cli.addr).endswith("is trustworthy\n")
    assert cli.ok("cas", "show-certificate", "--state", str(cas.state)) == ca.read_text()
    shown = cli("cas", "show-certificate", "--cas", cli.addr)
    assert shown.returncode == 0 and shown.stdout == ca.read_text()
    assert "verified against the pin" in shown.stderr


def test_show_certificate_unpinned_says_unverified(cli: Cli, cas: CAS) -> None:
    shown = cli("cas", "show-certificate", "--cas", cli.addr)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == (cas.state / "cas-ca.pem").read_text()
    assert "UNVERIFIED" in shown.stderr
    assert _openssl_fingerprint(cas.state / "cas-ca.pem") in shown.stderr
    assert not (cli.home / "known-cas").exists()  # showing never pins


def test_insecure_first_contact_pins_and_changed_cas_is_refused(
    tmp_path: Path, session_file: Path
) -> None:
    first = CAS(tmp_path / "state-a", tmp_path / "a.log")
    first.start()
    cli = Cli(tmp_path / "home", first)
    try:
        result = cli("session", "create", str(session_file), "-e", "NAME=tofu",
                     "--cas", cli.addr, "--insecure-first-contact")
        assert result.returncode == 0, result.stderr
        fp = _openssl_fingerprint(first.state / "cas-ca.pem")
        assert "WITHOUT verification" in result.stderr and fp in result.stderr
        pin = cli.home / "known-cas" / f"127.0.0.1_{first.port}.pem"
        assert pin.read_text() == (first.state / "cas-ca.pem").read_text()
        # the pin is used from now on, no flag needed
        assert "name: tofu" in cli.ok("session", "read", "tofu", "--cas", cli.addr)
    finally:
        first.stop()

    # a different CAS (new state, so a new certificate) on the same address
    second = CAS(tmp_path / "state-b", tmp_path / "b.log")
    second.port = first.port
    second.start()
    try:
        for extra in ((), ("--insecure-first-contact",)):
            result = cli("session", "read", "tofu", "--cas", cli.addr, *extra)
            line = _one_error(result)
            assert "REFUSED" in line and "does not match the pinned certificate" in line
            assert "cloister cas attest" in result.stderr
        assert pin.read_text() == (first.state / "cas-ca.pem").read_text()  # never re-pinned
        # the operator vouches for the new CAS: attest with its certificate re-pins
        new_ca = second.state / "cas-ca.pem"
        out = cli.ok("cas", "attest", cli.addr, "--cas-cert", str(new_ca))
        assert out.endswith("is trustworthy\n") and pin.read_text() == new_ca.read_text()
        line = _one_error(cli("session", "read", "tofu", "--cas", cli.addr))
        assert line.endswith("'tofu' does not exist")  # trusted again; the new CAS is empty
    finally:
        second.stop()


def test_attest_insecure_first_contact_says_unverified(cli: Cli, cas: CAS) -> None:
    result = cli("cas", "attest", cli.addr, "--insecure-first-contact")
    assert result.returncode == 0, result.stderr
    assert "is NOT verified" in result.stdout and "trustworthy" not in result.stdout
    assert _openssl_fingerprint(cas.state / "cas-ca.pem") in result.stdout


def test_openssl_identity_file_and_access_denied(
    cli: Cli, cas: CAS, session_file: Path, tmp_path: Path
) -> None:
    pin = ("--cas", cli.addr, "--cas-cert", str(cas.state / "cas-ca.pem"))
    alice = make_identity(tmp_path / "ids", "alice")
    cli.ok("session", "create", str(session_file), "-e", "NAME=alices", "--identity",
           str(alice.cert), *pin)
    assert "name: alices" in cli.ok("session", "read", "alices", "--identity", str(alice.cert),
                                    *pin)
    # the default identity (someone else) may neither read nor update it
    result = cli("session", "read", "alices", *pin)
    assert _one_error(result).startswith(f"cloister: error: CAS {cli.addr}: ")
    me = (cli.home / "client.pem")
    assert me.exists() and "this client's identity is" in result.stderr
    result = cli("session", "update", str(session_file), "-e", "NAME=alices", *pin)
    _one_error(result)


def test_invalid_session_is_refused_before_sending(cli: Cli, cas: CAS, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text('name: bad\nversion: "0.3"\nsecretz: []\n')
    result = cli("session", "create", str(bad), "--cas", cli.addr)  # no pin needed to fail
    line = _one_error(result, 2)
    assert str(bad) in line and "secretz" in line
    missing = cli("session", "create", str(bad.with_name("nope.yml")), "--cas", cli.addr)
    assert "cannot read session file" in _one_error(missing, 2)


def test_a_remote_secret_error_exits_as_a_local_one(cli: Cli, cas: CAS, tmp_path: Path) -> None:
    """The CAS refuses an import it cannot resolve (422 secret_error): exit 7, as locally."""
    from cloister import errors  # noqa: PLC0415
    from cloister.cli._exit import exit_code_for  # noqa: PLC0415

    importer = tmp_path / "importer.yml"
    importer.write_text(
        'name: importer-7\nversion: "0.3"\nsecrets:\n  - name: borrowed\n    import:\n'
        "      session: no-such-exporter\n      secret: token\n"
    )
    result = cli("session", "create", str(importer), "--cas", cli.addr,
                 "--cas-cert", str(cas.state / "cas-ca.pem"))
    local = exit_code_for(errors.SecretError("a secret cannot be rendered"))
    line = _one_error(result, code=local)
    assert local == 7
    assert "imports 'token' from session 'no-such-exporter', which does not exist" in line


def _owned_session(name: str, readers: list[str]) -> str:
    entries = "".join(f"    - {r}\n" for r in ["CREATOR", *readers])
    return (f'name: {name}\nversion: "0.3"\naccess_policy:\n  read:\n{entries}'
            "  update: [CREATOR]\nsecrets:\n  - name: pw\n    kind: ascii\n")


def test_session_list_names_only_what_the_caller_may_read(cli: Cli, cas: CAS,
                                                          tmp_path: Path) -> None:
    pin = ["--cas", cli.addr, "--cas-cert", str(cas.state / "cas-ca.pem")]
    bob = make_identity(tmp_path / "bob", "bob")
    as_bob = ["--identity", str(bob.cert)]
    for name, readers, who in (("list-alice", [], []), ("list-shared", [bob.key_hash()], []),
                               ("list-bob", [], as_bob)):
        policy = tmp_path / f"{name}.yml"
        policy.write_text(_owned_session(name, readers))
        cli.ok("session", "create", str(policy), *pin, *who)

    def listed(*who: str) -> set[str]:
        shell = (f"{CLOISTER} session list -o json {' '.join(pin + list(who))} "
                 "| jq -r '.sessions[]'")
        done = subprocess.run(["bash", "-o", "pipefail", "-c", shell], capture_output=True,
                              text=True, timeout=60,
                              env={**os.environ, "CLOISTER_HOME": str(cli.home)})
        assert done.returncode == 0, done.stderr
        return set(done.stdout.split())

    alice, bobs = listed(), listed(*as_bob)
    assert {"list-alice", "list-shared"} <= alice and "list-bob" not in alice
    assert {"list-bob", "list-shared"} <= bobs and "list-alice" not in bobs
    text = cli.ok("session", "list", *pin).splitlines()  # text: one name per line
    assert text == sorted(text) and set(text) == alice


def test_an_expired_identity_is_named_with_its_fix(cli: Cli, cas: CAS, tmp_path: Path) -> None:
    import datetime as dt  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
    from cryptography.x509.oid import NameOID  # noqa: PLC0415

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(past).not_valid_after(past + dt.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    home = tmp_path / "expired"
    home.mkdir(mode=0o700)
    (home / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = home / "client-key.pem"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    result = cli("session", "list", "--cas", cli.addr, "--cas-cert",
                 str(cas.state / "cas-ca.pem"), "--identity", str(home))
    line = _one_error(result, code=2)
    assert f"client identity {home / 'client.pem'} expired on 2020-01-31" in line
    assert "make a new identity" in result.stderr
