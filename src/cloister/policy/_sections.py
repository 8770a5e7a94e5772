"""Readers for each section of a session; each records errors and returns typed objects."""

from __future__ import annotations

import shlex
from types import MappingProxyType

from cloister.policy import _secrets_section, _sections_security
from cloister.policy._fragments import is_pending
from cloister.policy._model import (
    AccessPolicy,
    AttestationVariant,
    Image,
    ImageVolume,
    InjectionFile,
    Service,
    Signer,
)
from cloister.policy._reader import Reader, get, is_null, present
from cloister.policy._scone import ACCESS_SIGNER, GOVERNANCE
from cloister.policy._yaml import Entry, Node

SERVICE_KEYS = (
    "name",
    "image_name",
    "command",
    "environment",
    "pwd",
    "fspf_path",
    "fspf_key",
    "fspf_tag",
    "attestation",
    "mrenclaves",
    "platforms",
    "one_time_password_shared_secret",
    "fspf_update_policy",
    # cloister extensions: who runs the service (checked against the LAS's view of the
    # caller), and the debug switch that shows sealed source lines in tracebacks
    "uid",
    "gid",
    "debug_tracebacks",
)
IMAGE_KEYS = ("name", "injection_files", "volumes")
INJECTION_KEYS = ("path", "content", "permission")
IMAGE_VOLUME_KEYS = ("name", "path", "update_policy")
ACCESS_KEYS = ("read", "update", "create_sessions")
VARIANT_KEYS = ("mrenclave", "signer")
SIGNER_KEYS = ("mrsigner", "isvprodid", "isvsvn", "isvsvn_min", "isvsvn_max")


def _opt_str(r: Reader, f: dict[str, Entry], key: str, where: str) -> str | None:
    """An optional string; numbers keep the text as written (hex digits may look numeric)."""
    node = present(get(f, key))
    return None if node is None else r.string(node, f"{where}.{key}", coerce=True)


# --- access_policy ---------------------------------------------------------------


def access_policy(r: Reader, node: Node | None) -> AccessPolicy | None:
    if is_null(node):
        return None
    assert node is not None
    fields = r.mapping(node, ACCESS_KEYS, "access_policy")
    if fields is None:
        return None
    lists: dict[str, tuple[str, ...]] = {}
    for key in ACCESS_KEYS:
        entry_node = get(fields, key)
        if entry_node is not None and not is_pending(entry_node):
            lists[key] = _access_entries(r, entry_node, f"access_policy.{key}")
    return r.build(
        lambda: AccessPolicy(
            read=lists.get("read", ("CREATOR",)),
            update=lists.get("update", ("CREATOR",)),
            create_sessions=lists.get("create_sessions"),
        ),
        fields,
        node.mark,
    )


def _access_entries(r: Reader, node: Node, where: str) -> tuple[str, ...]:
    """An access list; SCONE's session signers and governance rules are recorded as
    unserved (and the list then admits nobody else for them: NONE if nothing is left)."""
    if node.kind == "map" and any(k.startswith("require-") for k in node.value):
        r.unserve(node.mark, f"governance in {where}", GOVERNANCE)
        return ("NONE",)
    items = node.value if node.kind == "seq" else [node]
    plain: list[Node] = []
    for item in items:
        if item.kind == "map" and "signer" in item.value:
            r.unserve(item.mark, f"signer entries in {where}", ACCESS_SIGNER)
        else:
            plain.append(item)
    if not plain and items:
        return ("NONE",)
    if node.kind != "seq":
        return r.strings(node, where, single_ok=True)
    return r.strings(Node(plain, node.mark, "seq", None, node.span), where)


# --- services --------------------------------------------------------------------


def services(r: Reader, node: Node | None) -> tuple[Service, ...]:
    return r.each(node, "services", lambda item: _service(r, item))


