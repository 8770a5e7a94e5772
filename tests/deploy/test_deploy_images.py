"""Static checks of the Dockerfiles and build.sh: pinned bases, non-root users, no secret
material in a Dockerfile or its build context, the fspf key kept out of the API image's
final stage. test_deploy_podman.py builds the images and checks the same on them."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from deploy_support import DEPLOY, REPO

from cloister.cli._main import build_parser

IMAGES = DEPLOY / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
#: build contexts: the runtime image is built from the repository root (filtered by its
#: .dockerignore to pyproject.toml, README.md and src/), the API image from the app dir
CONTEXTS = [REPO / "src", REPO / "examples" / "patients", DEPLOY]

PEM_PRIVATE = re.compile(r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----")
HEX_KEY = re.compile(r"(?i)key[\"'\s:=]{1,6}[0-9a-f]{64}\b")


def stages(text: str) -> list[list[str]]:
    """Instructions per build stage (continuation lines joined, comments dropped)."""
    joined = re.sub(r"\\\n", " ", text)
    result: list[list[str]] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_there_is_an_image_for_every_part() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"runtime", "cas", "las", "redis", "api"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_base_images_are_pinned(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    for base in re.findall(r"^FROM (\S+)", text, re.M):
        name = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), "?"), base)
        if name == "scratch" or name in re.findall(r" AS (\S+)", text):
            continue
        # a digest, or an exact version tag (never latest, never a bare major)
        assert "@sha256:" in name or re.search(r":\d+\.\d+\.\d+", name), (dockerfile, name)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_final_stage_runs_as_non_root(dockerfile: Path) -> None:
    final = stages(dockerfile.read_text())[-1]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    if dockerfile.parent.name == "runtime":
        assert users, "the runtime base must set a USER"
    if dockerfile.parent.name == "las":
        # the one exception: the LAS measures callers of other uids through /proc/PID
        # (CAP_SYS_PTRACE), so it runs as root, every other capability dropped
        assert users and users[-1].split(":")[0] in {"root", "0"}, users
        return
    # images built FROM the runtime base inherit its user; any USER they set last is non-root
    if users:
        assert users[-1].split(":")[0] not in {"root", "0"}, (dockerfile, users)


def test_runtime_entrypoint_is_cloister_run() -> None:
    final = stages((IMAGES / "runtime/Dockerfile").read_text())[-1]
    assert 'ENTRYPOINT ["cloister", "run"]' in final


def test_api_image_keeps_the_seal_output_out_of_its_layers() -> None:
    api = stages((IMAGES / "api/Dockerfile").read_text())
    names = {s[0].split()[-1]: s for s in api}
    assert names["seal-output"][0].startswith("FROM scratch")
    final = api[-1]
    assert final[0].endswith("AS api")
    copies = [line for line in final if line.upper().startswith("COPY")]
    # from the seal stage only the sealed tree; from the context only the public requirements
    assert copies == ["COPY requirements.txt /usr/local/share/cloister/requirements.txt",
                      "COPY --from=seal --chown=0:0 /fspf/encrypted-files /fspf/encrypted-files"]
    seal_run = " ".join(names["seal"])
    # seal.txt lives in /out (0700), outside the tree that is copied on; the log never
    # shows it; the tree is sealed with umask 022 so that the API's user can read it
    assert "> /out/seal.txt" in seal_run and "install -d -m 0700 -o 10001 -g 10001 /out" in seal_run
    assert "umask 022" in seal_run and "umask 077" not in seal_run


def _generated_dockerfile() -> tuple[str, str]:
    from cloister.transform._artifacts import dockerfile  # noqa: PLC0415

    return "cloister transform", dockerfile("/fspf/encrypted-files/app")


@pytest.mark.parametrize("name_text", [*((p.parent.name, p.read_text()) for p in DOCKERFILES),
                                       _generated_dockerfile()], ids=lambda nt: nt[0])
def test_every_bind_mounted_build_input_is_keyed_by_a_copy(name_text: tuple[str, str]) -> None:
    """buildah (podman build) keys a RUN's cache on its text, not on what it bind-mounts:
    a RUN that bind-mounts a stage must follow a COPY from that stage (its content keys
    the layers after it), and build-context files are copied, never bind-mounted."""
    name, text = name_text
    for stage in stages(text):
        for i, line in enumerate(stage):
            for mount in re.findall(r"--mount=(\S+)", line):
                opts = dict(o.partition("=")[::2] for o in mount.split(","))
                if opts.get("type") != "bind":
                    continue
                source = opts.get("from")
                assert source, f"{name}: {line!r} bind-mounts the build context: COPY it"
                assert any(c.upper().startswith(f"COPY --FROM={source.upper()} ")
                           for c in stage[:i]), \
                    f"{name}: {line!r} bind-mounts {source} with no COPY from it before"


def test_dockerignore_excludes_keys_and_caches() -> None:
    api = (IMAGES / "api/Dockerfile.dockerignore").read_text().split()
    for pattern in ("**/__pycache__", ".env", "*.pem", "*.key", "secrets/", "policies/"):
        assert pattern in api
    runtime = [line for line in (IMAGES / "runtime/Dockerfile.dockerignore").read_text()
               .splitlines() if line and not line.startswith("#")]
    assert runtime[:2] == ["*", "!pyproject.toml"]


def _context_files() -> list[Path]:
    files = [*DOCKERFILES]
    for root in CONTEXTS:
        files += [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                  and "secrets" not in p.parts and p.suffix not in {".pyc"}]
    return files


def test_no_key_material_in_dockerfiles_or_build_contexts() -> None:
    offenders = []
    for path in _context_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        if PEM_PRIVATE.search(text) or HEX_KEY.search(text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


def test_the_key_scan_finds_planted_material(tmp_path: Path) -> None:
    # the scanner itself must catch what it looks for
    planted = "fspf_key: " + "ab" * 32
    assert HEX_KEY.search(planted)
    assert PEM_PRIVATE.search("-----BEGIN EC PRIVATE KEY-----")
    assert PEM_PRIVATE.search("-----BEGIN PRIVATE KEY-----")
    assert not HEX_KEY.search("sha256: " + "ab" * 32)


def _json_list(instruction: str, text: str) -> list[str]:
    match = re.search(rf"^{instruction} (\[.*\])\s*$", re.sub(r"\\\n\s*", " ", text), re.M)
    assert match is not None, f"no JSON-form {instruction}"
    value = json.loads(match.group(1))
    assert isinstance(value, list)
    return [str(v) for v in value]


@pytest.mark.parametrize("name", ["cas", "las"])
def test_an_images_default_command_and_healthcheck_are_valid_cloister_commands(
        name: str) -> None:
    """`docker run cloister/NAME` with no arguments: ENTRYPOINT + CMD, and the
    HEALTHCHECK, go through the real CLI parser (an option since removed fails here)."""
    text = (IMAGES / name / "Dockerfile").read_text()
    argv = [*_json_list("ENTRYPOINT", text), *_json_list("CMD", text)]
    assert argv[0] == "cloister"
    build_parser(argv[1:]).parse_args(argv[1:])
    health = re.search(r"HEALTHCHECK[^\n]*\\\n\s*CMD (.*)", text)
    assert health is not None
    probe = shlex.split(health.group(1).split(">")[0])
    if probe[0] == "cloister":
        build_parser(probe[1:]).parse_args(probe[1:])


def test_the_las_image_serves_its_unix_socket_not_tcp() -> None:
    text = (IMAGES / "las" / "Dockerfile").read_text()
    cmd = _json_list("CMD", text)
    assert cmd[cmd.index("--socket") + 1] == "/run/cloister/las.sock"
    assert "--listen" not in cmd and "EXPOSE" not in text
