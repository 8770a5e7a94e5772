"""The two YAML loaders of cloister.policy._yaml: libyaml's for plain texts, the strict one else.

Whichever reads a text, the tree is the same (values, marks, spans, raw text)
and so are the refusals; only the time differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cloister.errors import PolicyError
from cloister.policy import _yaml

EXAMPLES = sorted((Path(__file__).parents[3] / "examples").rglob("*.yml"))

TEXTS = [
    "name: x\nversion: \"0.3\"\n",
    "a: \"é€😀\"\nb: [1, {c: ü}]\nc: 'it''s'\n",
    "n: 12\nf: 1.5e3\nb: true\nz: null\nt: 2001-12-14t21:59:43.10-05:00\nh: 0x1F\n",
    "text: |\n  line one\n  line two\nfolded: >-\n  a\n  b\n",
    "store: !cas\nnested: !akv {vault: v, name: n}\nplain: !!str 12\n",
    "list:\n  - a\n  -\n    - b\n    - c\n  - {k: v}\nempty: []\n",
    "url: https://example.com/?a=1&b=2\nglob: \"*.example.com\"\nstar: a*b\n",
    "# comment only before\nkey: value  # trailing\n",
    "bin: !!binary aGVsbG8=\n",
]


@pytest.mark.parametrize("text", TEXTS + [p.read_text() for p in EXAMPLES],
                         ids=[f"text{i}" for i in range(len(TEXTS))] + [p.name for p in EXAMPLES])
def test_libyaml_and_the_strict_loader_give_the_same_tree(text: str) -> None:
    fast = _yaml._fast(text, "src")
    assert fast is not None, "a plain text was not read by libyaml"
    assert fast == _yaml._strict(text, "src")


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                 # anchor and alias
    "a: *nowhere\n",                    # alias of nothing
    "a: 1\n---\nb: 2\n",                # two documents
    "a: [1, 2\n",                       # not YAML
    "a: \x07\n",                        # a control character
    "",                                 # empty
    "a: 1\na: 2\n",                     # a duplicate key: refused by the same check
])
def test_texts_libyaml_does_not_read_get_the_strict_loaders_answer(text: str) -> None:
    fast: object
    try:
        fast = _yaml._fast(text, "")
    except PolicyError as err:
        fast = err.message
    try:
        strict: object = _yaml._strict(text, "")
    except PolicyError as err:
        strict = err.message
    assert fast is None or fast == strict, \
        f"libyaml answered {fast!r}, the strict loader {strict!r}"
    try:
        parsed: object = _yaml.parse(text)
    except PolicyError as err:
        parsed = err.message
    assert parsed == strict


def test_a_plain_session_never_reaches_the_strict_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    strict_reads: list[str] = []
    real = _yaml._strict
    monkeypatch.setattr(_yaml, "_strict", lambda text, source: strict_reads.append(text)
                        or real(text, source))
    for path in EXAMPLES:
        _yaml.parse(path.read_text())
    assert strict_reads == []
    with pytest.raises(PolicyError, match="anchors and aliases are not allowed"):
        _yaml.parse("a: &x 1\n")
    assert strict_reads == ["a: &x 1\n"]
