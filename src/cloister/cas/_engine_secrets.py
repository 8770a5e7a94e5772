"""The production :class:`~cloister.cas._engine.SecretEngine`, backed by :mod:`cloister.secrets`.

Stored material is :meth:`cloister.secrets.SecretValue.to_bytes`; only a
session's own (non-imported) secrets are stored — imports are resolved from
the exporting session at every use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cloister.errors import SecretError
from cloister.policy import Secret, SecretKind, Session
from cloister.policy._model import volume_key_secret
from cloister.secrets import SecretValue, generate
from cloister.secrets._keys import PrivateKey, generate_key


def _with_volume_keys(session: Session) -> tuple[Secret, ...]:
    """The session's secrets plus one key per volume whose key the CAS keeps: 32 generated
    bytes (kept across updates, as binary secrets are) or the explicit fspf_key."""
    keys = (volume_key_secret(v) for v in session.volumes)
    return (*session.secrets, *(k for k in keys if k is not None))


class SecretsEngine:
    """``make_key`` makes each new private key (the CAS passes its bounded
    :meth:`cloister.cas._keygen.KeyPool.make_key`)."""

    def __init__(self, make_key: Callable[[str | None], PrivateKey] = generate_key) -> None:
        self._make_key = make_key

    def generate(
        self,
        session: Session,
        *,
        imported: Mapping[str, bytes],
        previous: Session | None,
        previous_values: Mapping[str, bytes],
    ) -> dict[str, bytes]:
        specs = _with_volume_keys(session)
        values = generate(
            specs,
            existing={k: SecretValue.from_bytes(v) for k, v in previous_values.items()},
            imported={k: SecretValue.from_bytes(v) for k, v in imported.items()},
            previous=_with_volume_keys(previous) if previous is not None else None,
            make_key=self._make_key,
        )
        own = {s.name for s in specs if s.import_ is None}
        return {name: value.to_bytes() for name, value in values.items() if name in own}

    def public_part(self, material: bytes) -> tuple[str, str]:
        value = SecretValue.from_bytes(material)
        return value.kind.value, value.public_part()

    def for_import(self, material: bytes, *, with_key: bool) -> bytes:
        value = SecretValue.from_bytes(material)
        if value.is_certificate and not with_key:
            value = value.without_private_key()
        return value.to_bytes()

    def kind(self, material: bytes) -> str:
        return SecretValue.from_bytes(material).kind.value

    def fragment_text(self, material: bytes) -> str:
        value = SecretValue.from_bytes(material)
        if value.kind is not SecretKind.CONFIG_FRAGMENT or value.text is None:
            raise SecretError(f"a {value.kind.value} secret is not a config-fragment")
        return value.text
