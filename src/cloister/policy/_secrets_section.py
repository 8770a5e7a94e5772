"""Reader for ``secrets:`` (and the session references of imports and exports)."""

from __future__ import annotations

import ipaddress
from functools import partial

from cloister.errors import PolicyError
from cloister.policy._model import (
    ExportTarget,
    ImportSource,
    Invalid,
    Secret,
    SecretKind,
    SubjectAltNames,
    parse_duration,
    resolve_session_path,
)
from cloister.policy._reader import Reader, get, is_null
from cloister.policy._scone import REMOTE_CAS, UNSERVED_KINDS
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
EXPORT_KEYS = ("session", "namespace", "session_hash")
IMPORT_KEYS = ("session", "secret")


def secrets(r: Reader, node: Node | None) -> tuple[Secret, ...]:
    return r.each(node, "secrets", lambda item: _secret(r, item))


def _unserved_kind(r: Reader, node: Node) -> bool:
    """A secret of a kind cloister cannot serve: one warning for the whole secret."""
    entry = node.value.get("kind") if node.kind == "map" else None
    kind = entry.node.value if entry is not None else None
    if entry is None or not isinstance(kind, str) or kind not in UNSERVED_KINDS:
        return False
    r.unserve(entry.node.mark, f"{kind} secrets", UNSERVED_KINDS[kind])
    return True


def _secret(r: Reader, node: Node) -> Secret | None:
    if _unserved_kind(r, node):
        return None
    fields = r.mapping(node, SECRET_KEYS, "a secret")  # unknown SCONE keys: see _scone
    if fields is None:
        return None
    name_node = get(fields, "name")
    name = None if name_node is None else r.string(name_node, "secret name")
    if name_node is None:
        r.error(node.mark, "a secret needs a 'name'")
    where = f"secret {name!r}"
    kind_node = get(fields, "kind")
    kind = _kind(r, kind_node, where)
    text = {
        k: _text(r, fields, k, where)
        for k in ("key_type", "private_key", "issuer", "common_name", "endpoint")
    }
    text["value"] = (
        _fragment_text(r, get(fields, "value"))
        if kind is SecretKind.CONFIG_FRAGMENT
        else _text(r, fields, "value", where)
    )
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
    if text["value"] is not None and kind in (SecretKind.X509, SecretKind.X509_CA,
                                              SecretKind.PRIVATE_KEY):
        _check_pem(r, get(fields, "value"), name, kind, text["key_type"])
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


def _fragment_text(r: Reader, node: Node | None) -> str | None:
    """A config-fragment's value as its own YAML text, padded to parse at its position."""
    if node is None or is_null(node):
        return None
    start, end = node.span
    source = r.text[start:end] if end > start else ""
    return "\n" * (node.mark.line - 1) + " " * (node.mark.column - 1) + source + "\n"


def _check_pem(
    r: Reader, node: Node | None, name: str, kind: SecretKind, key_type: str | None
) -> None:
    """SCONE: explicit certificates and private keys are PEM; found now, not at generation."""
    assert node is not None
    from cloister.secrets import _keys, _x509  # noqa: PLC0415 — secrets imports this model

    value = node.value if isinstance(node.value, str) else ""
    try:
        if kind is SecretKind.PRIVATE_KEY:
            _keys.parse_explicit(value, name, key_type)
        else:
            probe = Secret(name=name, kind=kind, value=value)
            _x509.parse_explicit(value, probe)
    except PolicyError as err:
        r.error(node.mark, err.message)


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


def session_path(r: Reader, value: str, fields: dict[str, Entry], key: str) -> str | None:
    """``value`` with a relative session path (``./x``, ``../x``) resolved, or None
    (reported)."""
    try:
        return resolve_session_path(value, r.session_name, key)
    except Invalid as err:
        entry = fields.get(key)
        if entry is not None:
            r.error(entry.node.mark, err.message)
        return None


def export_target(r: Reader, item: Node, where: str, keys: tuple[str, ...] = EXPORT_KEYS,
                  ) -> ExportTarget | None:
    """An export target: ``{session|namespace, session_hash}`` or a bare session name."""
    if item.kind == "scalar" and isinstance(item.value, str) and "=" in item.value:
        return _url_form(r, item, where)
    if item.kind == "scalar" and isinstance(item.value, str):
        # the older short form: a bare session name
        short = session_path(r, item.value, {}, "session")
        return None if short is None else r.build(partial(ExportTarget, session=short), {},
                                                  item.mark)
    fields = r.mapping(item, keys, f"{where}.export", place="export")
    if fields is None:
        return None
    values = {k: r.string(e.node, f"{where}.export.{k}", coerce=True) for k, e in fields.items()
              if k in EXPORT_KEYS}
    for key in ("session", "namespace"):
        given = values.get(key)
        if given is not None:
            resolved = session_path(r, given, fields, key)
            if resolved is None:
                return None
            values[key] = resolved
    return r.build(lambda: ExportTarget(**values), fields, item.mark)


def _url_form(r: Reader, item: Node, where: str) -> ExportTarget | None:
    """SCONE's URL short form: ``/session=x,session_hash=h`` (this CAS) or
    ``host/cas_key=…,session=x`` (another CAS, not served)."""
    host, _, rest = str(item.value).partition("/")
    fields = dict(part.partition("=")[::2] for part in rest.split(","))
    if host or not set(fields) <= {"session", "session_hash"} or "session" not in fields:
        if host or set(fields) & {"cas_key", "cas_software_key"}:
            r.unserve(item.mark, f"a session on another CAS in {where}.export", REMOTE_CAS)
        else:
            r.error(item.mark, f"{where}: {item.value!r} is not SCONE's URL short form "
                               "/session=NAME[,session_hash=HASH]")
        return None
    return r.build(lambda: ExportTarget(session=fields["session"],
                                        session_hash=fields.get("session_hash")), {}, item.mark)


def _export(r: Reader, item: Node, where: str) -> ExportTarget | None:
    return export_target(r, item, where)


def _import(r: Reader, node: Node | None, where: str) -> ImportSource | None:
    if node is None or is_null(node):
        return None
    fields = r.mapping(node, IMPORT_KEYS, f"{where}.import", place="import")
    if fields is None:
        return None
    session = get(fields, "session")
    secret = get(fields, "secret")
    if session is None or secret is None:
        r.error(node.mark, f"{where}.import needs both 'session' and 'secret'")
        return None
    written = r.string(session, f"{where}.import.session")
    secret_name = r.string(secret, f"{where}.import.secret")
    session_name = None if written is None else session_path(r, written, fields, "session")
    if session_name is None or secret_name is None:
        return None
    return r.build(lambda: ImportSource(session_name, secret_name), fields, node.mark)


