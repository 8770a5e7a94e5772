"""Encrypted import: cold import of a sealed tree vs the same tree as plain ``.pyc``.

The tree holds flask, werkzeug, jinja2, click, itsdangerous, markupsafe,
blinker and redis copied from this interpreter's site-packages, plus the
patient service's ``rest_api.py`` when it exists.  Each measurement is a
fresh ``python -I -S`` process (files in the page cache: a *cold interpreter*,
not a cold disk) that imports the whole application; variants run in
rotating order within each round, and each round's ratio is against that
round's ``.pyc`` run.

- headline (target <= 1.10x): verifying and opening the protection file plus
  all imports, vs all imports from ``.pyc``.  Loading cloister's own code is
  excluded: under ``cloister run`` it is already loaded for attestation;
- context: the same including that load, and the whole process wall-clock;
- pyconcrete / sourcedefender (each including its import hook's own load),
  when they install here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cloister
from bench import _peers
from bench._context import Context
from bench._stats import Figure, Target, compared, skipped
from cloister import fspf

SECTION = "import"
PACKAGES = ("flask", "werkzeug", "jinja2", "click", "itsdangerous", "markupsafe", "blinker",
            "redis")
#: seconds (full, --quick): a peer tool's cold import taking longer is reported, not repeated
PEER_BUDGET = (45.0, 15.0)
PROBE = str(Path(__file__).with_name("_import_probe.py"))
APP = Path(__file__).resolve().parent.parent / "examples" / "patients" / "rest_api.py"


def build_tree(dest: Path, *, extensions: bool = True) -> list[str]:
    """Copy the packages (and the app) into ``dest``; returns the modules to import.

    Without ``extensions``, compiled extension modules are left out (markupsafe
    then uses its pure-Python implementation) — in every variant alike.
    """
    dest.mkdir(parents=True)
    ignore = ["__pycache__", "*.pyc"] + ([] if extensions else ["*.so"])
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(f"{name} is not installed as a package in this venv")
        shutil.copytree(spec.submodule_search_locations[0], dest / name,
                        ignore=shutil.ignore_patterns(*ignore))
    modules = list(PACKAGES)
    if APP.exists():
        shutil.copy(APP, dest / "rest_api.py")
        modules.append("rest_api")
    return modules


def _probe(python: str, request: dict[str, object],
           timeout: float = 300) -> tuple[dict[str, float], float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    started = time.perf_counter()
    done = subprocess.run([python, "-I", "-S", PROBE], input=json.dumps(request),
                          check=False, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{request['mode']} import failed: "
                           f"{(lines[-1] if lines else done.stderr.strip()[-300:])}")
    answer = json.loads(lines[-1])
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return answer, wall


Variants = dict[str, tuple[str, dict[str, object]]]


def _prepare(ctx: Context, work: Path, *, extensions: bool) -> tuple[Variants, list[str]]:
    """Build the tree and its .pyc and sealed copies; the sealed one checked by a first run."""
    if work.exists():
        shutil.rmtree(work)
    src = work / "src"
    modules = build_tree(src, extensions=extensions)
    ctx.say(f"import: tree of {sum(1 for _ in src.rglob('*.py'))} .py files; sealing")
    plain = work / "pyc"
    shutil.copytree(src, plain)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(plain)], check=True,
                   capture_output=True, env={k: v for k, v in os.environ.items()
                                             if k != "PYTHONDONTWRITEBYTECODE"})
    sealed = fspf.seal(str(src), str(work / "sealed"))
    cloister_src = str(Path(cloister.__file__).resolve().parent.parent)
    site = [p for p in sys.path if p.endswith("site-packages")]
    variants: Variants = {
        "pyc": (sys.executable, {"mode": "plain", "tree": str(plain), "modules": modules}),
        "sealed": (sys.executable, {
            "mode": "sealed", "tree": str(work / "sealed"), "modules": modules,
            "after": [cloister_src, *site],
            "fspf": {"path": sealed.fspf_path, "key": sealed.key_hex, "tag": sealed.tag_hex}}),
    }
    for python, request in variants.values():  # warm-up, and a first check
        _probe(python, request)
    return variants, modules


def run(ctx: Context) -> list[Figure]:
    work = ctx.dir("import") / "trees"
    notes: dict[str, str] = {}
    try:
        variants, modules = _prepare(ctx, work, extensions=True)
    except RuntimeError as err:
        ctx.say(f"import: with C extensions: {str(err).splitlines()[-1]}; again without them")
        notes["ext"] = ("C extensions left out of every variant (markupsafe runs its pure-Python "
                        "code): the sealed import of them failed: "
                        f"{str(err).splitlines()[-1][-160:]}")
        variants, modules = _prepare(ctx, work, extensions=False)
    src = work / "src"
    peers = _peers.ensure(ctx.say)
    budget = PEER_BUDGET[1] if ctx.quick else PEER_BUDGET[0]
    for tool, protect in (("pyconcrete", _peers.protect_pyconcrete),
                          ("sourcedefender", _peers.protect_sourcedefender)):
        if not peers.ok(tool):
            notes[tool] = peers.status.get(tool, "not tried")
            continue
        try:
            protect(peers, src, work / tool)
            assert peers.python is not None
            request: dict[str, object] = {"mode": tool, "tree": str(work / tool),
                                          "modules": modules, "after": peers.site}
            _probe(str(peers.python), request, timeout=budget)
        except subprocess.TimeoutExpired:
            notes[tool] = (f"installed, but one cold import of the tree did not finish within "
                           f"{budget:.0f} s here")
            continue
        except (subprocess.SubprocessError, OSError, RuntimeError) as err:
            notes[tool] = f"installed, but did not run here: {str(err).splitlines()[-1][-200:]}"
            continue
        variants[tool] = (str(peers.python), request)
    rounds = ctx.pick(9, 3)
    ctx.say(f"import: {rounds} rounds of {', '.join(variants)}")
    inproc: dict[str, list[float]] = {n: [] for n in variants}
    with_runtime: dict[str, list[float]] = {n: [] for n in variants}
    wall: dict[str, list[float]] = {n: [] for n in variants}
    names = list(variants)
    for i in range(rounds):
        for name in names[i % len(names):] + names[:i % len(names)]:
            python, request = variants[name]
            answer, seconds = _probe(python, request)
            inproc[name].append((answer["setup"] + answer["imports"]) * 1e3)
            with_runtime[name].append(
                (answer["runtime_import"] + answer["setup"] + answer["imports"]) * 1e3)
            wall[name].append(seconds * 1e3)
    n_files = sum(1 for _ in src.rglob("*.py"))
    ext_note = f"; {notes['ext']}" if "ext" in notes else ""
    figures = [
        compared(SECTION, "sealed vs .pyc: tree open + imports", "ms", inproc["sealed"],
                 inproc["pyc"], ".pyc", target=Target("<=", 1.10),
                 note=f"{len(modules)} modules ({', '.join(modules)}), {n_files} .py files; "
                      "fresh `python -I -S` each run; excludes loading cloister itself, which "
                      "`cloister run` has loaded for attestation" + ext_note),
        compared(SECTION, "sealed vs .pyc: incl. loading cloister.fspf", "ms",
                 with_runtime["sealed"], with_runtime["pyc"], ".pyc"),
        compared(SECTION, "sealed vs .pyc: process wall-clock", "ms", wall["sealed"],
                 wall["pyc"], ".pyc"),
    ]
    for tool in ("pyconcrete", "sourcedefender"):
        if tool in variants:
            figures.append(compared(SECTION, f"{tool} vs .pyc: hook load + imports", "ms",
                                    with_runtime[tool], with_runtime["pyc"], ".pyc",
                                    note=f"{tool} from PyPI in {_peers.cache_dir()}"))
        else:
            figures.append(skipped(SECTION, f"{tool} vs .pyc", notes.get(tool, "not tried")))
    return figures
