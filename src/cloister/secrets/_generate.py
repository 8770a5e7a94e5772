"""Generate the values of a session's secrets, in dependency order.

Steps of :func:`generate`:
1. take imported secrets from ``imported`` (resolving them is the CAS's job);
2. check every ``private_key`` / ``issuer`` reference (all problems at once);
3. order the secrets so that a private key precedes its certificate and an
   issuer precedes its subjects; a cycle is an error naming it;
4. for each secret: keep the previous value where the update rules allow,
   else read its explicit ``value``, else generate it.  Keys and certificates
   made in this call are kept as objects too (:class:`_Objects`), so a
   certificate's key and issuer are not parsed back from the PEM just written.

Update rules (SCONE's, for a session update): ascii and binary values are kept
when the previous version had a generated secret of the same name, kind and
size; a private key is kept only when ``migrate: true`` is set in both the old
and the new version (and its key_type is unchanged); certificates are always
re-issued (with a kept key they keep their public key).
"""

from __future__ import annotations

import secrets as _random
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

from cryptography import x509

from cloister.errors import PolicyError
from cloister.policy._model import DEFAULT_SIZE, Secret, SecretKind
from cloister.secrets import _keys, _x509
from cloister.secrets._value import SecretValue

#: generated ascii secrets use printable ASCII except space and the characters
#: that need quoting in shells, JSON and YAML (" ' \ ` $), so a value can be
#: pasted into environment, argv or a config file as is
ASCII_ALPHABET = string.ascii_letters + string.digits + "!#%&()*+,-./:;<=>?@[]^_{|}~"

_EMPTY: Mapping[str, SecretValue] = MappingProxyType({})


def generate(
    secrets: Sequence[Secret],
    *,
    existing: Mapping[str, SecretValue] = _EMPTY,
    imported: Mapping[str, SecretValue] = _EMPTY,
    previous: Sequence[Secret] | None = None,
    now: datetime | None = None,
    make_key: Callable[[str | None], _keys.PrivateKey] = _keys.generate_key,
) -> dict[str, SecretValue]:
    """A value for every secret of ``secrets`` (in their order), imported ones included.

    ``existing`` holds the values of the previous session version and
    ``previous`` its secret specs (None: no specs known, so only ascii/binary
    values whose kind and size still fit are kept, and no private key).
    ``imported`` maps the local name of each imported secret to its value.
    ``now`` (default: the current UTC time) fixes certificate validity.
    ``make_key(key_type)`` makes each new private key (the CAS bounds it in time).

    Raises :class:`PolicyError` for a duplicate name, a missing or wrong-kind
    reference, a cycle, an unavailable import or an unusable explicit value.
    """
    when = _utc(now)
    by_name = _index(secrets)
    values: dict[str, SecretValue] = {}
    problems: list[str] = []
    for secret in secrets:
        if secret.import_ is not None:
            problems += _take_import(secret, imported, values)
    problems += _check_references(secrets, by_name, values)
    if problems:
        raise PolicyError(problems[0], details=problems[1:])
    keep = _Keeper(existing, previous)
    objects = _Objects(values)
    for secret in _dependency_order(secrets, by_name):
        if secret.name not in values:
            values[secret.name] = keep.value(secret) or _make(secret, values, when, make_key,
                                                              objects)
    return {s.name: values[s.name] for s in secrets}


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)


def _index(secrets: Sequence[Secret]) -> dict[str, Secret]:
    by_name: dict[str, Secret] = {}
    for secret in secrets:
        if secret.name in by_name:
            raise PolicyError(f"secret {secret.name!r} is defined twice: rename one of them")
        by_name[secret.name] = secret
    return by_name


def _take_import(
    secret: Secret, imported: Mapping[str, SecretValue], values: dict[str, SecretValue]
) -> list[str]:
    source = secret.import_
    assert source is not None
    value = imported.get(secret.name)
    if value is None:
        return [
            f"imported secret {secret.name!r} (secret {source.secret!r} of session "
            f"{source.session!r}) is not available: that session must exist and export it "
            "to this one"
        ]
    if secret.kind is not None and value.kind is not secret.kind:
        return [
            f"imported secret {secret.name!r} is a {value.kind.value} secret, "
            f"but this policy declares kind {secret.kind.value}"
        ]
    values[secret.name] = value
    return []


def _kind(secret: Secret, values: Mapping[str, SecretValue]) -> SecretKind | None:
    if secret.kind is not None:
        return secret.kind
    value = values.get(secret.name)
    return value.kind if value is not None else None


