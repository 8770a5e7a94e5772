"""The deployment run for real with podman: images built by deploy/images/build.sh from a
Debian base made by mmdebstrap, the compose file brought up by the real Compose binary
against ``podman system service``, the seed's walkthrough with verified TLS (real curl),
each service restarted alone, ``down`` + ``up`` keeping the data; the built images
checked for what the four deployment defects of issue 18 got wrong and for a stale build
cache; the chart's CAS pod run as containers, initialising its sealed state.

Slow (a few minutes the first time a day, when the base image is built): ``make test-all``,
``make test-deploy`` and ``.ci/run`` run it. Skips with the reason where podman cannot run
containers.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy_support import DEPLOY, REPO, compose_binary, free_port
from podman_support import (
    API_IMAGE,
    BASE_IMAGE,
    IMAGES,
    PREFIX,
    TAG,
    Podman,
    podman_or_skip,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500), pytest.mark.xdist_group("podman")]

SEAL_KEY = "fspf_key: "
NO_RECREATE = "--no-recreate"
PATIENT = ("fname=Jane&lname=Doe&address='123 Main Street'&city=Richmond&state=Washington"
           "&ssn=123-223-2345&email=nr@aaa.com&dob=01/01/2010&contactphone=123-234-3456"
           "&drugallergies='Sulpha, Penicillin, Tree Nut'"
           "&preexistingconditions='diabetes, hypertension, asthma'&dateadmitted=01/05/2010"
           "&insurancedetails='Primera Blue Cross'")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Podman, Path]]:
    """Podman with the images built; the seal output in a 0700 ``secrets`` directory."""
    tmp = tmp_path_factory.mktemp("podman")
    started = time.monotonic()
    podman = podman_or_skip(tmp)
    print(f"\nbase image ready in {time.monotonic() - started:.0f} s")
    secrets = tmp / "compose" / "secrets"
    podman.build_images(secrets)
    print(f"images built in {time.monotonic() - started:.0f} s (base included)")
    yield podman, secrets


def seal_key(secrets: Path) -> str:
    line = next(x for x in (secrets / "api-seal.txt").read_text().splitlines()
                if x.startswith(SEAL_KEY))
    return line.removeprefix(SEAL_KEY).strip()


# -- defect 1: the seal output must be readable by the init service's uid
def test_seal_output_is_readable_by_the_init_user_and_nobody_else_on_the_host(
        built: tuple[Podman, Path]) -> None:
    podman, secrets = built
    assert secrets.stat().st_mode & 0o777 == 0o700, "other host users could read the key"
    # as Compose passes a file secret outside swarm: bind-mounted with its owner and mode
    done = podman.run("run", "--rm", "--user", "10001:10001", "--network", "none",
                      "-v", f"{secrets / 'api-seal.txt'}:/run/secrets/api-seal:ro",
                      "--entrypoint", "sh", f"{PREFIX}/redis:{TAG}", "-c",
                      "grep -c '^fspf_' /run/secrets/api-seal", check=False)
    assert done.returncode == 0 and done.stdout.strip() == "3", \
        f"uid 10001 cannot read the seal output: {done.stderr}"


# -- defect 2: the API's user must read every sealed file; policies are not sealed in
def test_api_user_reads_its_whole_sealed_tree_which_holds_no_policies(
        built: tuple[Podman, Path]) -> None:
    podman, _ = built
    done = podman.run("run", "--rm", "--network", "none", "--entrypoint", "sh", API_IMAGE, "-c",
                      "id -u; find /fspf/encrypted-files ! -readable; "
                      "find /fspf/encrypted-files -name policies", check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[0] == "10001"
    assert lines[1:] == [], f"unreadable for the API, or sealed though not code: {lines[1:]}"


# -- the build cache: podman's (buildah's) cache key of a RUN does not cover what it
# bind-mounts, so a runtime image once kept the old cloister after a source change
_DIGESTS = """
import hashlib, pathlib, cloister
root = pathlib.Path(cloister.__file__).parent
for f in sorted(root.rglob("*.py")):
    print(hashlib.sha256(f.read_bytes()).hexdigest(), f.relative_to(root).as_posix())
