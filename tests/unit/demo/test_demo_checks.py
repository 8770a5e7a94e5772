"""``demo up`` refuses clearly, before starting anything, when a port is taken or Redis is missing;
the policy templates are valid sessions once filled in."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cloister import errors, policy
from cloister.demo import DemoOptions, Layout, requests_to_try, up
from cloister.demo._layout import default_app_dir
from cloister.demo._up import _PREDECESSOR, Running


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        options = DemoOptions(directory=tmp_path / "d", cas_port=port,
                              redis_port=_free_port(), api_port=_free_port())
        with pytest.raises(errors.ConfigError) as caught:
            up(options, say=lambda _: None)
    assert f"CAS port {port}" in caught.value.message
    assert "--cas-port" in " ".join(caught.value.details)
    assert not (tmp_path / "d" / "pids").exists() or not any((tmp_path / "d" / "pids").iterdir())


def test_missing_redis_server_says_how_to_install(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without redis-server
    options = DemoOptions(directory=tmp_path / "d", cas_port=_free_port(),
                          redis_port=_free_port(), api_port=_free_port())
    with pytest.raises(errors.ConfigError) as caught:
        up(options, say=lambda _: None)
    assert "redis-server is not installed" in caught.value.message
    assert "sudo apt-get install redis-server" in caught.value.details[0]


VARIABLES = {
    "FLASK_SESSION": "f", "REDIS_SESSION": "r", "MRENCLAVE": "a" * 64,
    "MRENCLAVE_REDIS": "b" * 64, "API_DIR": "/srv/api", "API_PORT": "4996",
    "REDIS_PORT": "6379", "REDIS_TLS_DIR": "/dev/shm/x", "REDIS_DATA_DIR": "/var/redis",
    "SCONE_FSPF_PATH": "/srv/api/fspf.pb", "SCONE_FSPF_KEY": "c" * 64, "SCONE_FSPF_TAG": "d" * 32,
    "REDIS_UID": "10001", "REDIS_GID": "10001", "API_UID": "10002", "API_GID": "10002",
}


@pytest.mark.parametrize("template", ["flask.yml", "redis.yml"])
def test_policy_templates_load_as_sessions(template: str) -> None:
    app = default_app_dir()
    assert app is not None
    text = policy.substitute_variables((app / "policies" / template).read_text(), VARIABLES)
    session = policy.load_session(text)
    service = session.services[0]
    pinned = {"redis.yml": (10001, 10001), "flask.yml": (10002, 10002)}[template]
    assert (service.uid, service.gid) == pinned  # the demo pins who runs each service
    if template == "redis.yml":
        command = " ".join(service.command) if not isinstance(service.command, str) \
            else service.command
        for flag in ("--port 0", "--tls-port 6379", "--tls-auth-clients yes",
                     "--appendonly yes", "--dir /var/redis", "--protected-mode no"):
            assert flag in command
        paths = [f.path for img in session.images for f in img.injection_files]
        assert all(p.startswith("/dev/shm/x/") for p in paths)
    else:
        paths = [f.path for img in session.images for f in img.injection_files]
        assert sorted(paths) == sorted(["/tls/redis-ca.crt", "/tls/client.crt",
                                        "/tls/client.key", "/tls/flask.crt", "/tls/flask.key"])


def test_predecessor_suffix_is_recognised() -> None:
    text = "name: x\nversion: '0.3'\nversion: \"0.3\"\n"
    assert _PREDECESSOR.sub("\n", text.rstrip() + "\npredecessor: " + "ab" * 32 + "\n") == text


def test_requests_to_try_are_the_seeds(tmp_path: Path) -> None:
    running = Running(Layout.of(tmp_path), "f", "r", DemoOptions())
    lines = requests_to_try(running)
    assert lines[1] == ('curl -k -X GET "https://${SCONE_CAS_ADDR-cas}:8081/v1/values/'
                        'session=$FLASK_SESSION" | jq -r .values.api_ca_cert.value > cacert.pem')
    assert lines[2].startswith("curl --cacert cacert.pem -X POST https://api:4996/patient/"
                               "patient_3 -d \"fname=Jane&lname=Doe&address='123 Main Street'")
    assert lines[2].endswith("--resolve api:4996:127.0.0.1")
    assert lines[4] == ("curl --cacert cacert.pem -X GET https://api:4996/score/patient_3 "
                        "--resolve api:4996:127.0.0.1")
