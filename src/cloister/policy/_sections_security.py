"""Readers for ``security:``, top-level ``volumes:`` and ``secret_config:``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from cloister.policy._extensions import attestation_keys, extension_value
from cloister.policy._model import (
    AttestationSecurity,
    Security,
    Volume,
    VolumeExport,
    VolumeImport,
)
from cloister.policy._reader import Reader, get, is_null, present
from cloister.policy._scone import AKV_BACKEND, UNSERVED_MODES
from cloister.policy._secrets_section import export_target, session_path
from cloister.policy._yaml import Entry, Node

SECURITY_KEYS = ("attestation", "service_access_token", "singleton_enclaves")
#: SCONE's keys; evidence-type plug-ins add cloister's extensions (see ._extensions)
ATTESTATION_SECURITY_KEYS = (
    "mode",
    "tolerate",
    "ignore_advisories",
    "one_time_password_shared_secret",
)
VOLUME_KEYS = ("name", "fspf_key", "fspf_tag", "export", "import")
VOLUME_EXPORT_KEYS = ("session", "session_hash", "to", "update_policy", "volume_alias")
VOLUME_IMPORT_KEYS = ("session", "volume")
SECRET_CONFIG_KEYS = ("store_in",)


def _strings(r: Reader, node: Node | None, where: str) -> tuple[str, ...]:
    return () if node is None or is_null(node) else r.strings(node, where, single_ok=True)


def _opt_text(r: Reader, node: Node | None, where: str) -> str | None:
    given = present(node)
    return None if given is None else r.string(given, where, coerce=True)


def security(r: Reader, node: Node | None) -> Security | None:
    if node is None or is_null(node):
        return None
    fields = r.mapping(node, SECURITY_KEYS, "security")
    if fields is None:
        return None
    token = _opt_text(r, get(fields, "service_access_token"), "security.service_access_token")
    singleton_node = present(get(fields, "singleton_enclaves"))
    singleton = bool(
        singleton_node is not None and r.boolean(singleton_node, "security.singleton_enclaves")
    )
    attestation = _attestation(r, get(fields, "attestation"))
    if attestation is None:
        return None
    return r.build(lambda: Security(attestation, token, singleton), fields, node.mark)


def _attestation(r: Reader, att_node: Node | None) -> AttestationSecurity | None:
    if att_node is None or is_null(att_node):
        return AttestationSecurity()
    given = att_node.value.get("mode") if att_node.kind == "map" else None
    if given is not None and isinstance(given.node.value, str) and (
        given.node.value in UNSERVED_MODES
    ):
        # one warning: its keys (url, certificates) and tolerations belong to that mode
        unserved = given.node.value
        r.unserve(given.node.mark, f"security.attestation.mode {unserved}",
                  UNSERVED_MODES[unserved])
        return AttestationSecurity()
    extension_keys = attestation_keys()
    att = r.mapping(att_node, ATTESTATION_SECURITY_KEYS + tuple(sorted(extension_keys)),
                    "security.attestation")
    if att is None:
        return None
    mode_node = get(att, "mode")
    mode = "hardware" if mode_node is None else r.string(mode_node, "security.attestation.mode")
    tolerate = _strings(r, get(att, "tolerate"), "security.attestation.tolerate")
    advisories = _strings(
        r, get(att, "ignore_advisories"), "security.attestation.ignore_advisories"
    )
    if "*" in advisories and "debug-mode" not in tolerate:
        adv_node = get(att, "ignore_advisories")
        assert adv_node is not None
        r.note(adv_node.mark, "ignore_advisories '*' without debug-mode: SCONE ignores the "
               "wildcard for production enclaves, and cloister's evidence carries no Intel "
               "advisories, so it changes no decision")
    extensions = _extensions(r, att, extension_keys)
    otp = _opt_text(
        r, get(att, "one_time_password_shared_secret"),
        "security.attestation.one_time_password_shared_secret",
    )
    return r.build(
        lambda: AttestationSecurity(
            mode or "hardware", frozenset(tolerate), advisories, MappingProxyType(extensions),
            otp,
        ),
        att,
        att_node.mark,
    )


def _extensions(
    r: Reader, att: dict[str, Entry], keys: Mapping[str, Callable[[Any], Any]]
) -> dict[str, Any]:
    """The plug-in keys present in ``security.attestation``, each validated by its owner."""
    values: dict[str, Any] = {}
    for name, parse in sorted(keys.items()):
        node = get(att, name)
        if node is None or is_null(node):
            continue
        try:
            values[name] = parse(extension_value(node))
        except ValueError as err:
            r.error(node.mark, str(err))
    return values


# --- volumes ---------------------------------------------------------------------


def volumes(r: Reader, node: Node | None) -> tuple[Volume, ...]:
    return r.each(node, "volumes", lambda item: _volume(r, item))


def _volume(r: Reader, item: Node) -> Volume | None:
    fields = r.mapping(item, VOLUME_KEYS, "a volume")
    if fields is None:
        return None
    name_node = get(fields, "name")
    if name_node is None:
        r.error(item.mark, "a volume needs a 'name'")
        return None
    name = r.string(name_node, "volume name")
    where = f"volume {name!r}"
    key = _opt_text(r, get(fields, "fspf_key"), f"{where}.fspf_key")
    tag = _opt_text(r, get(fields, "fspf_tag"), f"{where}.fspf_tag")
    exports = r.each(get(fields, "export"), f"{where}.export",
                     lambda e: _volume_export(r, e, where), single_ok=True)
    imported = _volume_import(r, get(fields, "import"), where)
    if name is None or (imported is None and present(get(fields, "import")) is not None):
        return None
    return r.build(
        lambda: Volume(name, key.lower() if key and not key.startswith("$$") else key, tag,
                       exports, imported),
        fields,
        item.mark,
    )


def _volume_export(r: Reader, item: Node, where: str) -> VolumeExport | None:
    if item.kind != "map" or "to" not in item.value:
        short = export_target(r, item, where, keys=("session", "session_hash"))
        return None if short is None else r.build(lambda: VolumeExport(short), {}, item.mark)
    fields = r.mapping(item, VOLUME_EXPORT_KEYS, f"{where}.export")
    if fields is None:
        return None
    to_node = get(fields, "to")
    assert to_node is not None
    target = export_target(r, to_node, f"{where}.export.to", keys=("session", "session_hash"))
    policy = _opt_text(r, get(fields, "update_policy"), f"{where}.export.update_policy")
    alias = _opt_text(r, get(fields, "volume_alias"), f"{where}.export.volume_alias")
    if target is None:
        return None
    return r.build(lambda: VolumeExport(target, policy, alias), fields, item.mark)


def _volume_import(r: Reader, node: Node | None, where: str) -> VolumeImport | None:
    if node is None or is_null(node):
        return None
    fields = r.mapping(node, VOLUME_IMPORT_KEYS, f"{where}.import", place="import")
    if fields is None:
        return None
    session = _opt_text(r, get(fields, "session"), f"{where}.import.session")
    volume = _opt_text(r, get(fields, "volume"), f"{where}.import.volume")
    if session is None or volume is None:
        r.error(node.mark, f"{where}.import needs both 'session' and 'volume'")
        return None
    resolved = session_path(r, session, fields, "session")
    if resolved is None:
        return None
    return r.build(lambda: VolumeImport(resolved, volume), fields, node.mark)


# --- secret_config ------------------------------------------------------------------


def secret_config(r: Reader, node: Node | None) -> None:
    """``secret_config: {store_in: !cas}`` is what cloister does anyway; ``!akv`` is not
    served."""
    if node is None or is_null(node):
        return
    fields = r.mapping(node, SECRET_CONFIG_KEYS, "secret_config")
    store = None if fields is None else get(fields, "store_in")
    if store is None or (store.kind == "scalar" and store.value == "!cas"):
        return
    if store.kind == "map" and "!akv" in store.value:
        r.unserve(store.mark, "secret_config.store_in !akv", AKV_BACKEND)
        return
    r.error(store.mark, "secret_config.store_in must be !cas (the CAS store) or !akv")
