"""``-m module`` runs only a module of the sealed tree, never one the host put on sys.path."""

from __future__ import annotations

from pathlib import Path

from fspf_testlib import run_python

from cloister import fspf


def test_host_module_is_not_run_in_place_of_a_sealed_one(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    (src / "app" / "__init__.py").write_text("")
    (src / "app" / "__main__.py").write_text("print('sealed app ran')\n")
    result = fspf.seal(str(src), str(tmp_path / "sealed"))
    host = tmp_path / "host"
    host.mkdir()
    (host / "evil.py").write_text("print('HOST CODE RAN')\n")
    code = (
        "import sys\nfrom cloister import errors, fspf\n"
        f"tree = fspf.ProtectedTree.open({result.fspf_path!r}, {result.key_hex!r}, "
        f"{result.tag_hex!r})\n"
        "try:\n    fspf.run_main(tree, sys.argv[1], [], module=True)\n"
        "except errors.IntegrityError as err:\n    print('refused:', err)\n"
    )
    evil = run_python(code, "evil", cwd=host)
    assert "HOST CODE RAN" not in evil.stdout
    assert "refused: module 'evil' is not in the protected tree" in evil.stdout
    sealed = run_python(code, "app", cwd=tmp_path / "sealed")
    assert sealed.stdout.strip() == "sealed app ran", sealed.stderr
