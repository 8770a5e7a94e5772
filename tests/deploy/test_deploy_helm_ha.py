"""The chart's highly available CAS: ``cas.replicas`` on an external PostgreSQL (URL from a
Secret, TLS to the database), one master key from a Secret, a PodDisruptionBudget — rendered,
validated by ``kubernetes-validate --strict``, and refused where it cannot work."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import test_deploy_helm as base
from deploy_support import kubernetes_validate
from test_deploy_helm import by_kind, pod_spec

#: render(sets, release) -> (ok, manifests or the error)
Render = Callable[..., tuple[bool, str]]


@pytest.fixture
def render(request: pytest.FixtureRequest) -> Render:
    """The chart rendered the way test_deploy_helm renders it (Helm's engine or the
    text/template renderer, whichever this checkout uses)."""
    if hasattr(base, "RenderFailed"):
        def with_helm(sets: list[str], release: str = "api-v1") -> tuple[bool, str]:
            try:
                return True, base.render(sets, False, release=release)
            except base.RenderFailed as err:
                return False, str(err)
        return with_helm
    renderer = request.getfixturevalue("renderer")

    def with_renderer(sets: list[str], release: str = "api-v1") -> tuple[bool, str]:
        done = base.render(renderer, sets, None, release=release)
        return done.returncode == 0, done.stdout if done.returncode == 0 else done.stderr
    return with_renderer


renderer = getattr(base, "renderer", None)  # the text/template renderer's fixture, if any

HA = ["api.enabled=false", "redis.enabled=false", "cas.replicas=3",
      "cas.postgresql.urlSecret=cas-db", "cas.postgresql.caConfigMap=cas-db-ca",
      "cas.masterKeySecret=cas-master-key"]


def _volume(spec: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in spec["volumes"] if v["name"] == name)


def test_replicas_on_postgresql_render_and_validate(render: Render, tmp_path: Path) -> None:
    ok, text = render(HA, release="platform")
    assert ok, text
    out = tmp_path / "ha.yaml"
    out.write_text(text)
    checked = subprocess.run([*kubernetes_validate(), "--strict", str(out)],
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    objs = by_kind(text)
    cas = objs[("StatefulSet", "platform-cas")]
    assert cas["spec"]["replicas"] == 3 and cas["spec"]["podManagementPolicy"] == "Parallel"
    spec = pod_spec(cas)
    args = spec["containers"][0]["args"]
    assert args[args.index("--store-file") + 1] == "/run/cloister/keys/url"
    assert args[args.index("--init-file-seal") + 1] == "/run/cloister/keys/master.key"
    base.check_cas_seal(spec)
    # the keys reach the CAS 0600 in memory, copied by an init container from the Secrets
    assert _volume(spec, "keys")["emptyDir"]["medium"] == "Memory"
    assert _volume(spec, "store-url")["secret"]["secretName"] == "cas-db"
    assert _volume(spec, "master-key")["secret"]["secretName"] == "cas-master-key"
    assert _volume(spec, "db-ca")["configMap"]["name"] == "cas-db-ca"
    (init,) = spec["initContainers"]
    assert "install -m 0600" in init["command"][-1]
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    spread = spec["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    pdb = objs[("PodDisruptionBudget", "platform-cas")]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == cas["spec"]["selector"]["matchLabels"]


def test_default_cas_is_one_sqlite_pod_without_pdb(render: Render) -> None:
    ok, text = render(["api.enabled=false", "redis.enabled=false", base.MASTER_KEY])
    assert ok, text
    objs = by_kind(text)
    cas = objs[("StatefulSet", "api-v1-cas")]
    assert cas["spec"]["replicas"] == 1
    assert "--store-file" not in pod_spec(cas)["containers"][0]["args"]
    assert not [k for k in objs if k[0] == "PodDisruptionBudget"]


def test_impossible_ha_values_are_refused_with_the_reason(render: Render) -> None:
    platform = ["api.enabled=false", "redis.enabled=false"]
    ok, error = render([*platform, base.MASTER_KEY, "cas.replicas=2"])
    assert not ok and "cas.replicas > 1 needs cas.postgresql.urlSecret" in error, error
    ok, error = render([*platform, "cas.postgresql.urlSecret=db"])
    assert not ok and "cas.masterKeySecret is required" in error, error