"""


def _checkout_digests() -> str:
    root = REPO / "src" / "cloister"
    return "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()} "
                   f"{f.relative_to(root).as_posix()}\n" for f in sorted(root.rglob("*.py")))


def test_every_image_holds_this_checkouts_cloister(built: tuple[Podman, Path]) -> None:
    podman, _ = built
    want = _checkout_digests()
    for image in IMAGES:
        have = podman.run("run", "--rm", "--network", "none", "--entrypoint", "python3", image,
                          "-c", _DIGESTS).stdout
        stale = sorted(set(have.splitlines()) ^ set(want.splitlines()))
        assert have == want, f"{image} was built from another cloister (a stale build " \
            f"cache?): {stale[:6]}"


def test_a_changed_source_reaches_the_runtime_image_through_the_build_cache(
        built: tuple[Podman, Path], tmp_path: Path) -> None:
    """The runtime image built again from this checkout with one module changed (the rest
    of its layers in the cache from the build above) installs the changed module."""
    podman, _ = built
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, context / name)
    shutil.copytree(REPO / "src", context / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # the same marker for the same checkout: a rerun reuses its layers instead of adding more
    marker = f"# build cache check {hashlib.sha256(_checkout_digests().encode()).hexdigest()}"
    init = context / "src/cloister/__init__.py"
    init.write_text(init.read_text() + f"\n{marker}\n")
    dockerfile = DEPLOY / "images/runtime/Dockerfile"
    image = f"{PREFIX}/runtime-cache-check:{TAG}"
    podman.run("build", "--format", "docker", "--ignorefile", f"{dockerfile}.dockerignore",
               "-f", str(dockerfile), "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}",
               "-t", image, str(context), timeout=900)
    try:
        show = "import cloister; print(open(cloister.__file__).read())"
        installed = podman.run("run", "--rm", "--network", "none", "--entrypoint", "python3",
                               image, "-c", show)
        assert marker in installed.stdout, \
            "the rebuilt runtime image kept the cached install layer with the old cloister"
    finally:
        podman.run("rmi", image, check=False)


# -- Deliver 2: the seal key in no layer of any built image
def test_seal_key_is_in_no_layer_or_history_of_any_image(built: tuple[Podman, Path],
                                                         tmp_path: Path) -> None:
    podman, secrets = built
    key = seal_key(secrets).encode()
    assert len(key) == 64
    for image in IMAGES:
        archive = tmp_path / "image.tar"
        podman.run("save", "--format", "docker-archive", "-o", str(archive), image)
        found = []
        with tarfile.open(archive) as outer:
            for member in outer.getmembers():
                data = outer.extractfile(member)
                if data is None:
                    continue
                blob = data.read()
                if key in blob or key.upper() in blob:
                    found.append(member.name)
                if member.name.endswith(".tar"):  # a layer: look inside every file
                    found += _layer_hits(tmp_path / "layer.tar", blob, key)
        archive.unlink()
        history = podman.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
        inspect = podman.run("image", "inspect", image).stdout
        assert found == [] and key.decode() not in history + inspect, (image, found)


def _layer_hits(path: Path, blob: bytes, key: bytes) -> list[str]:
    path.write_bytes(blob)
    hits = []
    with tarfile.open(path) as layer:
        for member in layer.getmembers():
            data = layer.extractfile(member) if member.isfile() else None
            if data is not None and key in data.read():
                hits.append(member.name)
    path.unlink()
    return hits


# -- Deliver 3 and 5: the compose deployment through the real Compose binary
class Deployment:
    def __init__(self, podman: Podman, project_dir: Path, docker_host: str) -> None:
        self.podman = podman
        self.dir = project_dir
        self.project = f"cloister-e2e-{os.getpid()}"
        self.env = {**podman.env, "DOCKER_HOST": docker_host}
        self.api_port = free_port()
        self.cas_port = free_port()

    def compose(self, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
        with self.podman.drive_health(self.project):
            done = subprocess.run([str(compose_binary()), "--project-directory", str(self.dir),
                                   "-p", self.project, *args], capture_output=True, text=True,
                                  env=self.env, timeout=timeout)
        assert done.returncode == 0, f"compose {' '.join(args)}: exit {done.returncode}\n" \
            f"{done.stderr[-4000:]}\n{self.logs()}"
        return done

    def logs(self) -> str:
        done = subprocess.run([str(compose_binary()), "--project-directory", str(self.dir),
                               "-p", self.project, "logs", "--no-color", "--tail", "15"],
                              capture_output=True, text=True, env=self.env, timeout=120)
        return done.stdout[-6000:]

    def up(self, *extra: str) -> str:
        self.compose("up", "-d", "--wait", "--wait-timeout", "300", *extra)
        return self.init_log()

    def init_log(self) -> str:
        name = f"{self.project}-init-1"
        return self.podman.run("logs", name).stdout + self.podman.run("logs", name).stderr

    def curl(self, *args: str) -> str:
        done = subprocess.run(["curl", "-sS", "--fail-with-body", "--max-time", "30", *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"curl {args}: exit {done.returncode}: {done.stderr}" \
            f"{done.stdout}\n{self.logs()}"
        return done.stdout

    def cas_certificate(self, out: Path) -> Path:
        """What a user pins: the CAS CA certificate read from the CAS's own state."""
        done = self.podman.run("exec", f"{self.project}-cas-1", "cloister", "cas",
                               "show-certificate", "--state", "/var/lib/cloister/cas")
        out.write_text(done.stdout)
        return out

    def api_ca(self, cas_ca: Path, out: Path) -> str:
        """The API's CA from the CAS (verified against the pinned CAS certificate)."""
        session = self.env_file()["FLASK_SESSION"]
        text = self.curl("--cacert", str(cas_ca),
                         f"https://localhost:{self.cas_port}/v1/values/"
                         f"session={session},secret=api_ca_cert")
        pem = json.loads(text)["value"]
        out.write_text(pem)
        return str(pem)

    def env_file(self) -> dict[str, str]:
        pairs = (line.split("=", 1) for line in (self.dir / ".env").read_text().splitlines()
                 if "=" in line and not line.startswith("#"))
        return dict(pairs)

    def api(self, api_ca: Path, method: str, path: str, *data: str) -> dict[str, Any]:
        port = self.api_port
        extra = ["-d", data[0]] if data else []
        text = self.curl("--cacert", str(api_ca), "--resolve", f"api:{port}:127.0.0.1",
                         "-X", method, f"https://api:{port}{path}", *extra)
        return dict(json.loads(text))


