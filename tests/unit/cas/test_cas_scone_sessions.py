"""The CAS side of SCONE's 0.3 features: unserved features refused at create (422), and
config-fragments imported from another session applied before validation."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.cas import Caller
from cloister.cas._errors_http import status_for
from cloister.cas._release import build_config
from cloister.cas._sessions import SessionService
from cloister.secrets import SecretValue
from scone_sessions import UNSERVED

ALICE = Caller("a" * 64, "PEM-A")
BOB = Caller("b" * 64, "PEM-B")
M = "a" * 64
N = "b" * 64

ADMIN = f"""\
name: policy_admin
version: "0.3.10"
secrets:
  - name: shared_access_policy
    kind: config-fragment
    export: {{session: app}}
    value:
      read: [ANY]
      update: [CREATOR]
  - name: app_attestation
    kind: config-fragment
    export: {{session: app}}
    value:
      mrenclave: [{N}]
"""

APP = """\
name: app
version: "0.3.10"
access_policy: $$SCONE::external_policy$$
services:
  - name: api
    command: python3 api.py
    attestation: $$SCONE::api_attestation$$
secrets:
  - name: external_policy
    kind: config-fragment
    import: {session: policy_admin, secret: shared_access_policy}
  - name: api_attestation
    kind: config-fragment
    import: {session: policy_admin, secret: app_attestation}
"""


@pytest.mark.parametrize(("feature", "text"), UNSERVED.items(), ids=UNSERVED.keys())
def test_the_cas_refuses_an_unserved_feature_with_422_naming_it(
    svc: SessionService, feature: str, text: str
) -> None:
    with pytest.raises(errors.UnservedFeature) as caught:
        svc.write(text, ALICE)
    assert status_for(caught.value) == 422
    assert f"{feature} is part of SCONE's language; cloister's CAS cannot serve it" in (
        caught.value.message)
    assert svc.store.current("demo") is None


def test_an_imported_fragment_drives_access_policy_and_attestation(svc: SessionService) -> None:
    svc.write(ADMIN, ALICE)
    svc.write(APP, ALICE)
    app = svc.parsed(svc._current("app"))
    assert app.access_policy.read == ("ANY",)
    assert app.service("api") is not None
    assert app.service("api").mrenclaves == (N,)  # type: ignore[union-attr]
    # read: ANY came from the fragment: another identity may now read the session
    assert svc.read("app", BOB).name == "app"


def test_the_exporter_changing_the_fragment_changes_the_importer(svc: SessionService) -> None:
    svc.write(ADMIN, ALICE)
    svc.write(APP, ALICE)
    current = svc._current("policy_admin")
    svc.write(ADMIN.replace(f"mrenclave: [{N}]", f"mrenclave: [{M}]")
              + f"predecessor: {current.hash}\n", ALICE)
    assert svc.parsed(svc._current("app")).service("api").mrenclaves == (M,)  # type: ignore


def test_an_error_in_an_imported_fragment_names_the_exporters_line(svc: SessionService) -> None:
    svc.write(ADMIN.replace("read: [ANY]", "read: [ANY, CREATOR]"), ALICE)
    with pytest.raises(errors.PolicyError) as caught:
        svc.write(APP, ALICE)
    assert caught.value.message == (
        "config-fragment 'shared_access_policy' of session 'policy_admin' line 8 column 13: "
        "access_policy.read: ANY must be the only entry")


def test_a_fragment_that_is_not_exported_to_the_importer_is_refused(
    svc: SessionService,
) -> None:
    svc.write(ADMIN.replace("export: {session: app}\n    value:\n      read",
                            "export: {session: other}\n    value:\n      read"), ALICE)
    with pytest.raises(errors.SecretError, match="does not export it to 'app'"):
        svc.write(APP, ALICE)


VOLUME_KEY = "f843051d21afa9e52a5b54a708a8032bc49581e982696a81393b8da4a32d00b8"
EXPLICIT_VOLUME = f"""\
name: vols
version: "0.3.10"
services:
  - name: db
    mrenclaves: [{M}]
    image_name: db_image
images:
  - name: db_image
    volumes:
      - name: my_database
        path: /media/database
      - name: keyed_by_secret
        path: /media/other
volumes:
  - name: my_database
    fspf_key: {VOLUME_KEY}
    fspf_tag: 8d8fbe332fb9c893020be791ccd3e8a8
  - name: keyed_by_secret
    fspf_key: $$SCONE::volume_key$$
secrets:
  - name: volume_key
    kind: binary
    size: 32
"""


def test_a_volume_with_an_explicit_key_is_released_with_that_key(svc: SessionService) -> None:
    svc.write(EXPLICIT_VOLUME, ALICE)
    session, materials = svc.released_values("vols")
    values = {k: SecretValue.from_bytes(v) for k, v in materials.items()}
    config = build_config(session, session.services[0], values)
    keys = {v["name"]: v["key"] for v in config["volumes"]}
    assert keys["my_database"] == VOLUME_KEY
    assert values["volume_key"].data is not None
    assert keys["keyed_by_secret"] == values["volume_key"].data.hex()


def test_a_volume_is_imported_by_its_alias_with_the_exporters_key(svc: SessionService) -> None:
    svc.write("""\
name: database_server
version: "0.3.10"
volumes:
  - name: my_database
    export:
      - to: {session: processing_component_2}
        volume_alias: input
""", ALICE)
    importer = """\
name: processing_component_2
version: "0.3.10"
volumes:
  - name: dataset
    import: {session: database_server, volume: VOLUME}
"""
    with pytest.raises(errors.SecretError, match="does not export it"):
        svc.write(importer.replace("VOLUME", "my_database"), ALICE)  # only by its alias
    svc.write(importer.replace("VOLUME", "input"), ALICE)
    exporter_key = svc.released_values("database_server")[1]["~volume.my_database"]
    assert svc.released_values("processing_component_2")[1]["~volume.dataset"] == exporter_key


def test_fragment_imports_in_a_cycle_are_refused(svc: SessionService) -> None:
    exporter = """\
name: NAME
version: "0.3.10"
secrets:
  - name: frag
    kind: config-fragment
    export: {session: OTHER}
    value: [CREATOR]
"""
    svc.write(exporter.replace("NAME", "b").replace("OTHER", "a"), ALICE)
    svc.write(exporter.replace("NAME", "a").replace("OTHER", "b")
              + "  - name: theirs\n    kind: config-fragment\n"
                "    import: {session: b, secret: frag}\n"
              + "access_policy:\n  read: $$SCONE::theirs$$\n", ALICE)
    current = svc._current("b").hash
    with pytest.raises(errors.SecretError, match="form a cycle"):
        svc.write(exporter.replace("NAME", "b").replace("OTHER", "a")
                  + "  - name: theirs\n    kind: config-fragment\n"
                    "    import: {session: a, secret: frag}\n"
                  + f"access_policy:\n  read: $$SCONE::theirs$$\npredecessor: {current}\n",
                  ALICE)