def _service(r: Reader, node: Node) -> Service | None:
    fields = r.mapping(node, SERVICE_KEYS, "a service")
    if fields is None:
        return None
    name_node = get(fields, "name")
    if name_node is None:
        r.error(node.mark, "a service needs a 'name'")
        return None
    name = r.string(name_node, "service name")
    where = f"service {name!r}"
    command = _command(r, get(fields, "command"), where)
    environment = _environment(r, get(fields, "environment"), where)
    variants = _variants(r, fields, where)
    platforms_node = get(fields, "platforms")
    given_platforms = present(platforms_node)
    platforms = (
        ()
        if given_platforms is None
        else r.strings(given_platforms, f"{where}.platforms", coerce=True)
    )
    otp = _opt_str(r, fields, "one_time_password_shared_secret", where)
    ids = {key: r.integer(n, f"{where}.{key}") if (n := present(get(fields, key))) else None
           for key in ("uid", "gid")}
    debug_node = present(get(fields, "debug_tracebacks"))
    debug = bool(r.boolean(debug_node, f"{where}.debug_tracebacks")) if debug_node else False
    if name is None:
        return None
    return r.build(
        lambda: Service(
            name=name,
            image_name=_opt_str(r, fields, "image_name", where),
            command=command,
            environment=MappingProxyType(environment),
            pwd=_opt_str(r, fields, "pwd", where),
            fspf_path=_opt_str(r, fields, "fspf_path", where),
            fspf_key=_opt_str(r, fields, "fspf_key", where),
            fspf_tag=_opt_str(r, fields, "fspf_tag", where),
            attestation=variants,
            platforms=tuple(p.lower() if not p.startswith("$$") else p for p in platforms),
            one_time_password_shared_secret=otp,
            fspf_update_policy=_opt_str(r, fields, "fspf_update_policy", where),
            uid=ids["uid"],
            gid=ids["gid"],
            debug_tracebacks=debug,
        ),
        fields,
        node.mark,
    )


#: SCONE's documented spelling of ``@@`` where a bare ``@`` cannot start a YAML scalar
_ESCAPED_HOST = "\\@\\@"


def _host_form(text: str) -> str:
    """``\\@\\@NAME`` / ``\\@\\@1`` as SCONE documents them are ``@@NAME`` / ``@@1``."""
    return "@@" + text[len(_ESCAPED_HOST):] if text.startswith(_ESCAPED_HOST) else text


def _command(r: Reader, node: Node | None, where: str) -> tuple[str, ...]:
    if is_null(node):
        return ()
    assert node is not None
    if node.kind == "seq":
        found = (
            r.string(item, f"an argument of {where}.command", coerce=True) for item in node.value
        )
        return tuple(_host_form(a) for a in found if a is not None)
    text = r.string(node, f"{where}.command")
    if text is None:
        return ()
    try:
        return tuple(_host_form(a) for a in shlex.split(text.replace(_ESCAPED_HOST, "@@")))
    except ValueError as err:
        r.error(node.mark, f"{where}.command cannot be split: {err}")
        return ()


def _environment(r: Reader, node: Node | None, where: str) -> dict[str, str]:
    if is_null(node):
        return {}
    assert node is not None
    if node.kind != "map":
        r.error(node.mark, f"{where}.environment must be a mapping, got {node.kind}")
        return {}
    env: dict[str, str] = {}
    for written, entry in node.value.items():
        key = _host_form(written)
        if key in env:
            r.error(entry.key_mark, f"{where}.environment names {key} twice")
        if is_null(entry.node):
            env[key] = ""
            continue
        value = r.string(entry.node, f"{where}.environment.{written}", coerce=True)
        if value is not None:
            env[key] = value
    return env


def _variants(r: Reader, fields: dict[str, Entry], where: str) -> tuple[AttestationVariant, ...]:
    variants: list[AttestationVariant] = []
    legacy = get(fields, "mrenclaves")
    if not is_null(legacy):
        assert legacy is not None
        values = r.strings(legacy, f"{where}.mrenclaves", single_ok=True, coerce=True)
        if values:
            built = r.build(lambda: AttestationVariant(mrenclaves=values), fields, legacy.mark)
            variants += [built] if built else []
    variants += r.each(
        get(fields, "attestation"), f"{where}.attestation",
        lambda item: _variant(r, item, where), single_ok=True,
    )
    return tuple(variants)


def _variant(r: Reader, node: Node, where: str) -> AttestationVariant | None:
    fields = r.mapping(node, VARIANT_KEYS, f"{where}.attestation")
    if fields is None:
        return None
    mr_node = present(get(fields, "mrenclave"))
    mrenclaves = (
        ()
        if mr_node is None
        else r.strings(mr_node, f"{where}.attestation.mrenclave", single_ok=True, coerce=True)
    )
    signer = None
    signer_node = get(fields, "signer")
    if not is_null(signer_node):
        assert signer_node is not None
        signer = _signer(r, signer_node, where)
        if signer is None:
            return None  # reported
    return r.build(lambda: AttestationVariant(mrenclaves, signer), fields, node.mark)


