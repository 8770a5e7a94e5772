"""What a user of Vault's or step's CLI expects of every command: -o json, -v after the
command, an example in --help, shell completion, results on stdout and prose on stderr."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloister.cli import _main

CLOISTER = str(Path(sys.executable).parent / "cloister")


def _all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def _cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLOISTER, *args], capture_output=True, text=True, input=stdin,
                          timeout=60)


PARSERS = list(_all_parsers(_main.build_parser()))


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_every_command_has_an_example_and_the_global_flags(parser: argparse.ArgumentParser) -> None:
    help_text = parser.format_help()
    assert "example" in help_text, f"add an example for `{parser.prog}` to cli/_examples.py"
    options = {o for a in parser._actions for o in a.option_strings}
    assert {"-v", "--verbose", "-o", "--output"} <= options, parser.prog


def test_global_flags_work_after_the_subcommand() -> None:
    before = _cli("-o", "json", "measure")
    after = _cli("measure", "-o", "json")
    assert before.returncode == after.returncode == 0, before.stderr + after.stderr
    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert len(json.loads(after.stdout)["measurement"]) == 64
    assert _cli("measure", "--verbose").stdout == _cli("-v", "measure").stdout
    # the subcommand's -v does not turn off the root's
    parsed = _main.build_parser(["-v", "measure"]).parse_args(["-v", "measure"])
    assert parsed.verbose is True and parsed.output == "text"


def test_session_check_json(tmp_path: Path) -> None:
    policy = tmp_path / "s.yml"
    policy.write_text('name: $NAME\nversion: "0.3"\nsecrets:\n  - name: pw\n    kind: ascii\n')
    done = _cli("session", "check", str(policy), "-e", "NAME=demo-1", "-o", "json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "demo-1" and result["valid"] is True and result["summary"]


def test_seal_prints_only_the_three_lines_on_stdout(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.py").write_text("print('hi')\n")
    done = _cli("seal", str(src), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["fspf_path", "fspf_key", "fspf_tag"]
    assert "sealed 1 files" in done.stderr  # the prose went to stderr
    again = _cli("seal", str(src), "--out", str(tmp_path / "out2"), "-o", "json")
    data = json.loads(again.stdout)
    assert len(data["fspf_key"]) == 64 and len(data["fspf_tag"]) == 32 and data["files"] == 1


def _bash_complete(words: list[str]) -> list[str]:
    """COMPREPLY for the command line ``words`` (the last is the word being completed)."""
    script = _cli("completion", "bash").stdout
    array = " ".join(f"'{w}'" for w in words)
    probe = (f"{script}\nCOMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; _cloister; "
             'printf "%s\\n" "${COMPREPLY[@]}"')
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_knows_commands_subcommands_options_and_values() -> None:
    assert {"session", "run", "values", "completion"} <= set(_bash_complete(["cloister", ""]))
    assert set(_bash_complete(["cloister", "session", ""])) >= {"create", "list", "read"}
    assert set(_bash_complete(["cloister", "session", "list", "--ca"])) == {
        "--cas", "--cas-cert"}
    assert _bash_complete(["cloister", "-v", "session", "li"]) == ["list"]
    assert set(_bash_complete(["cloister", "measure", "-o", ""])) == {"text", "json"}
    assert set(_bash_complete(["cloister", "completion", ""])) == {"bash", "zsh", "fish"}
    assert "--cas-cert" in _bash_complete(["cloister", "run", "--"])


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_parse(shell: str) -> None:
    script = _cli("completion", shell)
    assert script.returncode == 0 and "cloister" in script.stdout
    assert "session" in script.stdout and "--cas-cert" in script.stdout
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed here: only the script's content was checked")
    done = subprocess.run([shell, "-n"], input=script.stdout, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr


def test_transform_env_is_not_dash_e() -> None:
    """One meaning for -e: a template value ($VAR), never the program's environment."""
    parser = _main.build_parser(["transform"])
    transform = next(p for p in _all_parsers(parser) if p.prog == "cloister transform")
    options = {o for a in transform._actions for o in a.option_strings}
    assert "--env" in options and "-e" not in options
    session = _main.build_parser(["session"])
    create = next(p for p in _all_parsers(session) if p.prog == "cloister session create")
    assert any(a.dest == "variables" and "-e" in a.option_strings for a in create._actions)
