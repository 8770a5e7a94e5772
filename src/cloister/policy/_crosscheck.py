"""Checks across sections: names, references, private keys, issuers, images.

These run on a session whose sections parsed; positions come from the YAML
node tree so that every error still names its line and column.
"""

from __future__ import annotations

from collections.abc import Iterator

from cloister.policy._model import SecretKind, Session
from cloister.policy._reader import Reader
from cloister.policy._refs import Form, ReferenceSyntaxError, find_references
from cloister.policy._yaml import Mark, Node

#: where a reference renders into argv or environment: binary forms are refused there
_TEXT_ONLY_SECTIONS = ("command", "environment")


def check_session(reader: Reader, session: Session, root: Node) -> None:
    secret_nodes = _named_items(root, "secrets")
    _check_unique(reader, root, "secrets", "secret")
    _check_unique(reader, root, "services", "service")
    _check_unique(reader, root, "images", "image")
    _check_key_links(reader, session, secret_nodes)
    _check_issuer_cycles(reader, session, secret_nodes)
    _check_images(reader, session, root)
    _check_volumes(reader, session, root)
    _check_attestation_present(reader, session, root)
    _check_references(reader, session, root)


def _items(root: Node, section: str) -> list[Node]:
    if root.kind != "map" or section not in root.value:
        return []
    node = root.value[section].node
    return list(node.value) if node.kind == "seq" else []


def _item_name(item: Node) -> str | None:
    if item.kind == "map" and "name" in item.value:
        value = item.value["name"].node.value
        return value if isinstance(value, str) else None
    return None


def _named_items(root: Node, section: str) -> dict[str, Node]:
    found: dict[str, Node] = {}
    for item in _items(root, section):
        name = _item_name(item)
        if name is not None and name not in found:
            found[name] = item
    return found


def _field_mark(item: Node | None, key: str, fallback: Mark) -> Mark:
    if item is not None and item.kind == "map" and key in item.value:
        mark: Mark = item.value[key].node.mark
        return mark
    return item.mark if item is not None else fallback


def _check_unique(reader: Reader, root: Node, section: str, what: str) -> None:
    first: dict[str, Mark] = {}
    for item in _items(root, section):
        name = _item_name(item)
        if name is None:
            continue
        mark = _field_mark(item, "name", item.mark)
        if name in first:
            reader.error(mark, f"duplicate {what} name {name!r} (first at {first[name]})")
        else:
            first[name] = mark


def _check_key_links(reader: Reader, session: Session, nodes: dict[str, Node]) -> None:
    kinds = {s.name: s.kind for s in reversed(session.secrets)}
    for secret in session.secrets:
        item = nodes.get(secret.name)
        for key, wanted in (
            ("private_key", SecretKind.PRIVATE_KEY),
            ("issuer", SecretKind.X509_CA),
        ):
            target = getattr(secret, key)
            if target is None:
                continue
            mark = _field_mark(item, key, Mark(1, 1))
            if target in nodes and target not in kinds:
                continue  # declared but invalid: its own error says why
            if target not in kinds:
                reader.error(
                    mark,
                    f"{key} {target!r} of secret {secret.name!r} is not a secret of this session",
                )
            elif kinds[target] is not None and kinds[target] is not wanted:
                actual = kinds[target].value  # type: ignore[union-attr]
                reader.error(
                    mark,
                    f"{key} {target!r} of secret {secret.name!r} is a "
                    f"{actual}, not a {wanted.value}",
                )


def _check_issuer_cycles(reader: Reader, session: Session, nodes: dict[str, Node]) -> None:
    issuer_of = {s.name: s.issuer for s in session.secrets if s.issuer}
    reported: set[str] = set()
    for start in issuer_of:
        path = [start]
        while (nxt := issuer_of.get(path[-1])) is not None:
            if nxt in path:
                cycle = [*path[path.index(nxt) :], nxt]
                if not reported.intersection(cycle):
                    mark = _field_mark(nodes.get(nxt), "issuer", Mark(1, 1))
                    reader.error(mark, f"issuer cycle: {' -> '.join(cycle)}")
                    reported.update(cycle)
                break
            path.append(nxt)


