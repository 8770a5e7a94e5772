"""cloister.transform: --inject parsing, generated policies, inputs refused with one line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cloister import errors, policy
from cloister.transform import parse_injection, transform

MEASUREMENT = "ab" * 32


def app(tmp_path: Path, deps: str = "pyproject") -> Path:
    src = tmp_path / "My App"
    src.mkdir(parents=True)
    (src / "main.py").write_text("print('hi')\n")
    if deps == "pyproject":
        (src / "pyproject.toml").write_text(
            '[project]\nname = "x"\nversion = "1"\ndependencies = ["Flask>=3.0", "redis"]\n')
    elif deps == "requirements":
        (src / "requirements.txt").write_text("Flask>=3.0\n")
    return src


@pytest.mark.parametrize(("text", "secret", "form"), [
    ("/tls/a.crt=web:crt", "web", "crt"),
    ("/tls/a.key=web:privatekey", "web", "privatekey"),
    ("/run/token=api_token", "api_token", None),
])
def test_parse_injection(text: str, secret: str, form: str | None) -> None:
    inj = parse_injection(text)
    assert (inj.secret, inj.form) == (secret, form)
    assert inj.reference == f"$$SCONE::{secret}{':' + form if form else ''}$$"


@pytest.mark.parametrize(("text", "complaint"), [
    ("/tls/a.crt", "write --inject PATH=SECRET"),
    ("tls/a.crt=web:crt", "must be absolute"),
    ("/tls/a=web:pem", "unknown form 'pem'"),
    ("/tls/a=we-b", "must be letters, digits and _"),
])
def test_parse_injection_refuses(text: str, complaint: str) -> None:
    with pytest.raises(errors.ConfigError, match=complaint):
        parse_injection(text)


def test_transform_pyproject_app(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    bundle = transform(app(tmp_path), "main.py", out=out, measurement=MEASUREMENT,
                       injections=[parse_injection("/tls/w.crt=web:crt"),
                                   parse_injection("/tls/w.key=web:privatekey"),
                                   parse_injection("/run/t=tok")],
                       environment={"MODE": "prod"})
    assert bundle.name == "my-app" and bundle.config_id == "my-app/my-app"
    assert (out / "requirements.txt").read_text() == "Flask>=3.0\nredis\n"
    assert stat.S_IMODE(bundle.policy_path.stat().st_mode) == 0o600
    session = policy.load_session(bundle.policy_path.read_text())
    service = session.services[0]
    assert service.command == ("python3", "/fspf/encrypted-files/main.py")
    assert service.environment == {"MODE": "prod"}
    names = {s.name for s in session.secrets}
    assert names == {"my-app_ca_key", "my-app_ca_cert", "web_key", "web", "tok"}
    assert bundle.measurement == MEASUREMENT


def test_transform_refuses_bad_inputs(tmp_path: Path) -> None:
    src = app(tmp_path, deps="none")
    with pytest.raises(errors.ConfigError, match=r"neither requirements\.txt nor pyproject"):
        transform(src, "main.py", out=tmp_path / "o1", measurement=MEASUREMENT)
    src2 = app(tmp_path / "b", deps="requirements")
    with pytest.raises(errors.ConfigError, match=r"--entry nope\.py: no such file"):
        transform(src2, "nope.py", out=tmp_path / "o2")
    with pytest.raises(errors.ConfigError, match="must not lie inside the source tree"):
        transform(src2, "main.py", out=src2 / "out", measurement=MEASUREMENT)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    with pytest.raises(errors.ConfigError, match="is not empty"):
        transform(src2, "main.py", out=busy, measurement=MEASUREMENT)
    with pytest.raises(errors.ConfigError, match="names one path twice"):
        transform(src2, "main.py", out=tmp_path / "o3", measurement=MEASUREMENT,
                  injections=[parse_injection("/a/b=x"), parse_injection("/a/b=y")])


def test_transform_without_injections_gives_a_valid_policy(tmp_path: Path) -> None:
    bundle = transform(app(tmp_path), "main.py", out=tmp_path / "bundle",
                       measurement=MEASUREMENT)
    session = policy.load_session(bundle.policy_path.read_text())
    assert session.services[0].image_name is None and session.images == ()
