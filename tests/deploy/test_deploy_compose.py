"""docker-compose.yml validated offline by the real Compose binary (``config -q``),
plus the policies it feeds to the CAS checked by ``cloister session check``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_support import DEPLOY, VENV_BIN, compose_binary

COMPOSE = DEPLOY / "compose"


def compose(project: Path, *args: str, env_file: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_SESSION")}
    return subprocess.run([str(compose_binary()), "--project-directory", str(project),
                           "-f", str(project / "docker-compose.yml"), *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of deploy/compose with .env from .env.example (as a user does)."""
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work)
    shutil.copy(COMPOSE / ".env.example", work / ".env")
    (work / "secrets").mkdir(exist_ok=True)
    # compose resolves ../policies relative to the project
    shutil.copytree(DEPLOY / "policies", tmp_path / "policies")
    return work


def test_compose_file_is_valid(project: Path) -> None:
    done = compose(project, "config", "-q")
    assert done.returncode == 0, done.stderr


def test_postgresql_profile_puts_the_cas_store_in_postgres(project: Path) -> None:
    env = project / ".env"
    env.write_text(env.read_text().replace("CAS_STORE=sqlite",
                                           "CAS_STORE=postgresql://cas@postgres:5432/cas"))
    done = compose(project, "--profile", "postgresql", "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    command = services["cas"]["command"]
    assert command[command.index("--store") + 1] == "postgresql://cas@postgres:5432/cas"
    pg = services["postgres"]
    assert pg["command"] == ["postgres", "-c", "fsync=on", "-c", "synchronous_commit=on"]
    assert not pg.get("ports"), "the database must not be published"
    default = json.loads(compose(project, "config", "--format", "json").stdout)["services"]
    assert "postgres" not in default  # only with the profile


def test_compose_model(project: Path) -> None:
    done = compose(project, "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    model = json.loads(done.stdout)
    services = model["services"]
    assert set(services) == {"cas", "las", "redis", "api", "init"}
    api, redis = services["api"], services["redis"]
    assert api["ports"][0]["published"] == "4996" and api["ports"][0]["target"] == 4996
    # loopback by default, like the CAS (API_BIND=0.0.0.0 publishes it everywhere)
    assert api["ports"][0]["host_ip"] == "127.0.0.1"
    assert services["cas"]["ports"][0]["host_ip"] == "127.0.0.1"
    for name in ("cas", "las", "redis", "api"):
        # podman 4 splits a CMD health test on spaces: CMD-SHELL works on both engines
        assert services[name]["healthcheck"]["test"][0] == "CMD-SHELL", name
    # Redis's TLS files: cloister run creates /run/redis-tls 0700 on the /run tmpfs
    assert any(t.startswith("/run:") for t in redis["tmpfs"])
    assert any(t.startswith("/tls") for t in api["tmpfs"])
    for name in ("cas", "las", "redis", "api"):
        assert "healthcheck" in services[name], name
    # every workload under its own uid (its session pins it); the LAS is root with
    # CAP_SYS_PTRACE only, to read /proc/PID of those non-dumpable callers
    users = {"cas": "10001:10001", "init": "10001:10001", "redis": "10001:10001",
             "api": "10002:10002", "las": "0:0"}
    for name, svc in services.items():
        assert svc["user"] == users[name] and svc["read_only"] is True, name
        assert svc["cap_drop"] == ["ALL"], name
    assert services["las"]["cap_add"] == ["SYS_PTRACE", "DAC_READ_SEARCH"]
    for name in ("redis", "api"):
        assert services[name]["environment"]["CLOISTER_LAS_ADDR"] == "/run/cloister/las.sock"
        assert services[name]["pid"] == "service:las"
    assert api["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert api["environment"]["CLOISTER_CONFIG_ID"] == "patients-flask-change-me/flask_restapi"
    assert redis["environment"]["CLOISTER_CONFIG_ID"] == "patients-redis-change-me/redis"
    # the fspf key reaches the init service only, as a file secret
    assert [s["source"] for s in services["init"]["secrets"]] == ["api-seal"]
    assert "secrets" not in api and "secrets" not in redis


@pytest.mark.parametrize(("given", "missing"), [
    ("REDIS_SESSION=r", "FLASK_SESSION"),
    ("FLASK_SESSION=f", "REDIS_SESSION"),
])
def test_compose_without_session_names_is_rejected(project: Path, given: str,
                                                   missing: str) -> None:
    # one missing name at a time: Compose reports the first it meets, in no fixed order
    (project / ".env").write_text(f"API_PORT=4996\n{given}\n")
    done = compose(project, "config", "-q")
    assert done.returncode != 0
    assert f"required variable {missing} is missing a value" in done.stderr


def test_broken_compose_file_is_rejected(project: Path) -> None:
    path = project / "docker-compose.yml"
    # a misspelt key and a wrong type: Compose's schema refuses both
    path.write_text(path.read_text().replace("    healthcheck:\n", "    healthcheks:\n", 1))
    done = compose(project, "config", "-q")
    assert done.returncode != 0
    assert "healthcheks" in done.stderr
    path.write_text((COMPOSE / "docker-compose.yml").read_text()
                    .replace('      - "${API_BIND:-127.0.0.1}:${API_PORT:-4996}:4996"',
                             "      - {published: [4996]}"))
    assert compose(project, "config", "-q").returncode != 0


@pytest.mark.parametrize("name", ["flask.yml", "redis.yml"])
def test_deploy_policies_pass_session_check(name: str) -> None:
    zero = "0" * 64
    values = {"FLASK_SESSION": "f", "REDIS_SESSION": "r", "MRENCLAVE": zero,
              "MRENCLAVE_REDIS": zero, "REDIS_HOST": "redis", "SCONE_FSPF_KEY": zero,
              "SCONE_FSPF_TAG": "0" * 32, "API_UID": "10002", "REDIS_UID": "10001"}
    args = [a for k, v in values.items() for a in ("-e", f"{k}={v}")]
    done = subprocess.run([str(VENV_BIN / "cloister"), "session", "check",
                           str(DEPLOY / "policies" / name), *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("valid")


def test_create_sessions_script_is_valid_shell() -> None:
    done = subprocess.run(["sh", "-n", str(COMPOSE / "create-sessions.sh")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (COMPOSE / "create-sessions.sh").read_text()
    # template values go through the environment (--use-env), never argv
    assert "--use-env" in text and "SCONE_FSPF_KEY=" not in text.replace(
        'SCONE_FSPF_KEY="$(', "")
