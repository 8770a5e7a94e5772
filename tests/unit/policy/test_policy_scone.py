"""SCONE sessions as people write them: every documented feature loads, every
accept-but-should-not case is refused with its rule, and the messages name the cause."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from cloister.errors import PolicyError
from cloister.policy import load_session
from cloister.policy._model import SecretKind
from scone_sessions import FEATURES, HEAD, SERVICE, SHOULD_NOT_LOAD, SIGNER, UNSERVED, M, session


@pytest.mark.parametrize("text", FEATURES.values(), ids=FEATURES.keys())
def test_every_served_scone_feature_loads_without_warnings_about_serving(text: str) -> None:
    loaded = load_session(text)
    assert loaded.unserved == ()


def test_otp_shared_secrets_are_kept_per_session_and_per_service() -> None:
    both = load_session(FEATURES["otp in security.attestation"])
    assert both.security.attestation.one_time_password_shared_secret == (
        "BASE32SECRET3232BASE32SECRET3232")
    per_service = load_session(FEATURES["otp per service, from a binary secret"])
    assert per_service.services[0].one_time_password_shared_secret == (
        "$$SCONE::otp_shared_secret:base32nopad$$")


def test_local_fragments_are_expanded_into_attestation_lists_merged() -> None:
    loaded = load_session(FEATURES["config-fragment in a service's attestation"])
    first, second = loaded.services[0].attestation
    assert first.mrenclaves == (M, "b" * 64, "c" * 64)  # "lists will be combined"
    assert second.signer is not None and second.signer.mrsigner == SIGNER
    assert second.signer.isvprodid == 213 and second.signer.isvsvn_min == 13


def test_an_imported_fragment_is_noted_by_check_and_applied_when_the_cas_gives_it() -> None:
    text = FEATURES["config-fragment imported for access_policy"]
    checked = load_session(text)
    assert checked.access_policy.read == ("CREATOR",)
    assert "the CAS checks it when the session is created" in checked.notes[0]
    fragment = "\n" * 13 + "      read: [ANY]\n      update: [CREATOR]\n"
    origin = "config-fragment 'shared_access_policy' of session 'policy_admin'"
    served = load_session(text, fragments={"external_policy": (fragment, origin)})
    assert served.access_policy.read == ("ANY",)
    assert served.digest == checked.digest  # the hash is of the text as written


def test_an_error_inside_an_imported_fragment_names_the_fragment_and_its_own_line() -> None:
    text = FEATURES["config-fragment imported for access_policy"]
    fragment = "\n" * 13 + "      read: [ANY, CREATOR]\n      updte: [CREATOR]\n"
    origin = "config-fragment 'shared_access_policy' of session 'policy_admin'"
    with pytest.raises(PolicyError) as caught:
        load_session(text, fragments={"external_policy": (fragment, origin)})
    assert caught.value.lines() == [
        f"{origin} line 14 column 13: access_policy.read: ANY must be the only entry",
        f"{origin} line 15 column 7: unknown key 'updte' in access_policy; did you mean "
        "'update'?",
    ]


def test_an_error_inside_a_local_fragment_points_at_the_fragments_line() -> None:
    text = FEATURES["config-fragment in a service's attestation"].replace(
        "isvprodid: 213", "isvprodid: many")
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert caught.value.message == (
        "line 22 column 20: signer.isvprodid must be an integer, got str 'many'")


def test_a_fragment_inside_text_is_refused_with_the_rule() -> None:
    text = FEATURES["config-fragment in a service's attestation"].replace(
        "command: python3 lb.py", "command: python3 lb.py $$SCONE::mrenclave_list$$")
    with pytest.raises(PolicyError, match="can only stand alone for a section"):
        load_session(text)


def test_service_access_token_and_singleton_are_read() -> None:
    assert load_session(FEATURES["security.service_access_token"]).security \
        .service_access_token == "j765WyMWTKksiqWbBuuc"
    assert load_session(FEATURES["security.singleton_enclaves"]).security.singleton_enclaves


def test_volumes_keep_explicit_keys_exports_and_imports() -> None:
    explicit = load_session(FEATURES["volume with explicit fspf_key and fspf_tag"]).volumes[0]
    assert explicit.fspf_key == "f843051d21afa9e52a5b54a708a8032bc49581e982696a81393b8da4a32d00b8"
    assert explicit.fspf_tag == "8d8fbe332fb9c893020be791ccd3e8a8"
    exported = load_session(FEATURES["volume export"]).volumes[0]
    assert [(e.target.session, e.update_policy, e.alias) for e in exported.export] == [
        ("another-session", None, None), ("web_server", "ephemeral", "output")]
    imported = load_session(FEATURES["volume import"]).volumes[0]
    assert imported.import_ is not None
    assert (imported.import_.session, imported.import_.volume) == (
        "the_exporting_session", "my_database")


def test_relative_session_paths_resolve_against_the_sessions_namespace() -> None:
    loaded = load_session(FEATURES["relative session paths"])  # name: team/app
    key, token = loaded.secrets
    assert key.import_ is not None and key.import_.session == "team/key_owner"
    assert token.export[0].session == "team/app/nested"


def test_a_relative_path_above_the_top_namespace_is_refused() -> None:
    text = FEATURES["relative session paths"].replace("../key_owner", "../../../x")
    with pytest.raises(PolicyError, match="goes above the top namespace"):
        load_session(text)


def test_escaped_host_variables_are_scones_at_at_names() -> None:
    service = load_session(FEATURES["\\@\\@NAME host variables"]).services[0]
    assert dict(service.environment) == {"@@NAME": "SESSION_VALUE"}
    assert service.command == ("./print-arg-env", "arg1", "@@1")


def test_image_names_may_hold_colons_and_slashes() -> None:
    loaded = load_session(FEATURES["image names with : and /"])
    assert [i.name for i in loaded.images] == ["registry/app:tag", "volume-demo:1.0"]
    assert loaded.services[0].image_name == "registry/app:tag"


def test_scone_durations() -> None:
    secrets = {s.name: s for s in load_session(FEATURES["SCONE durations"]).secrets}
    assert secrets["ca"].valid_for == timedelta(days=3560)
    assert secrets["short"].valid_for == timedelta(days=59)
    assert secrets["yearly"].valid_for == timedelta(days=365)


def test_wildcard_advisories_without_debug_mode_load_with_a_note() -> None:
    loaded = load_session(FEATURES["ignore_advisories '*' without debug-mode"])
    assert loaded.security.attestation.ignore_advisories == ("*",)
    assert "changes no decision" in loaded.notes[0]


@pytest.mark.parametrize(("feature", "text"), UNSERVED.items(), ids=UNSERVED.keys())
def test_an_unserved_scone_feature_loads_with_exactly_one_warning_naming_it(
    feature: str, text: str
) -> None:
    loaded = load_session(text)
    assert len(loaded.unserved) == 1, loaded.unserved
    assert f"{feature} is part of SCONE's language; cloister's CAS cannot serve it: " in (
        loaded.unserved[0])


@pytest.mark.parametrize(("text", "rule"), SHOULD_NOT_LOAD.values(), ids=SHOULD_NOT_LOAD.keys())
def test_accept_but_should_not_is_refused_with_its_rule(text: str, rule: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert rule in caught.value.message


def test_a_wrong_version_is_named_before_what_it_leads_to() -> None:
    text = session("""\
