"""Setting ``name`` / ``predecessor`` in session text changes that entry and nothing else."""

from __future__ import annotations

import pytest

from cloister import errors
from cloister.client import prepare_session_text, set_top_level_key
from support import SEED_VARIABLES, seed_text

H1, H2 = "1" * 64, "ab" * 32

SIMPLE = """# comment: predecessor: here is not a key
name: app   # trailing comment
version: "0.3"
secrets:
  - name: predecessor
    kind: ascii
"""


def test_insert_after_name_keeps_every_other_byte() -> None:
    out = set_top_level_key(SIMPLE, "predecessor", H1)
    lines = SIMPLE.splitlines(keepends=True)
    assert out == "".join([*lines[:2], f'predecessor: "{H1}"\n', *lines[2:]])


def test_replace_existing_entry_with_continuation() -> None:
    text = f"name: app\nversion: '0.3'\npredecessor:\n  {H1}\n\nversion: '0.3'\n"
    out = set_top_level_key(text, "predecessor", H2)
    assert out == f"name: app\nversion: '0.3'\npredecessor: \"{H2}\"\n\nversion: '0.3'\n"
    quoted = f'"predecessor": {H1}\nname: app\n'
    assert set_top_level_key(quoted, "predecessor", H2) == f'predecessor: "{H2}"\nname: app\n'


def test_crlf_and_missing_final_newline() -> None:
    text = "version: '0.3'\r\nname: app"
    assert set_top_level_key(text, "predecessor", H1) == (
        f"version: '0.3'\r\nname: app\r\npredecessor: \"{H1}\"\r\n"
    )


def test_all_digit_hash_stays_a_string() -> None:
    digits = "12345" * 12 + "6789"
    _, session = prepare_session_text(
        'name: app\nversion: "0.3"\n', predecessor=digits
    )
    assert session.predecessor == digits


def test_not_a_block_mapping_is_an_error() -> None:
    with pytest.raises(errors.PolicyError, match="not a YAML block mapping"):
        set_top_level_key("{name: app}\n", "predecessor", H1)


def test_prepare_seed_template_with_name_and_predecessor() -> None:
    template = seed_text("flask")
    text, session = prepare_session_text(
        template, variables=SEED_VARIABLES, name="renamed", predecessor=H1
    )
    assert session.name == "renamed" and session.predecessor == H1
    assert "$FLASK_SESSION" not in text and "$$SCONE::flask.crt$$" in text
    assert text.count("\n") == template.count("\n") + 1


def test_prepare_reports_missing_variables_and_bad_policy() -> None:
    with pytest.raises(errors.TemplateError, match=r"\$FLASK_SESSION"):
        prepare_session_text(seed_text("flask"), variables={})
    with pytest.raises(errors.PolicyError, match="secretz"):
        prepare_session_text('name: a\nversion: "0.3"\nsecretz: []\n')