def _signer(r: Reader, node: Node, where: str) -> Signer | None:
    fields = r.mapping(node, SIGNER_KEYS, f"{where}.attestation.signer")
    if fields is None:
        return None
    mrsigner = _opt_str(r, fields, "mrsigner", f"{where}.signer")
    ints = {k: r.integer(e.node, f"signer.{k}") for k, e in fields.items() if k != "mrsigner"}
    if mrsigner is None:
        r.error(node.mark, f"{where}: signer needs 'mrsigner'")
        return None
    if "isvprodid" not in fields:
        r.error(node.mark, f"{where}: signer needs 'isvprodid' (SCONE: a signer lists its "
                           "mrsigner and a product ID)")
        return None
    if "isvsvn" in fields and ("isvsvn_min" in fields or "isvsvn_max" in fields):
        r.error(fields["isvsvn"].key_mark, f"{where}: signer takes isvsvn or a range "
                "(isvsvn_min/isvsvn_max), not both (SCONE)")
        return None
    exact = ints.get("isvsvn")
    return Signer(
        mrsigner=mrsigner.lower(),
        isvprodid=ints.get("isvprodid"),
        isvsvn_min=exact if exact is not None else ints.get("isvsvn_min"),
        isvsvn_max=exact if exact is not None else ints.get("isvsvn_max"),
    )


# --- images ----------------------------------------------------------------------


secrets = _secrets_section.secrets
security = _sections_security.security
volumes = _sections_security.volumes
secret_config = _sections_security.secret_config


def images(r: Reader, node: Node | None) -> tuple[Image, ...]:
    return r.each(node, "images", lambda item: _image(r, item))


def _image(r: Reader, node: Node) -> Image | None:
    fields = r.mapping(node, IMAGE_KEYS, "an image")
    if fields is None:
        return None
    name = _opt_str(r, fields, "name", "image")
    if name is None:
        r.error(node.mark, "an image needs a 'name'")
        return None
    files = r.each(get(fields, "injection_files"), f"image {name!r}.injection_files",
                   lambda item: _injection_file(r, item, name))
    mounts = r.each(get(fields, "volumes"), f"image {name!r}.volumes",
                    lambda item: _image_volume(r, item, name))
    return r.build(lambda: Image(name, files, mounts), fields, node.mark)


def _image_volume(r: Reader, node: Node, image: str) -> ImageVolume | None:
    where = f"a volume of image {image!r}"
    fields = r.mapping(node, IMAGE_VOLUME_KEYS, where)
    if fields is None:
        return None
    name = _opt_str(r, fields, "name", where)
    path = _opt_str(r, fields, "path", where)
    if name is None or path is None:
        r.error(node.mark, f"{where} needs 'name' and 'path'")
        return None
    policy = _opt_str(r, fields, "update_policy", where)
    return r.build(lambda: ImageVolume(name, path, policy), fields, node.mark)


def _injection_file(r: Reader, node: Node, image: str) -> InjectionFile | None:
    where = f"an injection file of image {image!r}"
    if node.kind == "scalar":
        plain_path = r.string(node, where)
        if plain_path is None:
            return None
        return r.build(lambda: InjectionFile(plain_path), {}, node.mark)
    fields = r.mapping(node, INJECTION_KEYS, where)
    if fields is None:
        return None
    path = _opt_str(r, fields, "path", where)
    if path is None:
        r.error(node.mark, f"{where} needs a 'path'")
        return None
    content_node = get(fields, "content")
    given = present(content_node)
    content = None if given is None else r.string(given, f"{path}: content", coerce=True)
    permission = _permission(r, get(fields, "permission"), path)
    return r.build(
        lambda: InjectionFile(
            path, "" if content is None and content_node else content, permission
        ),
        fields,
        node.mark,
    )


def _permission(r: Reader, node: Node | None, path: str) -> int:
    if is_null(node):
        return 0o700
    assert node is not None
    # a file mode is octal digits as written ("0600", "600", "0o600"), whatever YAML made of it
    raw = (node.raw or "").strip().removeprefix("0o")
    if node.kind == "scalar" and raw and all(c in "01234567" for c in raw):
        return int(raw, 8)
    r.error(node.mark, f"{path}: permission {node.raw!r} is not an octal file mode like 0600")
    return 0o700