@pytest.fixture
def deployment(built: tuple[Podman, Path], tmp_path: Path) -> Iterator[Deployment]:
    podman, secrets = built
    work = secrets.parent
    for item in (DEPLOY / "compose").iterdir():
        if item.name not in {"secrets", ".env"}:
            shutil.copy(item, work / item.name)
    shutil.copytree(DEPLOY / "policies", work.parent / "policies", dirs_exist_ok=True)
    with podman.service() as docker_host:
        dep = Deployment(podman, work, docker_host)
        (work / ".env").write_text(
            (DEPLOY / "compose/.env.example").read_text()
            .replace("patients-flask-change-me", "e2e-flask")
            .replace("patients-redis-change-me", "e2e-redis")
            + f"API_IMAGE={API_IMAGE}\nCLOISTER_TAG={TAG}\nAPI_PORT={dep.api_port}\n"
            f"CAS_PORT={dep.cas_port}\n")
        try:
            yield dep
        finally:
            subprocess.run([str(compose_binary()), "--project-directory", str(work),
                            "-p", dep.project, "down", "-v", "-t", "5"], capture_output=True,
                           env=dep.env, timeout=300)
            podman.remove_project(dep.project)
    assert podman.run("ps", "-aq", "--filter",
                      f"label=com.docker.compose.project={dep.project}").stdout.strip() == ""


