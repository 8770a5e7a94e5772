"""What an attested service receives: its configuration, rendered from the session.

Pure functions, no I/O.  The configuration is a JSON object:

``{"version": 1, "session": …, "service": …, "command": [argv…],
"environment": {…}, "pwd": "/…" | null,
"files": [{"path", "mode", "content": base64}], "fspf": {"path", "key", "tag"} | null,
"volumes": [{"name", "path", "key": 64 hex}], "lease": {"id", "ttl"}}`` (``lease`` only
for a singleton service, see :mod:`cloister.cas._service_gates`)

Invariant: only the service's own command, environment, fspf key/tag and
the injection files of its image are released; nothing else of the session.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from cloister import errors
from cloister.policy import Secret, SecretKind, Service, Session, find_references
from cloister.policy._model import VOLUME_KEY_PREFIX
from cloister.secrets import SecretValue, render_bytes, render_text

CONFIG_VERSION = 1


def parse_config_id(config_id: str) -> tuple[str, str]:
    """``session/service`` (``ns/session/service`` for namespaced sessions) → both names.

    A one-time password (``@123456``) is split off before (see ``_service_gates``)."""
    session, sep, service = config_id.rpartition("/")
    if not sep or not session or not service:
        raise errors.RequestError(
            f"config id {config_id!r} is not SESSION/SERVICE: "
            "set CLOISTER_CONFIG_ID=session/service"
        )
    return session, service


def resolve_service(
    session: Session, service: Service, values: Mapping[str, SecretValue]
) -> Service:
    """``service`` with references in its attestation inputs rendered (platforms, fspf tag)."""
    names = _names(session)
    platforms = tuple(render_text(p, values, names) for p in service.platforms)
    tag = None if service.fspf_tag is None else render_text(service.fspf_tag, values, names)
    return replace(service, platforms=platforms, fspf_tag=tag)


def build_config(
    session: Session, service: Service, values: Mapping[str, SecretValue]
) -> dict[str, Any]:
    """Render ``service``'s configuration; raise :class:`SecretError` if a reference fails."""
    names = _names(session)
    image = session.image(service.image_name) if service.image_name else None
    files: list[dict[str, Any]] = []
    for injected in image.injection_files if image else ():
        if injected.content is None:
            raise errors.SecretError(
                f"injection file {injected.path} of image {image.name if image else ''} has no "
                "'content': cloister injects only files whose content the policy gives"
            )
        data = render_bytes(injected.content, values, names)
        files.append(
            {
                "path": injected.path,
                "mode": injected.permission,
                "content": base64.b64encode(data).decode("ascii"),
            }
        )
    fspf = None
    if service.fspf_path is not None:
        fspf = {
            "path": service.fspf_path,
            "key": _fspf_key(service.fspf_key, session, values),
            "tag": None
            if service.fspf_tag is None
            else render_text(service.fspf_tag, values, names),
        }
    volumes = [
        {"name": mount.name, "path": mount.path,
         "key": _volume_key(mount.name, session, values)}
        for mount in (image.volumes if image else ())
    ]
    return {
        "version": CONFIG_VERSION,
        "volumes": volumes,
        "debug_tracebacks": service.debug_tracebacks,
        "session": session.name,
        "service": service.name,
        "command": [render_text(arg, values, names) for arg in service.command],
        "environment": {k: render_text(v, values, names) for k, v in service.environment.items()},
        "pwd": service.pwd,
        "files": files,
        "fspf": fspf,
    }


def _volume_key(name: str, session: Session, values: Mapping[str, SecretValue]) -> str:
    volume = session.volume(name)
    if volume is not None and volume.fspf_key is not None and volume.fspf_key.startswith("$$"):
        key = _fspf_key(volume.fspf_key, session, values)
        if key is None or len(key) != 64:
            raise errors.SecretError(f"volume {name!r}: fspf_key must name a 32-byte binary secret")
        return key
    value = values.get(VOLUME_KEY_PREFIX + name)
    if value is None or value.data is None:
        raise errors.SecretError(f"volume {name!r} has no key in the CAS: update the session")
    return value.data.hex()


def _names(session: Session) -> set[str]:
    return {s.name for s in session.secrets}


def _fspf_key(text: str | None, session: Session, values: Mapping[str, SecretValue]) -> str | None:
    """The fspf key as 64 hex; a reference to a binary secret means its bytes (SCONE)."""
    if text is None:
        return None
    refs = list(find_references(text, _names(session)))
    if len(refs) == 1 and refs[0].text == text and refs[0].suffix == "":
        secret: Secret | None = session.secret(refs[0].secret)
        value = values.get(refs[0].secret)
        if secret is not None and value is not None and value.kind is SecretKind.BINARY:
            assert value.data is not None
            return value.data.hex()
    return render_text(text, values, _names(session))