def _check_images(reader: Reader, session: Session, root: Node) -> None:
    image_names = {i.name for i in session.images}
    services = _named_items(root, "services")
    for service in session.services:
        if service.image_name is not None and service.image_name not in image_names:
            mark = _field_mark(services.get(service.name), "image_name", root.mark)
            known = ", ".join(sorted(image_names)) or "none"
            reader.error(
                mark,
                f"service {service.name!r} names image {service.image_name!r}, "
                f"which is not defined (images: {known})",
            )


def _check_volumes(reader: Reader, session: Session, root: Node) -> None:
    _check_unique(reader, root, "volumes", "volume")
    declared = {v.name for v in session.volumes}
    images = _named_items(root, "images")
    for image in session.images:
        for mount in image.volumes:
            if mount.name not in declared:
                reader.error(
                    images[image.name].mark if image.name in images else root.mark,
                    f"image {image.name!r} mounts volume {mount.name!r}, which is not declared "
                    "under the top-level 'volumes:'",
                )


def _check_attestation_present(reader: Reader, session: Session, root: Node) -> None:
    if session.security.attestation.mode == "none":
        return
    services = _named_items(root, "services")
    for service in session.services:
        item = services.get(service.name)
        declared = (
            item is not None
            and item.kind == "map"
            and bool({"mrenclaves", "attestation"} & set(item.value))
        )
        if not service.attestation and not declared:
            reader.error(
                item.mark if item else root.mark,
                f"service {service.name!r} has no attestation: list its measurement under "
                "'mrenclaves' or 'attestation', or set security.attestation.mode: none",
            )


def _strings(node: Node, path: tuple[str, ...]) -> Iterator[tuple[Node, tuple[str, ...]]]:
    if node.kind == "map":
        for key, entry in node.value.items():
            yield from _strings(entry.node, (*path, key))
    elif node.kind == "seq":
        for item in node.value:
            yield from _strings(item, path)
    elif isinstance(node.value, str) and "$$SCONE::" in node.value:
        yield node, path


def _check_references(reader: Reader, session: Session, root: Node) -> None:
    # first definition wins; a declared secret that failed to parse has its own error already
    secrets = {s.name: s for s in reversed(session.secrets)}
    declared = set(_named_items(root, "secrets"))
    for node, path in _strings(root, ()):
        if path[:1] in (("secrets",), ("secret_config",)):
            continue  # secret values are literal text; secret_config is a backend choice
        try:
            references = list(find_references(node.value, declared))
        except ReferenceSyntaxError as err:
            reader.error(node.mark, str(err))
            continue
        for ref in references:
            secret = secrets.get(ref.secret)
            if ref.secret not in declared:
                reader.error(node.mark, f"{ref.text} refers to unknown secret {ref.secret!r}")
                continue
            if secret is None or secret.kind is None:
                # invalid (reported already), or imported without a kind (checked on import)
                continue
            if secret.kind is SecretKind.CONFIG_FRAGMENT:
                reader.error(node.mark, f"{ref.text}: config-fragment {ref.secret!r} can only "
                             "stand alone for a section, a value or a list item (SCONE), not "
                             "inside text or with a suffix")
                continue
            form = ref.form_for(secret.kind.value)
            if form is None:
                allowed = ", ".join(ref.allowed_suffixes(secret.kind.value))
                reader.error(
                    node.mark,
                    f"{ref.text}: suffix {ref.suffix!r} does not apply to "
                    f"{secret.kind.value} secret {ref.secret!r} "
                    f"(allowed: {allowed})",
                )
            elif path[-1:] == ("one_time_password_shared_secret",) and (
                secret.kind is SecretKind.BINARY and form not in (Form.BASE32, Form.BASE32NOPAD)
            ):
                reader.error(node.mark, f"{ref.text}: a binary OTP shared secret is given as "
                             f"base32: write $$SCONE::{ref.secret}:base32nopad$$ (SCONE)")
            elif (
                form.is_binary
                and len(path) > 1
                and path[0] == "services"
                and path[1] in _TEXT_ONLY_SECTIONS
            ):
                reader.error(
                    node.mark,
                    f"{ref.text} renders binary data, which cannot be "
                    f"used in {path[1]}: use a text form such as :hex",
                )