def test_compose_serves_the_walkthrough_survives_restarts_and_keeps_its_data(
        deployment: Deployment, tmp_path: Path) -> None:
    dep = deployment
    started = time.monotonic()
    log = dep.up()
    assert "creating session e2e-redis" in log and "creating session e2e-flask" in log, log
    print(f"compose up (sessions created, all healthy) in {time.monotonic() - started:.0f} s")
    cas_ca = dep.cas_certificate(tmp_path / "cas-ca.pem")
    # the CAS initialised its state sealed: the file seal, its key on the cas-key volume
    cas = f"{dep.project}-cas-1"
    seal = json.loads(dep.podman.run("exec", cas, "cat", "/var/lib/cloister/cas/seal.json").stdout)
    assert seal["type"] == "file", seal
    assert seal["path"] == "/var/lib/cloister/cas-key/master.key", seal
    state_files = dep.podman.run("exec", cas, "ls", "-A", "/var/lib/cloister/cas").stdout.split()
    assert "master.key" not in state_files and "cas-ca-key.pem" not in state_files, state_files
    api_ca_file = tmp_path / "api-ca.pem"
    first_ca = dep.api_ca(cas_ca, api_ca_file)

    # the seed's walkthrough: POST, GET, score — every TLS connection verified
    posted = dep.api(api_ca_file, "POST", "/patient/patient_3", PATIENT)
    assert posted.get("fname") == "Jane" or "patient_3" in json.dumps(posted), posted
    assert dep.api(api_ca_file, "GET", "/patient/patient_3")["fname"] == "Jane"
    assert "score" in dep.api(api_ca_file, "GET", "/score/patient_3")

    # defect 3: a second `up` re-runs init, which must leave unchanged sessions alone
    # (--no-recreate: Compose against podman 4.3 recreates unchanged containers with named
    # volumes, and podman refuses to remove the LAS while redis and api share its PID
    # namespace; with Docker a plain `up` leaves unchanged containers as they are)
    log = dep.up(NO_RECREATE)
    assert "session e2e-redis unchanged" in log and "session e2e-flask unchanged" in log, log
    assert dep.api_ca(cas_ca, api_ca_file) == first_ca, "a second up re-issued the API CA"

    # each service restarted alone: the others still trust it, the data is there
    # (in this order, the restarted Redis and API attest through the restarted LAS and CAS;
    # the API reconnects to a restarted Redis with the certificates it already had)
    # The LAS owns the PID namespace redis and api share (`pid: service:las`, so that it can
    # measure them): its restart kills their processes, so they are restarted after it, as a
    # user must do (whether podman has noticed their death before `up` looks is a race; one
    # `restart las redis api` restarts them in parallel, and podman refuses to start them
    # before the LAS: "container state improper").
    restarts = {"cas": [("cas",)], "las": [("las",), ("redis", "api")], "redis": [("redis",)],
                "api": [("api",)]}
    for service, steps in restarts.items():
        for together in steps:
            dep.compose("restart", *together)
        dep.compose("up", "-d", "--wait", "--wait-timeout", "300", NO_RECREATE, "redis", "api")
        assert dep.api_ca(cas_ca, api_ca_file) == first_ca, service  # the pinned CAS
        assert dep.api(api_ca_file, "GET", "/patient/patient_3")["fname"] == "Jane", service
        assert "score" in dep.api(api_ca_file, "GET", "/score/patient_3"), service

    # down + up: volumes kept, so the CAS, its CA and the patient are all still there
    dep.compose("down", "-t", "5")
    log = dep.up()
    assert "unchanged" in log, log
    assert dep.cas_certificate(tmp_path / "cas-ca-2.pem").read_text() == cas_ca.read_text()
    assert dep.api_ca(cas_ca, api_ca_file) == first_ca
    assert dep.api(api_ca_file, "GET", "/patient/patient_3")["lname"] == "Doe"
    print(f"compose walkthrough, restarts and down/up in {time.monotonic() - started:.0f} s")