secrets:
  - name: cert
    kind: x509
    import: {session: "other", secret: cert, bogus: 1}
""", head="name: demo\nversion: 0.2\n")
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert caught.value.message.startswith("line 2 column 10: version 0.2 is SCONE's old")
    assert "bogus" in caught.value.details[0]


def test_a_typo_is_never_taken_for_a_scone_feature() -> None:
    text = session("security:\n  singleton_enclave: true\n")
    with pytest.raises(PolicyError) as caught:
        load_session(text)
    assert caught.value.message == (
        "line 8 column 3: unknown key 'singleton_enclave' in security; did you mean "
        "'singleton_enclaves'?")


def test_an_imported_config_fragment_has_its_kind() -> None:
    loaded = load_session(FEATURES["config-fragment imported for access_policy"])
    assert loaded.secrets[0].kind is SecretKind.CONFIG_FRAGMENT


#: (case, session, today's message, the new message) for each row of the issue's table
MESSAGES: list[tuple[str, str, str, str]] = [
    (
        "otp", FEATURES["otp in security.attestation"],
        "line 10 column 5: unknown key 'one_time_password_shared_secret' in "
        "security.attestation; known keys: mode, tolerate, ignore_advisories, tpm_pcrs",
        "loads",
    ),
    (
        "config-fragment", FEATURES["config-fragment in a service's attestation"],
        "line 10 column 9: service 'loadbalancer'.attestation must be a mapping, got str "
        "'$$SCONE::attestation_config_part$$'",
        "loads",
    ),
    (
        "service_access_token", FEATURES["security.service_access_token"],
        "line 8 column 3: unknown key 'service_access_token' in security; known keys: "
        "attestation",
        "loads",
    ),
    (
        "volume fspf_key", FEATURES["volume with explicit fspf_key and fspf_tag"],
        "line 9 column 5: volume 'fspf_key' is not supported by cloister: remove it (the CAS "
        "generates and keeps each volume's key)",
        "loads",
    ),
    (
        "relative path", FEATURES["relative session paths"],
        "line 11 column 16: invalid session name '../key_owner': use 1-128 of A-Z a-z 0-9 _ - . "
        "~, with / between namespace segments",
        "loads",
    ),
    (
        "\\@\\@NAME", FEATURES["\\@\\@NAME host variables"],
        "line 8 column 7: service 'app': bad variable name '\\\\@\\\\@NAME'",
        "loads",
    ),
    (
        "image name", FEATURES["image names with : and /"],
        "line 6 column 17: service 'app' names image 'registry/app:tag', which is not defined "
        "(images: none)",
        "loads",
    ),
    (
        "duration", FEATURES["SCONE durations"],
        "line 13 column 16: secret 'ca': invalid duration '3560d': write a positive count and "
        "a unit, e.g. '90 days'",
        "loads",
    ),
    (
        "singleton_enclaves", FEATURES["security.singleton_enclaves"],
        "line 8 column 3: unknown key 'singleton_enclaves' in security; known keys: "
        "attestation",
        "loads",
    ),
    (
        "volume export", FEATURES["volume export"],
        "line 9 column 5: volume 'export' is not supported by cloister: remove it (the CAS "
        "generates and keeps each volume's key)",
        "loads",
    ),
    (
        "volume import", FEATURES["volume import"],
        "line 9 column 5: volume 'import' is not supported by cloister: remove it (the CAS "
        "generates and keeps each volume's key)",
        "loads",
    ),
    (
        "otp per service", FEATURES["otp per service, from a binary secret"],
        "line 7 column 5: unknown key 'one_time_password_shared_secret' in a service; known "
        "keys: name, image_name, command, environment, pwd, fspf_path, fspf_key, fspf_tag, "
        "attestation, mrenclaves, platforms",
        "loads",
    ),
    (
        "ignore_advisories '*'", FEATURES["ignore_advisories '*' without debug-mode"],
        "line 10 column 24: ignore_advisories '*' is allowed only with debug-mode tolerated",
        "loads",
    ),
    (
        "pgp-key", UNSERVED["pgp-key secrets"],
        "line 9 column 11: secret 'my_message_encryption_key': unknown kind 'pgp-key'; use one "
        "of ascii, binary, private-key, x509, x509-ca",
        "warning: line 9 column 11: pgp-key secrets is part of SCONE's language; cloister's "
        "CAS cannot serve it: cloister does not generate OpenPGP keys",
    ),
    (
        "persistency", UNSERVED["'persistency' in a service"],
        "line 6 column 5: unknown key 'persistency' in a service; known keys: name, "
        "image_name, command, environment, pwd, fspf_path, fspf_key, fspf_tag, attestation, "
        "mrenclaves, platforms",
        "warning: line 6 column 5: 'persistency' in a service is part of SCONE's language; "
        "cloister's CAS cannot serve it: SCONE's per-service persistency state is "
        "undocumented; cloister keeps no such state",
    ),
    (
        "maa url", UNSERVED["security.attestation.mode maa"],
        "line 10 column 5: unknown key 'url' in security.attestation; known keys: mode, "
        "tolerate, ignore_advisories, tpm_pcrs",
        "warning: line 9 column 11: security.attestation.mode maa is part of SCONE's language; "
        "cloister's CAS cannot serve it: Microsoft Azure Attestation tokens are not verified by "
        "this CAS; use hardware (the default) with a cloister evidence type, or none",
    ),
    (
        "aad-token", UNSERVED["aad-token secrets"],
        "line 9 column 11: secret 'ad_token_1': unknown kind 'aad-token'; use one of ascii, "
        "binary, private-key, x509, x509-ca",
        "warning: line 9 column 11: aad-token secrets is part of SCONE's language; cloister's "
        "CAS cannot serve it: Microsoft Azure Active Directory tokens need Azure, which this "
        "CAS cannot reach",
    ),
    (
        "import_akv", UNSERVED["'import_akv' in a secret"],
        "line 10 column 5: unknown key 'import_akv' in a secret; did you mean 'import'?",
        "warning: line 10 column 5: 'import_akv' in a secret is part of SCONE's language; "
        "cloister's CAS cannot serve it: it would fetch secrets from Microsoft Azure Key Vault, "
        "which this CAS cannot reach",
    ),
    (
        "creator signer", UNSERVED["creator signer"],
        "line 8 column 3: creator must be a string, got a mapping",
        "warning: line 8 column 3: creator signer is part of SCONE's language; cloister's CAS "
        "cannot serve it: session signing keys: cloister's CAS authenticates uploads by TLS "
        "client certificate only",
    ),
    (
        "digest (not SCONE 0.3)", session(f"digest: {M}\n"),
        "line 7 column 1: unknown key 'digest' in the session; did you mean 'images'?",
        "line 7 column 1: unknown key 'digest' in the session: not a key of SCONE's session "
        "language 0.3 here (known keys: name, version, predecessor, creator, access_policy, "
        "services, images, secrets, security, volumes, secret_config)",
    ),
    (
        "missing version", HEAD.replace('version: "0.3.10"\n', "") + SERVICE,
        "loads",
        'line 1 column 1: the session has no version, which SCONE reads as 0.1: 0.3 changed how '
        "other sessions are named in import/export, requires a private_key for x509 secrets, "
        'and lists certificate key hashes in access policies; write version: "0.3" (or "0.3.N")',
    ),
]


def _outcome(text: str) -> str:
    try:
        loaded = load_session(text)
    except PolicyError as err:
        return err.message
    return f"warning: {loaded.unserved[0]}" if loaded.unserved else "loads"


@pytest.mark.parametrize(("text", "before", "now"), [m[1:] for m in MESSAGES],
                         ids=[m[0] for m in MESSAGES])
def test_message_today_and_now(text: str, before: str, now: str) -> None:
    assert before != now  # the row documents what changed
    assert _outcome(text) == now


def test_session_check_prints_one_warning_per_unserved_feature(tmp_path: Path) -> None:
    path = tmp_path / "maa.yml"
    path.write_text(UNSERVED["security.attestation.mode maa"])
    done = subprocess.run([sys.executable, "-m", "cloister.cli", "session", "check", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith(f"{path}: valid")
    warnings = done.stderr.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: {path}: line 9 column 11: security.attestation.mode "
                                  "maa is part of SCONE's language; cloister's CAS cannot serve")


@pytest.mark.parametrize("text", [b'{"":"\\ud800"}', b'{"\\udfff": 1}'])
def test_a_lone_surrogate_is_refused_as_text_not_a_crash(text: bytes) -> None:
    """Found by the CAS fuzz: the digest of such a value failed to encode (a 500)."""
    with pytest.raises(PolicyError, match="lone UTF-16 surrogate"):
        load_session(text)
