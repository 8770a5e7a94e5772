"""Run a Python program in this process, as ``python3 script.py …`` would.

The released environment replaces ``os.environ``; ``pwd`` is applied;
injected files and protected trees are visible only inside this process
through the in-memory overlay (:mod:`cloister.runtime._memfs`); sealed code
is imported by the fspf importer and never written to disk.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from cloister import errors
from cloister.fspf import ProtectedTree, run_main
from cloister.runtime._config import LaunchConfig
from cloister.runtime._memfs import MemFS

#: interpreter options that take no value and change nothing we must emulate
_IGNORED_FLAGS = frozenset("uBsEIqOdW")


@dataclass(frozen=True)
class PythonTarget:
    """What to run: a script path or a module (``-m``), and its arguments."""

    target: str
    module: bool
    args: tuple[str, ...]


def parse_python_command(argv: Sequence[str]) -> PythonTarget:
    """Parse ``python3 [flags] (script | -m module) args…`` (argv[0] is the interpreter)."""
    rest = list(argv[1:])
    while rest and rest[0].startswith("-") and rest[0] != "-":
        flag = rest.pop(0)
        if flag == "-m":
            if not rest:
                raise errors.LaunchError("the policy's command has -m without a module name")
            return PythonTarget(rest[0], True, tuple(rest[1:]))
        if flag.startswith("-m") and len(flag) > 2:
            return PythonTarget(flag[2:], True, tuple(rest))
        if flag == "-c" or not set(flag[1:]) <= _IGNORED_FLAGS:
            raise errors.LaunchError(
                f"the policy's command uses interpreter option {flag!r}, which cloister run "
                "does not support: start a script or -m module"
            )
    if not rest:
        raise errors.LaunchError(
            "the policy's command starts Python without a script: add the script path"
        )
    return PythonTarget(rest[0], False, tuple(rest[1:]))


def open_tree(config: LaunchConfig) -> ProtectedTree | None:
    """Verify and open the protected tree the configuration names (before anything runs)."""
    if config.fspf is None:
        return None
    return ProtectedTree.open(config.fspf.path, config.fspf.key, config.fspf.tag)


def run_python(config: LaunchConfig, tree: ProtectedTree | None) -> int:
    """Install the configuration and run the program; returns its exit status."""
    target = parse_python_command(config.command)
    overlay = MemFS()
    for injected in config.files:
        overlay.add_file(injected.path, injected.content, injected.mode)
    if tree is not None:
        overlay.add_tree(tree)
    os.environ.clear()
    os.environ.update(config.environment)
    config.enter_pwd()
    sys.dont_write_bytecode = True  # decrypted code must not reach __pycache__
    overlay.install()
    return _run(target, tree, config.debug_tracebacks)


def _check_target(target: PythonTarget, tree: ProtectedTree | None) -> None:
    """Refuse, before anything runs, a script or module that is not there."""
    if target.module:
        if tree is None and importlib.util.find_spec(target.target) is None:
            raise errors.LaunchError(
                f"the policy's command runs module {target.target!r}, which is not installed"
            )
    elif not os.path.isfile(target.target):  # the overlay answers for sealed scripts
        raise errors.LaunchError(
            f"the policy's command runs {target.target}, which does not exist here"
        )


def _run(target: PythonTarget, tree: ProtectedTree | None, show_source: bool = False) -> int:
    """Run the program like ``python3`` would: its exit status, its own traceback."""
    _check_target(target, tree)
    try:
        if tree is not None:
            run_main(tree, target.target, target.args, module=target.module,
                     show_source=show_source)
        elif target.module:
            sys.argv = [target.target, *target.args]  # as `python -I -m`: no cwd on sys.path
            runpy.run_module(target.target, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [target.target, *target.args]
            sys.path.insert(0, os.path.dirname(os.path.abspath(target.target)))
            runpy.run_path(target.target, run_name="__main__")
    except SystemExit as done:
        return _exit_status(done.code)
    except errors.IntegrityError:
        raise  # the file shield refused: cloister's own one-line error
    except Exception:  # the program's own failure: its traceback, exit 1, as python3 does
        sys.excepthook(*sys.exc_info())
        return 1
    return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
