"""The root parser: every command has an owner module, and a known command loads only it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from cloister.cli import _main


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(action.choices)


def test_every_command_has_the_owner_that_registers_it() -> None:
    assert _commands(_main.build_parser()) == set(_main.COMMAND_OWNERS)
    for command, owner in _main.COMMAND_OWNERS.items():
        assert command in _commands(_main.build_parser([command]))
        assert owner in _main.COMMAND_MODULES


@pytest.mark.parametrize("argv", [[], ["--help"], ["nonsense"], ["-v"]])
def test_unknown_or_no_command_registers_everything(argv: list[str]) -> None:
    assert _commands(_main.build_parser(argv)) == set(_main.COMMAND_OWNERS)


def test_run_does_not_import_the_servers_or_tools() -> None:
    code = (
        "import sys\nfrom cloister.cli import _main\n_main.build_parser(['run'])\n"
        "import cloister.runtime\n"
        "heavy = [m for m in ('cloister.cas._server', 'cloister.demo', 'cloister.transform', "
        "'cloister.fspf._build', 'cloister.attest._las', 'http.server', 'yaml', 'cheroot') "
        "if m in sys.modules]\nprint(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_refusal_by_the_system_is_one_line_not_a_traceback(tmp_path: object) -> None:
    done = subprocess.run([sys.executable, "-m", "cloister.cli", "fspf", "create",
                           "/proc/no-such-dir/f.fspf"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("cloister: error: ")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["demo", "up", "--cas-port", "99999"],
    ["cas", "serve", "--threads", "-5"],
    ["values", "s", "--timeout", "nan"],
])
def test_out_of_range_numbers_are_usage_errors(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "cloister.cli", *argv],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not in" in done.stderr


@pytest.mark.parametrize("argv", [["values", "a,secret=b"], ["session", "read", ""],
                                  ["values", "s", "x/y"]])
def test_names_cannot_smuggle_url_syntax(argv: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "cloister.cli", *argv],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "invalid" in done.stderr and "name" in done.stderr


def test_every_exit_status_is_in_the_help_and_the_readme() -> None:
    from cloister.cli._exit import EXIT_CODES, MEANINGS  # noqa: PLC0415

    readme = (Path(__file__).parents[3] / "README.md").read_text()
    cloister = str(Path(sys.executable).parent / "cloister")
    help_text = subprocess.run([cloister, "--help"], capture_output=True, text=True,
                               check=True).stdout
    documented = {code for code, _ in MEANINGS}
    assert {code for _, code in EXIT_CODES} <= documented
    for code, meaning in MEANINGS:
        assert f"| {code} | " in readme, f"exit status {code} missing from the README"
        assert f"{code:>3}  {meaning}" in help_text, f"exit status {code} missing from --help"


def test_every_error_class_has_its_own_exit_status() -> None:
    """No cloister error falls through to 1 (reserved for bugs)."""
    import inspect  # noqa: PLC0415

    from cloister import errors  # noqa: PLC0415
    from cloister.cli._exit import DEFAULT_EXIT, exit_code_for  # noqa: PLC0415

    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.Error) and c is not errors.Error]
    assert classes
    for cls in classes:
        assert exit_code_for(cls("x")) != DEFAULT_EXIT, cls
    assert exit_code_for(errors.Unreachable("x")) == exit_code_for(errors.TLSError("x")) == 5
    assert not issubclass(errors.Unreachable, errors.AttestationError)
