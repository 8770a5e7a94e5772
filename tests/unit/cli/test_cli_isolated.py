"""`cloister run` restarts as `python -I -m cloister.cli run …` before anything else, and the
process it replaces imports next to nothing (a service's start-up pays for both)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

#: stands in for os.execve: prints what the process imported and what it would exec
_PROBE = """
import json, os, sys
before = set(sys.modules)
def execve(path, argv, env):
    print(json.dumps({"path": path, "argv": argv, "python_env": sorted(k for k in env
                      if k.startswith("PYTHON")), "new": sorted(set(sys.modules) - before)}))
    sys.stdout.flush()
    os._exit(0)
os.execve = execve
sys.argv = ["cloister", *json.loads(os.environ["PROBE_ARGS"])]
from cloister.cli import main
sys.exit(main())
"""


def _first_process(args: list[str], *flags: str) -> dict[str, Any]:
    env = {**os.environ, "PROBE_ARGS": json.dumps(args), "PYTHONPROBE_UNUSED": "1"}
    done = subprocess.run([sys.executable, *flags, "-c", _PROBE], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


@pytest.mark.parametrize("args", [["run"], ["run", "--", "redis-server", "--port", "1"],
                                  ["run", "--las", "/tmp/l.sock"]])
def test_run_restarts_isolated_with_the_same_arguments_and_no_python_variables(
        args: list[str]) -> None:
    seen = _first_process(args)
    assert seen["path"] == sys.executable
    assert seen["argv"] == [sys.executable, "-I", "-m", "cloister.cli", *args]
    assert seen["python_env"] == []  # -I ignores them; the LAS would refuse them


def test_the_replaced_process_imports_only_the_restart() -> None:
    seen = _first_process(["run"])
    new = set(seen["new"])
    assert new <= {"__future__", "cloister", "cloister.cli", "cloister.cli._isolated",
                   "cloister.errors"}, new


def test_an_isolated_process_of_the_runtime_does_not_restart_again() -> None:
    """`python -I -m cloister.cli run` is what the LAS quotes: it runs, it is not replaced."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "CLOISTER_", "SCONE_"))}
    done = subprocess.run([sys.executable, "-I", "-m", "cloister.cli", "run"], env=env,
                          capture_output=True, text=True, timeout=60)
    # it went on to read its settings (and found none) instead of exec'ing itself again
    assert done.returncode != 0
    assert done.stderr.startswith("cloister: error: no configuration id"), done.stderr


#: the isolated process (`python -I -m cloister.cli run …`), reporting whether it parsed
_ISOLATED = """
import json, os, sys
import cloister.cli
sys.argv = [os.path.join(os.path.dirname(cloister.cli.__file__), "__main__.py"),
            *json.loads(os.environ["PROBE_ARGS"])]
status = cloister.cli.main()
print(json.dumps({"status": status, "parsed": "argparse" in sys.modules}))
"""


@pytest.mark.parametrize(("args", "parsed"), [
    (["run"], False),
    (["run", "--"], False),
    (["run", "--", "redis-server", "--port", "1"], False),
    (["run", "--las", "/tmp/l.sock"], True),
    (["run", "-v", "--", "redis-server"], True),
])
def test_the_isolated_process_parses_only_options(args: list[str], parsed: bool) -> None:
    """`run` and `run -- COMMAND…` (how services start) need no parser; with or without
    it, a failure is the same one line and exit code."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "CLOISTER_", "SCONE_"))}
    env["PROBE_ARGS"] = json.dumps(args)
    done = subprocess.run([sys.executable, "-I", "-c", _ISOLATED], env=env,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout) == {"status": 2, "parsed": parsed}, done.stderr
    assert ("cloister: error: no configuration id: set CLOISTER_CONFIG_ID=session/service "
            "(or SCONE_CONFIG_ID)") in done.stderr.splitlines()
    assert ("Traceback" in done.stderr) == ("-v" in args)  # only --verbose shows one