def _check_references(
    secrets: Sequence[Secret], by_name: Mapping[str, Secret], values: Mapping[str, SecretValue]
) -> list[str]:
    problems: list[str] = []
    for secret in secrets:
        if secret.import_ is not None:
            continue
        wanted = (
            ("private_key", secret.private_key, SecretKind.PRIVATE_KEY),
            ("issuer", secret.issuer, SecretKind.X509_CA),
        )
        for field, target, kind in wanted:
            if target is None:
                continue
            ref = f"{field} {target!r} of secret {secret.name!r}"
            if target not in by_name:
                problems.append(f"{ref} is not a secret of this session")
                continue
            actual = _kind(by_name[target], values)
            if actual is not kind:
                it_is = f"it is {actual.value}" if actual is not None else "its kind is unknown"
                problems.append(f"{ref} is not {_article(kind)} {kind.value} ({it_is})")
    return problems


def _article(kind: SecretKind) -> str:
    return "an" if kind.value[0] in "aeiox" else "a"


def _dependency_order(secrets: Sequence[Secret], by_name: Mapping[str, Secret]) -> list[Secret]:
    """Depth-first post-order over private_key/issuer edges (iterative: no recursion limit)."""

    def deps(secret: Secret) -> Iterator[Secret]:
        if secret.import_ is None:
            for target in (secret.private_key, secret.issuer):
                if target is not None and target in by_name:
                    yield by_name[target]

    done: set[str] = set()
    order: list[Secret] = []
    for root in secrets:
        if root.name in done:
            continue
        path = [root.name]
        stack = [(root, deps(root))]
        while stack:
            node, pending = stack[-1]
            dep = next(pending, None)
            if dep is None:
                stack.pop()
                path.pop()
                done.add(node.name)
                order.append(node)
            elif dep.name in path:
                cycle = [*path[path.index(dep.name):], dep.name]
                raise PolicyError(
                    f"secrets depend on each other in a cycle: {' -> '.join(cycle)}",
                    details=["a certificate cannot (indirectly) issue itself: "
                             "make one CA self-signed by omitting its 'issuer'"],
                )
            elif dep.name not in done:
                path.append(dep.name)
                stack.append((dep, deps(dep)))
    return order


class _Objects:
    """The parsed key and certificate of each value by secret name: made here, or parsed
    once from the (kept, imported) PEM when first needed; and for each CA what the
    certificates it signs need of it (:class:`_x509.Issuer`), built once per CA."""

    def __init__(self, values: Mapping[str, SecretValue]) -> None:
        self._values = values
        self._keys: dict[str, _keys.PrivateKey] = {}
        self._certs: dict[str, x509.Certificate] = {}
        self._issuers: dict[str, _x509.Issuer] = {}
        self._made: dict[str, _x509.Issued] = {}

    def key(self, name: str) -> _keys.PrivateKey:
        key = self._keys.get(name)
        if key is None:
            key_pem = self._values[name].key_pem
            assert key_pem is not None  # callers check that the value holds a key
            key = self._keys[name] = _keys.load_pem(key_pem)
        return key

    def cert(self, name: str) -> x509.Certificate:
        cert = self._certs.get(name)
        if cert is None:
            made = self._made.get(name)
            cert = made.cert if made is not None else self._values[name].certificate_object()
            self._certs[name] = cert
        return cert

    def issuer(self, name: str) -> _x509.Issuer:
        """The CA ``name`` as an issuer (its value holds its key: the caller checked)."""
        issuer = self._issuers.get(name)
        if issuer is None:
            value = self._values[name]
            assert value.cert_pem is not None
            made = self._made.get(name)
            issuer = self._issuers[name] = _x509.Issuer(
                self.cert(name), self.key(name), value.chain, value.cert_pem,
                made.signer if made is not None else None,
            )
        return issuer

    def made(self, name: str, key: _keys.PrivateKey,
             issued: _x509.Issued | None = None) -> None:
        self._keys[name] = key
        if issued is not None:
            self._made[name] = issued


class _Keeper:
    """Decides which values of the previous session version survive the update."""

    def __init__(self, existing: Mapping[str, SecretValue], previous: Sequence[Secret] | None):
        self._existing = existing
        self._previous = None if previous is None else {s.name: s for s in previous}

    def value(self, secret: Secret) -> SecretValue | None:
        old = self._existing.get(secret.name)
        if old is None or old.kind is not secret.kind or secret.value is not None:
            return None
        before = None if self._previous is None else self._previous.get(secret.name)
        if before is not None and (
            before.kind is not secret.kind or before.value is not None or before.import_
        ):
            return None
        if self._previous is not None and before is None:
            return None
        size = secret.size or DEFAULT_SIZE
        if secret.kind is SecretKind.ASCII:
            return old if old.text is not None and len(old.text) == size else None
        if secret.kind is SecretKind.BINARY:
            return old if old.data is not None and len(old.data) == size else None
        if secret.kind is SecretKind.PRIVATE_KEY and before is not None:
            same_type = (before.key_type or _keys.DEFAULT_KEY_TYPE) == (
                secret.key_type or _keys.DEFAULT_KEY_TYPE
            )
            return old if before.migrate and secret.migrate and same_type else None
        return None  # certificates are always re-issued


