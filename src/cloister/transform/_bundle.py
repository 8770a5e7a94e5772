"""``cloister transform``: turn a Python application directory into a deployable bundle.

Bundle layout (``out``)::

    app/                  the sealed tree (cloister seal), started as APP_PATH/ENTRY
    requirements.txt      the app's dependencies (installed in the clear in the image)
    policy/session.yml    the session policy, 0600 — the only file holding the fspf key
    Dockerfile, .dockerignore, compose-service.yml, helm-values.yaml

Invariant: the fspf key is written nowhere but ``policy/session.yml`` (created 0600
with ``os.open``), and is never printed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cloister import errors, fspf, policy
from cloister._files import write_private_file
from cloister.attest import measure
from cloister.transform import _artifacts
from cloister.transform._inject import Injection
from cloister.transform._policy import render_policy

DEFAULT_APP_PATH = "/fspf/encrypted-files"
POLICY_FILE = "policy/session.yml"


@dataclass(frozen=True)
class Bundle:
    """What :func:`transform` produced; ``fspf_tag`` and paths only, never the key."""

    out: Path
    name: str
    config_id: str
    policy_path: Path
    fspf_tag: str
    measurement: str
    files: tuple[str, ...]


def _requirements(src: Path) -> str:
    req = src / "requirements.txt"
    if req.is_file():
        return req.read_text()
    pyproject = src / "pyproject.toml"
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text())
        except tomllib.TOMLDecodeError as err:
            raise errors.ConfigError(f"{pyproject}: not valid TOML: {err}") from None
        deps = data.get("project", {}).get("dependencies", [])
        return "".join(f"{d}\n" for d in deps)
    raise errors.ConfigError(
        f"{src} has neither requirements.txt nor pyproject.toml",
        details=["cloister transform takes a Python application directory"],
    )


def _default_name(src: Path) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", src.name.lower()).strip("-")
    return name or "app"


def _check_inputs(src: Path, entry: str, name: str, out: Path) -> None:
    if not src.is_dir():
        raise errors.ConfigError(f"source directory {src} does not exist")
    script = (src / entry).resolve()
    if not script.is_file() or not script.is_relative_to(src):
        raise errors.ConfigError(f"--entry {entry}: no such file inside {src}")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise errors.ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    if out.exists() and any(out.iterdir()):
        raise errors.ConfigError(f"--out {out} exists and is not empty; choose a new directory")
    if out.is_relative_to(src):
        raise errors.ConfigError(f"--out {out} must not lie inside the source tree {src}")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private_file(path, text.encode("utf-8"))


def transform(
    src_dir: str | Path,
    entry: str,
    *,
    name: str | None = None,
    out: str | Path | None = None,
    injections: Sequence[Injection] = (),
    environment: Mapping[str, str] | None = None,
    app_path: str = DEFAULT_APP_PATH,
    measurement: str | None = None,
    image: str | None = None,
    port: int = 4996,
    dns: Sequence[str] = (),
) -> Bundle:
    """Seal ``src_dir``, write the policy and the deployment files; see the module doc.

    ``app_path`` is where the sealed tree lives when it runs (the image path by
    default; the bundle's own ``app/`` to run it in place). ``measurement``
    defaults to this interpreter's (``cloister measure``): for an image, pass the
    one ``cloister measure`` prints inside the runtime image.
    """
    src = Path(src_dir).resolve()
    name = name or _default_name(src)
    out_dir = Path(out).resolve() if out is not None else Path.cwd() / f"{name}-confidential"
    _check_inputs(src, entry, name, out_dir)
    requirements = _requirements(src)
    paths = [i.path for i in injections]
    if len(set(paths)) != len(paths):
        raise errors.ConfigError("--inject names one path twice")
    out_dir.mkdir(parents=True, exist_ok=True)
    sealed = fspf.seal(str(src), str(out_dir / "app"))
    app_path = app_path.rstrip("/") or "/"
    rel_entry = (src / entry).resolve().relative_to(src).as_posix()
    text = render_policy(
        name=name, service=name,
        measurement=measurement or measure(),
        command=f"python3 {app_path}/{rel_entry}",
        fspf_path=f"{app_path}/{os.path.basename(sealed.fspf_path)}",
        fspf_key=sealed.key_hex, fspf_tag=sealed.tag_hex,
        environment=dict(environment or {}), injections=injections,
        dns=list(dns) or [name, "localhost"],
    )
    session = policy.load_session(text)  # the generated policy must load as it is
    _write_private(out_dir / POLICY_FILE, text)
    image = image or f"{name}:latest"
    files = {
        "requirements.txt": requirements,
        "Dockerfile": _artifacts.dockerfile(app_path),
        ".dockerignore": _artifacts.DOCKERIGNORE,
        "compose-service.yml": _artifacts.compose_service(name, image, port, injections),
        "helm-values.yaml": _artifacts.helm_values(name, image, port),
    }
    for rel, content in files.items():
        (out_dir / rel).write_text(content)
    return Bundle(
        out=out_dir, name=name, config_id=f"{name}/{name}",
        policy_path=out_dir / POLICY_FILE, fspf_tag=sealed.tag_hex,
        measurement=session.services[0].mrenclaves[0],
        files=("app/", POLICY_FILE, *files),
    )

