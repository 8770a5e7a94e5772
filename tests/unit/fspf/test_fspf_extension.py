"""A sealed C extension module imports from memory (memfd), never from a plaintext file."""

from __future__ import annotations

import shutil
from pathlib import Path

import markupsafe
from fspf_testlib import run_python

from cloister import fspf


def test_sealed_extension_module_imports(tmp_path: Path) -> None:
    speedups = next(Path(markupsafe.__file__).parent.glob("_speedups*.so"))
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    shutil.copy(speedups, src / "pkg" / speedups.name)
    (src / "main.py").write_text(
        "from pkg import _speedups\n"
        "print(_speedups.__name__, _speedups._escape_inner('<a>'))\n"
    )
    result = fspf.seal(str(src), str(tmp_path / "sealed"))
    code = (
        "import sys\nfrom cloister import fspf\n"
        f"tree = fspf.ProtectedTree.open({result.fspf_path!r}, {result.key_hex!r}, "
        f"{result.tag_hex!r})\n"
        f"fspf.run_main(tree, {str(tmp_path / 'sealed' / 'main.py')!r}, [])\n"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pkg._speedups &lt;a&gt;"
    sealed_so = (tmp_path / "sealed" / "pkg" / speedups.name).read_bytes()
    assert sealed_so != speedups.read_bytes(), "the extension was not encrypted"