def _make(
    secret: Secret, values: Mapping[str, SecretValue], now: datetime,
    make_key: Callable[[str | None], _keys.PrivateKey] = _keys.generate_key,
    objects: _Objects | None = None,
) -> SecretValue:
    kind = secret.kind
    size = secret.size or DEFAULT_SIZE
    if kind is SecretKind.ASCII:
        if secret.value is not None:
            return SecretValue.ascii(secret.value)
        return SecretValue.ascii("".join(_random.choice(ASCII_ALPHABET) for _ in range(size)))
    if kind is SecretKind.BINARY:
        if secret.value is not None:
            return SecretValue.binary(_parse_hex(secret))
        return SecretValue.binary(_random.token_bytes(size))
    if kind is SecretKind.CONFIG_FRAGMENT:
        assert secret.value is not None  # the model requires a value or an import
        return SecretValue.fragment(secret.value)
    if kind is SecretKind.PRIVATE_KEY:
        if secret.value is not None:
            key = _keys.parse_explicit(secret.value, secret.name, secret.key_type)
        else:
            key = make_key(secret.key_type)
        if objects is not None:
            objects.made(secret.name, key)
        return SecretValue.private_key(_keys.to_pem(key))
    assert kind in (SecretKind.X509, SecretKind.X509_CA)
    objects = objects or _Objects(values)
    if secret.value is not None:
        return _explicit_certificate(secret, values, objects)
    return _new_certificate(secret, values, now, objects)


def _parse_hex(secret: Secret) -> bytes:
    assert secret.value is not None
    try:
        data = bytes.fromhex(secret.value.strip())
    except ValueError:
        data = b""
    if not data:
        raise PolicyError(
            f"explicit value of binary secret {secret.name!r} is not hex: "
            "write the bytes as hex digits, e.g. '00ff1a'"
        )
    return data


def _private_key_of(secret: Secret, objects: _Objects) -> _keys.PrivateKey | None:
    if secret.private_key is None:
        return None
    return objects.key(secret.private_key)  # a private-key value always holds its key


def _issuer_of(secret: Secret, values: Mapping[str, SecretValue],
               objects: _Objects) -> _x509.Issuer | None:
    if secret.issuer is None:
        return None
    value = values[secret.issuer]
    if value.key_pem is None:
        raise PolicyError(
            f"issuer {secret.issuer!r} of secret {secret.name!r} has no private key here, "
            "so it cannot sign",
            details=["import the CA together with its private key, or give this "
                     "certificate an explicit value"],
        )
    return objects.issuer(secret.issuer)


def _new_certificate(
    secret: Secret, values: Mapping[str, SecretValue], now: datetime, objects: _Objects,
) -> SecretValue:
    key = _private_key_of(secret, objects)
    assert key is not None and secret.private_key is not None  # required without a value
    issuer = _issuer_of(secret, values, objects)
    issued = _x509.issue(secret, key, issuer, now)
    objects.made(secret.name, key, issued)
    chain = () if issuer is None else (issuer.pem, *issuer.chain)
    return SecretValue.certificate(
        issued.pem, key_pem=values[secret.private_key].key_pem, chain=chain,
        ca=secret.kind is SecretKind.X509_CA,
    )


def _explicit_certificate(secret: Secret, values: Mapping[str, SecretValue],
                          objects: _Objects) -> SecretValue:
    assert secret.value is not None
    given = _x509.parse_explicit(secret.value, secret)
    key = _private_key_of(secret, objects)
    if key is not None and not _x509.same_public_key(given.cert, key):
        raise PolicyError(
            f"explicit value of secret {secret.name!r} does not match its private_key "
            f"{secret.private_key!r}: the certificate holds another public key"
        )
    key = key or given.key
    chain: tuple[str, ...] = tuple(_x509.cert_pem(c) for c in given.extra)
    if secret.issuer is not None:
        issuer_value = values[secret.issuer]
        if not _x509.signed_by(given.cert, issuer_value.certificate_object()):
            raise PolicyError(
                f"explicit value of secret {secret.name!r} is not signed by its issuer "
                f"{secret.issuer!r}"
            )
        assert issuer_value.cert_pem is not None
        chain = (issuer_value.cert_pem, *issuer_value.chain)
    return SecretValue.certificate(
        _x509.cert_pem(given.cert),
        key_pem=None if key is None else _keys.to_pem(key),
        chain=chain,
        ca=secret.kind is SecretKind.X509_CA,
    )
