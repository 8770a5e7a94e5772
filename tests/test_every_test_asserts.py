"""A rule for the suite itself: every test asserts something it observed.

A test function passes the rule when its body (nested functions included)
has an ``assert``, a ``pytest.raises``/``pytest.fail``/``pytest.skip``, or
uses — calls, or hands to another function — a helper that does, directly
or through other helpers.  Helpers are every function and method defined in
``tests/`` (harnesses included), matched by name: a simple rule that cannot
prove a test meaningful, but catches the test that can never fail because it
checks nothing.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).parent
_PYTEST_CHECKS = frozenset({"raises", "fail", "skip", "xfail", "importorskip", "warns"})


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _checks_directly(fn: ast.AST) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.Raise):  # raise AssertionError(...) / pytest.fail
            return True
        if (isinstance(node, ast.Attribute) and node.attr in _PYTEST_CHECKS
                and isinstance(node.value, ast.Name) and node.value.id == "pytest"):
            return True
    return False


def _names_used(fn: ast.AST) -> set[str]:
    used: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            used.add(node.id)
        elif isinstance(node, ast.Attribute):
            used.add(node.attr)
    return used


def _asserting_helpers(trees: dict[Path, ast.Module]) -> set[str]:
    """Names of helper functions that assert, directly or through other helpers."""
    helpers: dict[str, list[ast.AST]] = {}
    for tree in trees.values():
        for fn in _functions(tree):
            if not fn.name.startswith("test_"):
                helpers.setdefault(fn.name, []).append(fn)
    asserting = {name for name, fns in helpers.items() if any(map(_checks_directly, fns))}
    while True:  # a helper that uses an asserting helper asserts too
        more = {name for name, fns in helpers.items() if name not in asserting
                and any(_names_used(fn) & asserting for fn in fns)}
        if not more:
            return asserting
        asserting |= more


def _test_modules() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text(), str(path)) for path in sorted(TESTS.rglob("*.py"))}


def test_every_test_function_asserts_something() -> None:
    trees = _test_modules()
    asserting = _asserting_helpers(trees)
    silent = [
        f"{path.relative_to(TESTS)}::{fn.name}"
        for path, tree in trees.items() if path.name.startswith("test_")
        for fn in _functions(tree)
        if fn.name.startswith("test_")
        and not _checks_directly(fn) and not (_names_used(fn) & asserting)
    ]
    assert silent == [], f"tests that assert nothing: {silent}"


def test_the_rule_catches_a_test_that_checks_nothing() -> None:
    """The rule itself can fail: a test calling only a non-asserting helper is caught."""
    tree = ast.parse(
        "def helper():\n    return 1\n\n"
        "def checker(x):\n    assert x\n\n"
        "def test_silent():\n    helper()\n\n"
        "def test_checked():\n    checker(helper())\n"
    )
    asserting = _asserting_helpers({Path("t.py"): tree})
    by_name = {fn.name: fn for fn in _functions(tree)}
    assert asserting == {"checker"}
    assert not _checks_directly(by_name["test_silent"])
    assert not (_names_used(by_name["test_silent"]) & asserting)
    assert _names_used(by_name["test_checked"]) & asserting
