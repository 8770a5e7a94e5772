"""Readers for ``secrets:``, ``security:`` and ``volumes:``."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from cloister.policy._extensions import attestation_keys, extension_value
from cloister.policy._model import (
    AttestationSecurity,
    ExportTarget,
    ImportSource,
    Invalid,
    Secret,
    SecretKind,
    Security,
    SubjectAltNames,
    Volume,
    parse_duration,
)
from cloister.policy._reader import Reader, get, is_null
from cloister.policy._yaml import Entry, Node

SECRET_KEYS = (
    "name",
    "kind",
    "size",
    "key_type",
    "private_key",
    "issuer",
    "common_name",
    "endpoint",
    "dns",
    "san",
    "valid_for",
    "value",
    "export",
    "import",
    "export_public",
    "migrate",
)
SECURITY_KEYS = ("attestation",)
#: SCONE's keys; evidence-type plug-ins add cloister's extensions (see ._extensions)
ATTESTATION_SECURITY_KEYS = ("mode", "tolerate", "ignore_advisories")
EXPORT_KEYS = ("session", "namespace", "session_hash")
IMPORT_KEYS = ("session", "secret")
VOLUME_KEYS = ("name", "fspf_key", "fspf_tag", "export", "import")


def secrets(r: Reader, node: Node | None) -> tuple[Secret, ...]:
    return r.each(node, "secrets", lambda item: _secret(r, item))


def _secret(r: Reader, node: Node) -> Secret | None:
    fields = r.mapping(node, SECRET_KEYS, "a secret")
    if fields is None:
        return None
    name_node = get(fields, "name")
    name = None if name_node is None else r.string(name_node, "secret name")
    if name_node is None:
        r.error(node.mark, "a secret needs a 'name'")
    where = f"secret {name!r}"
    kind = _kind(r, get(fields, "kind"), where)
    text = {
        k: _text(r, fields, k, where)
        for k in ("key_type", "private_key", "issuer", "common_name", "endpoint", "value")
    }
    size = _int(r, get(fields, "size"), f"{where}.size")
    dns = _strings(r, get(fields, "dns"), f"{where}.dns")
    san = _san(r, get(fields, "san"), where)
    valid_for = _duration(r, get(fields, "valid_for"), where)
    exports = _exports(r, get(fields, "export"), where)
    imported = _import(r, get(fields, "import"), where)
    flags = {k: _flag(r, get(fields, k), f"{where}.{k}") for k in ("export_public", "migrate")}
    if (
        name is None
        or (kind is None and get(fields, "kind") is not None)
        or (imported is None and get(fields, "import") is not None)
    ):
        return None  # already reported
    return r.build(
        lambda: Secret(
            name=name,
            kind=kind,
            size=size,
            dns=dns,
            san=san,
            valid_for=valid_for,
            export=exports,
            import_=imported,
            key_type=text["key_type"],
            private_key=text["private_key"],
            issuer=text["issuer"],
            common_name=text["common_name"],
            endpoint=text["endpoint"],
            value=text["value"],
            export_public=flags["export_public"],
            migrate=flags["migrate"],
        ),
        fields,
        node.mark,
    )


def _kind(r: Reader, node: Node | None, where: str) -> SecretKind | None:
    if is_null(node):
        return None
    assert node is not None
    value = r.string(node, f"{where}.kind")
    if value is None:
        return None
    try:
        return SecretKind(value)
    except ValueError:
        kinds = ", ".join(k.value for k in SecretKind)
        r.error(node.mark, f"{where}: unknown kind {value!r}; use one of {kinds}")
        return None


def _text(r: Reader, fields: dict[str, Entry], key: str, where: str) -> str | None:
    node = get(fields, key)
    if is_null(node):
        return None
    assert node is not None
    return r.string(node, f"{where}.{key}", coerce=key == "value")


def _int(r: Reader, node: Node | None, where: str) -> int | None:
    return None if node is None or is_null(node) else r.integer(node, where)


def _flag(r: Reader, node: Node | None, where: str) -> bool:
    return False if node is None or is_null(node) else bool(r.boolean(node, where))


def _strings(r: Reader, node: Node | None, where: str) -> tuple[str, ...]:
    return () if node is None or is_null(node) else r.strings(node, where, single_ok=True)


def _san(r: Reader, node: Node | None, where: str) -> SubjectAltNames:
    dns: list[str] = []
    ips: list[str] = []
    if node is None or is_null(node):
        return SubjectAltNames()
    for item in r.items(node, f"{where}.san", single_ok=True):
        value = r.string(item, f"an entry of {where}.san")
        if value is None:
            continue
        prefix, sep, rest = value.partition(":")
        if sep and prefix.lower() == "dns" and rest:
            dns.append(rest)
        elif sep and prefix.lower() == "ip":
            try:
                ips.append(str(ipaddress.ip_address(rest)))
            except ValueError:
                r.error(item.mark, f"{where}: {rest!r} in san is not an IP address")
        else:
            r.error(item.mark, f"{where}: san entry {value!r} must start with 'dns:' or 'ip:'")
    return SubjectAltNames(tuple(dns), tuple(ips))


def _duration(r: Reader, node: Node | None, where: str):  # type: ignore[no-untyped-def]
    if node is None or is_null(node):
        return None
    text = r.string(node, f"{where}.valid_for")
    if text is None:
        return None
    try:
        return parse_duration(text)
    except Invalid as err:
        r.error(node.mark, f"{where}: {err.message}")
        return None


def _exports(r: Reader, node: Node | None, where: str) -> tuple[ExportTarget, ...]:
    return r.each(node, f"{where}.export", lambda item: _export(r, item, where), single_ok=True)


def _export(r: Reader, item: Node, where: str) -> ExportTarget | None:
    if item.kind == "scalar" and isinstance(item.value, str):
        # the older short form: a bare session name
        return r.build(partial(ExportTarget, session=item.value), {}, item.mark)
    fields = r.mapping(item, EXPORT_KEYS, f"{where}.export")
    if fields is None:
        return None
    values = {k: r.string(e.node, f"{where}.export.{k}", coerce=True) for k, e in fields.items()}
    return r.build(lambda: ExportTarget(**values), fields, item.mark)


def _import(r: Reader, node: Node | None, where: str) -> ImportSource | None:
    if node is None or is_null(node):
        return None
    fields = r.mapping(node, IMPORT_KEYS, f"{where}.import")
    if fields is None:
        return None
    session = get(fields, "session")
    secret = get(fields, "secret")
    if session is None or secret is None:
        r.error(node.mark, f"{where}.import needs both 'session' and 'secret'")
        return None
    session_name = r.string(session, f"{where}.import.session")
    secret_name = r.string(secret, f"{where}.import.secret")
    if session_name is None or secret_name is None:
        return None
    return r.build(lambda: ImportSource(session_name, secret_name), fields, node.mark)


def security(r: Reader, node: Node | None) -> Security | None:
    if node is None or is_null(node):
        return None
    fields = r.mapping(node, SECURITY_KEYS, "security")
    if fields is None:
        return None
    att_node = get(fields, "attestation")
    if att_node is None or is_null(att_node):
        return Security()
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
    extensions = _extensions(r, att, extension_keys)
    built = r.build(
        lambda: AttestationSecurity(mode or "hardware", frozenset(tolerate), advisories,
                                    MappingProxyType(extensions)),
        att,
        att_node.mark,
    )
    return Security(built) if built else None


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


def volumes(r: Reader, node: Node | None) -> tuple[Volume, ...]:
    """``volumes:``: names only; cloister generates each volume's key in the CAS."""
    return r.each(node, "volumes", lambda item: _volume(r, item))


def _volume(r: Reader, item: Node) -> Volume | None:
    fields = r.mapping(item, VOLUME_KEYS, "a volume")
    if fields is None:
        return None
    for key in ("fspf_key", "fspf_tag", "export", "import"):
        if key in fields:
            r.error(fields[key].key_mark, f"volume {key!r} is not supported by cloister: "
                    "remove it (the CAS generates and keeps each volume's key)")
    name_node = get(fields, "name")
    if name_node is None:
        r.error(item.mark, "a volume needs a 'name'")
        return None
    name = r.string(name_node, "volume name")
    return None if name is None else r.build(lambda: Volume(name), fields, item.mark)
