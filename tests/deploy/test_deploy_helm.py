"""The Helm chart rendered offline (deploy/tools/helm-render: text/template + sprig, built
from Debian's Go packages) with several value sets; every manifest validated by
``kubernetes-validate --strict``; the test hook and probes asserted on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CHART, build_renderer, kubernetes_validate

CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
SEED = ["image=registry.example/patients-api:1", "scone.flask_session=flask-s/flask_restapi",
        "scone.redis_session=redis-s/redis"]

VALUE_SETS: dict[str, list[str]] = {
    "default": SEED,
    "loadbalancer-3-replicas": [*SEED, "service.type=LoadBalancer", "replicaCount=3"],
    "external-cas": [*SEED, "cas.enabled=false", "las.enabled=false",
                     "scone.cas=cas.example.org:8081"],
    "platform-only": ["api.enabled=false", "redis.enabled=false"],
}


@pytest.fixture(scope="session")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_renderer(tmp_path_factory.mktemp("helm-render") / "helm-render")


@pytest.fixture(scope="session")
def ca_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "cas-ca.pem"
    path.write_text(CA)
    return path


def render(renderer: Path, sets: list[str], ca_file: Path | None = None,
           *extra: str, release: str = "api-v1") -> subprocess.CompletedProcess[str]:
    args = [str(renderer), "--chart", str(CHART), "--release", release, "--namespace", "prod"]
    for item in sets:
        args += ["--set", item]
    if ca_file is not None:
        args += ["--set-file", f"scone.casCert={ca_file}"]
    return subprocess.run([*args, *extra], capture_output=True, text=True, timeout=60)


def docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


def by_kind(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs(text)}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_manifest_validates(renderer: Path, ca_file: Path, name: str,
                                          tmp_path: Path) -> None:
    done = render(renderer, VALUE_SETS[name], ca_file)
    assert done.returncode == 0, done.stderr
    out = tmp_path / f"{name}.yaml"
    out.write_text(done.stdout)
    checked = subprocess.run([*kubernetes_validate(), "--strict", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = len(list(docs(done.stdout)))
    assert checked.stdout.count("passed for resource") == count > 0


def test_default_objects(renderer: Path, ca_file: Path) -> None:
    objs = by_kind(render(renderer, SEED, ca_file).stdout)
    assert set(objs) == {
        ("Service", "api-v1-api"), ("Deployment", "api-v1-api"), ("ConfigMap", "api-v1-cas-cert"),
        ("Service", "api-v1-cas"), ("StatefulSet", "api-v1-cas"), ("DaemonSet", "api-v1-las"),
        ("Service", "api-v1-redis"), ("Deployment", "api-v1-redis"), ("Pod", "api-v1-test-api"),
    }
    cas = objs[("StatefulSet", "api-v1-cas")]
    assert cas["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert "api-v1-cas.prod.svc" in cas["spec"]["template"]["spec"]["containers"][0]["args"]
    las = objs[("DaemonSet", "api-v1-las")]["spec"]["template"]["spec"]["containers"][0]
    assert las["ports"][0]["hostPort"] == 18766


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"])


def test_security_contexts_resources_and_probes(renderer: Path, ca_file: Path) -> None:
    objs = by_kind(render(renderer, SEED, ca_file).stdout)
    for (kind, name), obj in objs.items():
        if kind in {"Service", "ConfigMap"}:
            continue
        spec = pod_spec(obj)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert c["resources"]["limits"], (name, c["name"])
            if kind != "Pod":
                assert {"readinessProbe", "livenessProbe"} <= set(c), (name, c["name"])
    api = pod_spec(objs[("Deployment", "api-v1-api")])["containers"][0]
    assert api["readinessProbe"]["tcpSocket"]["port"] == "https"
    assert api["startupProbe"]["failureThreshold"] * api["startupProbe"]["periodSeconds"] >= 120
    cas = pod_spec(objs[("StatefulSet", "api-v1-cas")])["containers"][0]
    assert cas["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https",
                                               "scheme": "HTTPS"}


def api_env(objs: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e for e in pod_spec(objs[("Deployment", "api-v1-api")])["containers"][0]
            ["env"]}


def test_injected_paths_are_memory_volumes(renderer: Path, ca_file: Path) -> None:
    objs = by_kind(render(renderer, SEED, ca_file).stdout)
    for name, path in (("api-v1-api", "/tls"), ("api-v1-redis", "/run/redis-tls")):
        spec = pod_spec(objs[("Deployment", name)])
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == path)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["emptyDir"]["medium"] == "Memory"
    env = api_env(objs)
    assert env["CLOISTER_CONFIG_ID"]["value"] == "flask-s/flask_restapi"
    assert env["CLOISTER_LAS_ADDR"]["value"] == "$(HOST_IP):18766"
    assert env["CLOISTER_CAS_ADDR"]["value"] == "api-v1-cas:8081"
    assert objs[("ConfigMap", "api-v1-cas-cert")]["data"]["cas-ca.pem"] == CA


def test_helm_test_hook_verifies_the_api_with_the_ca_from_the_cas(renderer: Path,
                                                                 ca_file: Path) -> None:
    objs = by_kind(render(renderer, SEED, ca_file).stdout)
    pod = objs[("Pod", "api-v1-test-api")]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    fetch = pod["spec"]["initContainers"][0]
    fetch_cmd = fetch["command"][-1]
    assert "cloister values \"$FLASK_SESSION\" api_ca_cert" in fetch_cmd
    assert "--cas-cert /var/lib/cloister/public/cas-ca.pem" in fetch_cmd
    assert {e["name"]: e["value"] for e in fetch["env"]}["FLASK_SESSION"] == "flask-s"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert "--cacert /work/api-ca.pem" in script
    assert " -k" not in script and "--insecure" not in script
    assert "--connect-to api:443:api-v1-api:443" in script
    for request in ('-X POST "$URL/patient/$ID"', '-X GET "$URL/patient/$ID"',
                    '-X GET "$URL/score/$ID"'):
        assert request in script


def test_loadbalancer_and_replicas(renderer: Path, ca_file: Path) -> None:
    objs = by_kind(render(renderer, VALUE_SETS["loadbalancer-3-replicas"], ca_file).stdout)
    assert objs[("Service", "api-v1-api")]["spec"]["type"] == "LoadBalancer"
    assert objs[("Deployment", "api-v1-api")]["spec"]["replicas"] == 3


def test_external_cas_deploys_no_cas(renderer: Path, ca_file: Path) -> None:
    objs = by_kind(render(renderer, VALUE_SETS["external-cas"], ca_file).stdout)
    kinds = {kind for kind, _ in objs}
    assert "StatefulSet" not in kinds and "DaemonSet" not in kinds
    env = api_env(objs)
    assert env["CLOISTER_CAS_ADDR"]["value"] == "cas.example.org:8081"


def test_notes(renderer: Path, ca_file: Path) -> None:
    done = render(renderer, [*SEED, "service.type=LoadBalancer"], ca_file, "--notes")
    assert done.returncode == 0, done.stderr
    assert "helm test api-v1" in done.stdout
    assert "--cacert cacert.pem" in done.stdout and " -k" not in done.stdout


@pytest.mark.parametrize(("sets", "with_ca", "message"), [
    ([s for s in SEED if not s.startswith("image=")], True, "image is required"),
    ([s for s in SEED if "flask_session" not in s], True, "scone.flask_session is required"),
    (SEED, False, "scone.casCert is required"),
])
def test_missing_required_value_is_rejected_by_the_renderer(
        renderer: Path, ca_file: Path, sets: list[str], with_ca: bool, message: str) -> None:
    done = render(renderer, sets, ca_file if with_ca else None)
    assert done.returncode == 1
    assert message in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(("bad", "complaint"), [
    ("replicaCount=three", "spec.replicas: 'three' is not of type 'integer'"),
    ("service.port=https-port", "is not of type 'integer'"),
])
def test_invalid_value_is_rejected_by_validation(renderer: Path, ca_file: Path, bad: str,
                                                 complaint: str, tmp_path: Path) -> None:
    done = render(renderer, [*SEED, bad], ca_file)
    assert done.returncode == 0, done.stderr  # the renderer does not type-check values
    out = tmp_path / "bad.yaml"
    out.write_text(done.stdout)
    checked = subprocess.run([*kubernetes_validate(), "--strict", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode != 0
    assert complaint in checked.stdout + checked.stderr
