"""A readable summary of a session, for ``cloister session check``."""

from __future__ import annotations

from collections import defaultdict

from cloister.policy._model import Session
from cloister.policy._refs import find_references


def _uses(session: Session) -> dict[str, list[str]]:
    """Where each secret is referenced: ``secret -> ["service app: environment TOKEN", …]``."""
    names = {s.name for s in session.secrets}
    uses: dict[str, list[str]] = defaultdict(list)

    def scan(text: str | None, where: str) -> None:
        for ref in find_references(text or "", names):
            uses[ref.secret].append(f"{where} ({ref.suffix or 'default form'})")

    for service in session.services:
        for i, arg in enumerate(service.command):
            scan(arg, f"service {service.name}: argument {i}")
        for key, value in service.environment.items():
            scan(value, f"service {service.name}: environment {key}")
        scan(service.fspf_key, f"service {service.name}: fspf_key")
    for secret in session.secrets:
        if secret.private_key:
            uses[secret.private_key].append(f"secret {secret.name} (its private key)")
        if secret.issuer:
            uses[secret.issuer].append(f"secret {secret.name} (its issuer)")
    for image in session.images:
        for injected in image.injection_files:
            scan(injected.content, f"image {image.name}: file {injected.path}")
    return uses


def summarize(session: Session) -> list[str]:
    """Lines describing services, images, secrets (kind, uses), imports and exports."""
    att = session.security.attestation
    lines = [
        f"session {session.name} (version {session.version or '0.1'}), digest {session.digest}",
        f"  access: read={list(session.access_policy.read)} "
        f"update={list(session.access_policy.update)}",
        f"  attestation: mode {att.mode}, tolerate {sorted(att.tolerate) or 'nothing'}",
    ]
    for service in session.services:
        lines.append(f"  service {service.name}: {' '.join(service.command) or '(no command)'}")
        lines.append(f"    measurements: {', '.join(service.mrenclaves) or '(signer only)'}")
        if service.image_name:
            lines.append(f"    image: {service.image_name}")
        if service.fspf_path:
            lines.append(f"    protected files: {service.fspf_path}")
    for image in session.images:
        lines.append(f"  image {image.name}: {len(image.injection_files)} injected file(s)")
        lines += [f"    {f.path} ({oct(f.permission)})" for f in image.injection_files]
    uses = _uses(session)
    for secret in session.secrets:
        kind = secret.kind.value if secret.kind else "kind from import"
        lines.append(f"  secret {secret.name}: {kind}")
        if secret.import_:
            lines.append(f"    imported from {secret.import_.session}/{secret.import_.secret}")
        for target in secret.export:
            lines.append(f"    exported to {target.session or f'{target.namespace}/*'}")
        if secret.export_public:
            lines.append("    public part readable by anyone (export_public)")
        lines += [f"    used by {use}" for use in uses.get(secret.name, [])]
        if not uses.get(secret.name) and not secret.export and not secret.export_public:
            lines.append("    not used")
    return lines
