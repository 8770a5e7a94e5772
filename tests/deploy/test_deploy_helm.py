"""The Helm chart rendered and linted by Helm's own engine (PyPI's ``helm-python-sdk``
embeds it: no helm binary, no cluster) with several value sets; every manifest validated
by ``kubernetes-validate --strict``; ``helm lint --strict`` clean; the test hook, the LAS
socket shared through a hostPath, the CAS state directory and the probes asserted on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import CHART, helm, kubernetes_validate

CA = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
#: the CAS's master key (its file seal) comes from this Secret
MASTER_KEY = "cas.masterKeySecret=cas-master-key"
SEED = ["image=registry.example/patients-api:1", "scone.flask_session=flask-s/flask_restapi",
        "scone.redis_session=redis-s/redis", MASTER_KEY]

VALUE_SETS: dict[str, list[str]] = {
    "default": SEED,
    "loadbalancer-3-replicas": [*SEED, "service.type=LoadBalancer", "replicaCount=3"],
    "external-cas": [*SEED, "cas.enabled=false", "las.enabled=false",
                     "scone.cas=cas.example.org:8081"],
    "platform-only": ["api.enabled=false", "redis.enabled=false", MASTER_KEY],
}


class RenderFailed(Exception):
    pass


def values(sets: list[str], with_ca: bool = True) -> dict[str, Any]:
    """``--set`` expressions (Helm's own parser) and ``--set-file scone.casCert=…``."""
    merged: dict[str, Any] = {}
    for item in sets:
        _merge(merged, helm().parse_set_string(item))
    if with_ca:
        _merge(merged, {"scone": {"casCert": CA}})
    return merged


def _merge(into: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def render(sets: list[str], with_ca: bool = True, *, release: str = "api-v1",
           notes: bool = False) -> str:
    """What ``helm template RELEASE deploy/helm -n prod --set …`` prints (or NOTES.txt)."""
    lib = helm()
    try:
        out = lib.Chart.load(CHART).render(values(sets, with_ca), name=release,
                                           namespace="prod", is_install=True)
    except lib.HelmError as err:
        raise RenderFailed(str(err)) from None
    if notes:
        return out["cloister/templates/NOTES.txt"]
    return "".join(f"---\n# Source: {path}\n{text.strip()}\n" for path, text in sorted(out.items())
                   if not path.endswith("NOTES.txt") and text.strip())


def docs(text: str) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(text):
        if doc:
            yield doc


def by_kind(text: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs(text)}


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_rendered_manifest_validates(name: str, tmp_path: Path) -> None:
    text = render(VALUE_SETS[name])
    out = tmp_path / f"{name}.yaml"
    out.write_text(text)
    checked = subprocess.run([*kubernetes_validate(), "--strict", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    count = len(list(docs(text)))
    assert checked.stdout.count("passed for resource") == count > 0


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_helm_lint_strict_is_clean(name: str) -> None:
    report = helm().lint(CHART, values(VALUE_SETS[name]), strict=True, namespace="prod")
    assert report["errors"] == [], report
    # severity 1 is INFO ("icon is recommended"); WARNING (2) and ERROR (3) fail --strict
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report


def test_helm_lint_strict_finds_a_broken_chart(tmp_path: Path) -> None:
    import shutil  # noqa: PLC0415
    broken = tmp_path / "cloister"
    shutil.copytree(CHART, broken)
    path = broken / "templates/api.yaml"
    path.write_text(path.read_text().replace("{{- end }}\n", "", 1))
    report = helm().lint(broken, values(SEED), strict=True)
    assert report["errors"] or any(m["severity"] == 3 for m in report["messages"])


def test_default_objects() -> None:
    objs = by_kind(render(SEED))
    assert set(objs) == {
        ("Service", "api-v1-api"), ("Deployment", "api-v1-api"), ("ConfigMap", "api-v1-cas-cert"),
        ("Service", "api-v1-cas"), ("StatefulSet", "api-v1-cas"), ("DaemonSet", "api-v1-las"),
        ("Service", "api-v1-redis"), ("Deployment", "api-v1-redis"), ("Pod", "api-v1-test-api"),
    }
    cas = objs[("StatefulSet", "api-v1-cas")]
    assert cas["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    assert "api-v1-cas.prod.svc" in cas["spec"]["template"]["spec"]["containers"][0]["args"]



def test_cas_state_directory_is_inside_its_volume_not_the_volume_root() -> None:
    """The kubelet leaves a volume's root group-accessible (fsGroup), which the CAS refuses
    for its state directory (``unsafe permissions 0775``): the state is one level below."""
    cas = pod_spec(by_kind(render(SEED))[("StatefulSet", "api-v1-cas")])
    container = cas["containers"][0]
    args = container["args"]
    state = Path(args[args.index("--state") + 1])
    mount = Path(next(m["mountPath"] for m in container["volumeMounts"] if m["name"] == "state"))
    assert cas["securityContext"]["fsGroup"] == 10001
    assert state.parent == mount, f"--state {state} is the volume root {mount} or outside it"


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if n != "external-cas"])
def test_cas_is_initialised_with_a_file_seal_whose_key_comes_from_a_secret(name: str) -> None:
    """``cas serve`` refuses an uninitialised state: the CAS gets ``--init-file-seal`` with
    the master key from ``cas.masterKeySecret``, copied 0600 by an init container into
    memory (fsGroup leaves Secret files group-readable, which the CAS refuses), outside
    the state directory and off the persistent volume."""
    spec = pod_spec(by_kind(render(VALUE_SETS[name]))[("StatefulSet", "api-v1-cas")])
    check_cas_seal(spec)


def check_cas_seal(spec: dict[str, Any]) -> None:
    container = spec["containers"][0]
    args = container["args"]
    key = Path(args[args.index("--init-file-seal") + 1])
    state = Path(args[args.index("--state") + 1])
    assert state not in key.parents
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (keys,) = [n for n, m in mounts.items() if Path(m["mountPath"]) == key.parent]
    assert mounts[keys].get("readOnly") is True
    assert volumes[keys]["emptyDir"]["medium"] == "Memory", "the key must not reach a disk"
    assert keys != "state" and "persistentVolumeClaim" not in volumes[keys]
    (init,) = [c for c in spec["initContainers"] if c["name"] == "keys"]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    secret = volumes["master-key"]["secret"]
    assert secret["secretName"] == "cas-master-key"
    assert secret["items"] == [{"key": "master.key", "path": "master.key"}]
    source = f"{init_mounts['master-key']}/master.key"
    assert f"install -m 0600 {source}" in init["command"][-1]
    assert init_mounts[keys] == str(key.parent)


def test_cas_without_a_master_key_secret_is_refused_with_the_command_to_make_one() -> None:
    with pytest.raises(RenderFailed, match=r"cas.masterKeySecret is required.*head -c 32"):
        render([s for s in SEED if s != MASTER_KEY])
    render([*(s for s in SEED if s != MASTER_KEY), "cas.enabled=false", "las.enabled=false",
            "scone.cas=cas.example.org:8081"])  # no CAS of its own: no key needed


def test_las_socket_is_shared_through_a_host_path_not_a_host_port() -> None:
    objs = by_kind(render(SEED))
    las = pod_spec(objs[("DaemonSet", "api-v1-las")])
    container = las["containers"][0]
    assert "ports" not in container and "--listen" not in container["args"]
    assert "--allow-remote" not in container["args"]
    socket = container["args"][container["args"].index("--socket") + 1]
    assert socket == "/run/cloister/las.sock"
    assert las["hostPID"] is True  # the LAS measures its caller through /proc/<pid>

    def host_dir(spec: dict[str, Any], c: dict[str, Any]) -> tuple[str, bool]:
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/run/cloister")
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        return volume["hostPath"]["path"], bool(mount.get("readOnly"))

    assert host_dir(las, container) == ("/run/cloister", False)
    for name in ("api-v1-api", "api-v1-redis"):
        spec = pod_spec(objs[("Deployment", name)])
        workload = spec["containers"][0]
        assert host_dir(spec, workload) == ("/run/cloister", True), name
        env = {e["name"]: e.get("value") for e in workload["env"]}
        assert env["CLOISTER_LAS_ADDR"] == socket, name
        assert "hostPID" not in spec and "hostNetwork" not in spec, name


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return dict(obj["spec"]["template"]["spec"] if "template" in obj["spec"] else obj["spec"])


def test_security_contexts_resources_and_probes() -> None:
    objs = by_kind(render(SEED))
    for (kind, name), obj in objs.items():
        if kind in {"Service", "ConfigMap"}:
            continue
        spec = pod_spec(obj)
        if name.endswith("-las"):
            # the LAS reads /proc/PID of other uids' non-dumpable callers: root, with
            # CAP_SYS_PTRACE and DAC_READ_SEARCH only
            assert spec["securityContext"]["runAsUser"] == 0
            las_caps = spec["containers"][0]["securityContext"]["capabilities"]
            assert las_caps == {"drop": ["ALL"], "add": ["SYS_PTRACE", "DAC_READ_SEARCH"]}
        else:
            assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert c["resources"]["limits"], (name, c["name"])
            # init containers take no probes (the API server refuses them): they run to the end
            if kind != "Pod" and c in spec["containers"]:
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


def test_injected_paths_are_memory_volumes() -> None:
    objs = by_kind(render(SEED))
    for name, path in (("api-v1-api", "/tls"), ("api-v1-redis", "/run/redis-tls")):
        spec = pod_spec(objs[("Deployment", name)])
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == path)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert volume["emptyDir"]["medium"] == "Memory"
    env = api_env(objs)
    assert env["CLOISTER_CONFIG_ID"]["value"] == "flask-s/flask_restapi"
    assert env["CLOISTER_LAS_ADDR"]["value"] == "/run/cloister/las.sock"
    # every workload under its own uid (pinned by its session)
    api_uid = pod_spec(objs[("Deployment", "api-v1-api")])["securityContext"]["runAsUser"]
    redis_uid = pod_spec(objs[("Deployment", "api-v1-redis")])["securityContext"]["runAsUser"]
    assert (api_uid, redis_uid) == (10002, 10001)
    assert env["CLOISTER_CAS_ADDR"]["value"] == "api-v1-cas:8081"
    assert objs[("ConfigMap", "api-v1-cas-cert")]["data"]["cas-ca.pem"] == CA


def test_helm_test_hook_verifies_the_api_with_the_ca_from_the_cas() -> None:
    objs = by_kind(render(SEED))
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


def test_loadbalancer_and_replicas() -> None:
    objs = by_kind(render(VALUE_SETS["loadbalancer-3-replicas"]))
    assert objs[("Service", "api-v1-api")]["spec"]["type"] == "LoadBalancer"
    assert objs[("Deployment", "api-v1-api")]["spec"]["replicas"] == 3


def test_external_cas_deploys_no_cas() -> None:
    objs = by_kind(render(VALUE_SETS["external-cas"]))
    kinds = {kind for kind, _ in objs}
    assert "StatefulSet" not in kinds and "DaemonSet" not in kinds
    env = api_env(objs)
    assert env["CLOISTER_CAS_ADDR"]["value"] == "cas.example.org:8081"


def test_notes() -> None:
    notes = render([*SEED, "service.type=LoadBalancer"], notes=True)
    assert "helm test api-v1" in notes
    assert "--cacert cacert.pem" in notes and " -k" not in notes
    assert "--state /var/lib/cloister/cas/state" in notes


@pytest.mark.parametrize(("sets", "with_ca", "message"), [
    ([s for s in SEED if not s.startswith("image=")], True, "image is required"),
    ([s for s in SEED if "flask_session" not in s], True, "scone.flask_session is required"),
    (SEED, False, "scone.casCert is required"),
])
def test_missing_required_value_is_rejected_by_helm(sets: list[str], with_ca: bool,
                                                   message: str) -> None:
    with pytest.raises(RenderFailed, match=message):
        render(sets, with_ca)


@pytest.mark.parametrize(("bad", "complaint"), [
    ("replicaCount=three", "spec.replicas: 'three' is not of type 'integer'"),
    ("service.port=https-port", "is not of type 'integer'"),
])
def test_invalid_value_is_rejected_by_validation(bad: str, complaint: str,
                                                 tmp_path: Path) -> None:
    text = render([*SEED, bad])  # the chart has no values schema: Helm renders it as given
    out = tmp_path / "bad.yaml"
    out.write_text(text)
    checked = subprocess.run([*kubernetes_validate(), "--strict", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode != 0
    assert complaint in checked.stdout + checked.stderr