# -- defect 4 and the seal: the chart's CAS pod, run as containers with the chart's settings
def test_chart_cas_pod_initialises_a_sealed_state_on_a_volume_prepared_for_its_fs_group(
        built: tuple[Podman, Path], tmp_path: Path) -> None:
    """The kubelet makes an fsGroup volume's root group-owned and group-writable (2775);
    the CAS refuses such a state directory, so the chart puts the state one level below.
    ``cas serve`` refuses an uninitialised state: the pod's init container copies the
    master key from the Secret (group-readable under fsGroup) 0600 into memory, and the
    CAS initialises its state with the file seal from it, then unseals it at a restart."""
    from test_deploy_helm import SEED, by_kind, pod_spec, render  # noqa: PLC0415

    podman, _ = built
    spec = pod_spec(by_kind(render(SEED))[("StatefulSet", "api-v1-cas")])
    group = spec["securityContext"]["fsGroup"]
    user = spec["securityContext"]
    master_key = os.urandom(32)
    hosts = _kubelet_volumes(spec, tmp_path, group, master_key)

    def run(container: dict[str, Any], *extra: str) -> list[str]:
        mounts = []
        for m in container["volumeMounts"]:
            ro = ":ro" if m.get("readOnly") else ""
            host = hosts[m["name"]]
            mounts += ["--tmpfs", m["mountPath"]] if host is None else \
                ["-v", f"{host}:{m['mountPath']}{ro}"]
        return ["run", "--network", "none", "--read-only", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                "--user", f"{user['runAsUser']}:{user['runAsGroup']}", "--group-add", str(group),
                *mounts, *extra]

    for init in spec.get("initContainers", []):  # in order, each to its end, as the kubelet
        podman.run(*run(init, "--rm", "--entrypoint", init["command"][0]), init["image"],
                   *init["command"][1:])
    container = spec["containers"][0]
    args = container["args"]
    state_dir = Path(args[args.index("--state") + 1])
    name = f"cloister-chart-cas-{os.getpid()}"
    podman.run(*run(container, "-d", "--name", name), container["image"], *args)
    try:
        _wait_healthy(podman, name)
        mode = int(podman.run("exec", name, "stat", "-c", "%a", str(state_dir)).stdout, 8)
        assert mode & 0o077 == 0, f"state directory mode {mode:o}"  # setgid stays; no access
        seal = json.loads(podman.run("exec", name, "cat", f"{state_dir}/seal.json").stdout)
        assert seal["type"] == "file"
        assert seal["path"] == args[args.index("--init-file-seal") + 1]
        show = ("exec", name, "cloister", "cas", "show-certificate", "--state", str(state_dir))
        first = podman.run(*show).stdout
        podman.run("restart", "-t", "5", name)
        _wait_healthy(podman, name)  # unsealed again with the key from the Secret
        assert podman.run(*show).stdout == first, "the CAS's identity changed at a restart"
    finally:  # -v: with the anonymous volume of the image's other VOLUME (cas-key)
        podman.run("rm", "-f", "-v", "-t", "0", name, check=False)
    on_volume = [p for p in hosts["state"].rglob("*") if p.is_file()  # type: ignore[union-attr]
                 and (master_key in p.read_bytes() or master_key.hex().encode() in p.read_bytes())]
    assert (hosts["state"] / state_dir.name / "seal.json").exists()  # type: ignore[operator]
    assert on_volume == [], f"the master key reached the persistent volume: {on_volume}"


def _kubelet_volumes(spec: dict[str, Any], tmp: Path, group: int,
                     master_key: bytes) -> dict[str, Path | None]:
    """Host directories as the kubelet prepares the pod's volumes for ``fsGroup`` (None: a
    disk-backed emptyDir of one container, a tmpfs here)."""
    hosts: dict[str, Path | None] = {}
    for volume in spec["volumes"]:
        name = volume["name"]
        if "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory":
            hosts[name] = None
            continue
        host = tmp / name
        host.mkdir()
        os.chown(host, 0, group)
        if "secret" in volume:  # the Secret's files: defaultMode plus group read (fsGroup)
            (item,) = volume["secret"]["items"]
            key = host / item["path"]
            key.write_bytes(master_key)
            os.chown(key, 0, group)
            key.chmod(volume["secret"]["defaultMode"] | 0o040)
            host.chmod(0o2755)
        else:  # a memory emptyDir shared by the init container and the CAS
            host.chmod(0o2777)
        hosts[name] = host
    state = tmp / "state"  # the StatefulSet's volume claim
    state.mkdir()
    os.chown(state, 0, group)
    state.chmod(0o2775)
    hosts["state"] = state
    return hosts


def _wait_healthy(podman: Podman, name: str) -> None:
    deadline = time.monotonic() + 90
    while podman.run("healthcheck", "run", name, check=False).returncode != 0:
        state = podman.run("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
        logs = podman.run("logs", name, check=False)
        assert state == "running", f"the CAS pod's container stopped: {logs.stderr[-800:]}"
        assert time.monotonic() < deadline, logs.stderr[-800:]
        time.sleep(1)
