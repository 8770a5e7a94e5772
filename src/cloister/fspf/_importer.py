"""Importing and running Python code straight from a :class:`ProtectedTree`.

Invariants:
- code is executed only from verified bytes: the sealed code object when it
  was sealed for this interpreter's magic number, else the verified source
  compiled in memory;
- nothing is written: ``sys.dont_write_bytecode`` is set, loaders never cache,
  ``importlib.resources.as_file`` gets a path object whose reads come from
  the tree (no temporary copy), extension modules are loaded from a memfd;
- a module name that resolves to a host file in a protected region that the
  manifest does not list is refused with an IntegrityError instead of being
  left to the ordinary path finder;
- tracebacks and warnings of sealed code show file and line, never its
  decrypted source (stderr often ends in log files), unless the tree is
  installed with ``show_source=True`` (a policy's ``debug_tracebacks``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import io
import linecache
import marshal
import os
import pathlib
import posix
import runpy
import sys
import traceback
import types
from collections.abc import Generator, Sequence
from typing import Any

from cloister import errors
from cloister.fspf._tree import ProtectedTree

_MAGIC = importlib.util.MAGIC_NUMBER
_FINDERS: list[TreeFinder] = []
_ORIGINAL_UPDATECACHE = linecache.updatecache


class TreeFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder for modules whose files lie in ``tree`` below ``root``."""

    def __init__(self, tree: ProtectedTree, root: str, *, show_source: bool = False) -> None:
        self.tree = tree
        self.root = os.path.abspath(root)
        self.show_source = show_source
        #: logical path of each absolute import path entry seen (every import asks again)
        self._bases: dict[str, str | None] = {}

    def view(self, logical: str) -> str:
        return os.path.normpath(self.root + logical) if self.root != "/" else logical

    def logical(self, path: str) -> str | None:
        return self.tree.to_logical(os.path.abspath(path), self.root)

    def _base(self, entry: str) -> str | None:
        """:meth:`logical` of an import path entry (cached when absolute: a pure function
        of the entry then, while a relative one follows the working directory)."""
        if not entry.startswith("/"):
            return self.logical(entry or os.getcwd())
        if entry not in self._bases:
            self._bases[entry] = self.logical(entry)
        return self._bases[entry]

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        name = fullname.rpartition(".")[2]
        entries: Sequence[Any] = sys.path if path is None else path
        for entry in entries:
            if not isinstance(entry, str):
                continue  # sys.path may hold non-strings in the wild
            base = self._base(entry)
            if base is None:
                continue
            stem = base.rstrip("/") + "/" + name
            spec = self._spec(fullname, stem)
            if spec is not None:
                return spec
            if self.tree.covers(stem):
                self._refuse_unlisted(stem)
        return None

    def _spec(self, fullname: str, stem: str) -> importlib.machinery.ModuleSpec | None:
        tree = self.tree
        for logical, is_pkg in ((stem + "/__init__.py", True), (stem + ".py", False)):
            if tree.has_file(logical):
                loader = TreeLoader(self, logical, is_pkg=is_pkg)
                return importlib.util.spec_from_file_location(
                    fullname,
                    self.view(logical),
                    loader=loader,
                    submodule_search_locations=[self.view(stem)] if is_pkg else None,
                )
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            if tree.has_file(stem + suffix):
                ext = _MemfdExtensionLoader(self, fullname, stem + suffix)
                return importlib.util.spec_from_file_location(
                    fullname, self.view(stem + suffix), loader=ext
                )
        return None

    def _refuse_unlisted(self, stem: str) -> None:
        candidates = [stem + ".py", stem + "/__init__.py", stem + ".pyc"]
        candidates += [stem + s for s in importlib.machinery.EXTENSION_SUFFIXES]
        for logical in candidates:
            host = self.tree.host_path(logical)
            if host is not None and _on_host(host):
                raise errors.IntegrityError(
                    f"{host} is in a protected region but not listed in the protection file "
                    f"{self.tree.fspf_path}; refusing to import it (added after sealing?)"
                )


def _on_host(path: str) -> bool:
    """Whether ``path`` exists on the host's filesystem, which is where an ordinary finder
    would import it from (``posix.stat``: an in-memory overlay's ``os.stat`` is slower and
    answers for files no finder would import)."""
    try:
        posix.stat(path)
    except (OSError, ValueError):
        return False
    return True


class TreeLoader(importlib.abc.InspectLoader):
    """Loads one module of the tree; never writes bytecode."""

    def __init__(self, finder: TreeFinder, logical: str, *, is_pkg: bool) -> None:
        self._finder, self._logical, self._is_pkg = finder, logical, is_pkg
        self.path = finder.view(logical)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        exec(self.get_code(module.__name__), module.__dict__)  # noqa: S102 - verified code

    def is_package(self, fullname: str) -> bool:
        return self._is_pkg

    def get_filename(self, fullname: str | None = None) -> str:
        return self.path

    def get_source(self, fullname: str) -> str:
        return importlib.util.decode_source(self._finder.tree.read(self._logical))

    def get_code(self, fullname: str) -> types.CodeType:
        # the source is verified too (AES-GCM is cheap next to compiling): a file
        # changed on disk refuses the import even though its sealed code is intact
        source = self._finder.tree.read(self._logical)
        blob = self._finder.tree.code(self._logical)
        if blob is not None and blob[: len(_MAGIC)] == _MAGIC:
            code = marshal.loads(blob[len(_MAGIC) :])  # noqa: S302 - authenticated bytes
            if isinstance(code, types.CodeType):
                return _fix_filename(code, self.path)
        return compile(source, self.path, "exec", dont_inherit=True)

    def get_data(self, path: str) -> bytes:
        logical = self._finder.logical(path)
        if logical is not None and (
            self._finder.tree.covers(logical) or self._finder.tree.has_file(logical)
        ):
            return self._finder.tree.read(logical)
        with open(path, "rb") as fh:
            return fh.read()

    def get_resource_reader(self, fullname: str) -> Any:
        return _Resources(self._finder, os.path.dirname(self._logical)) if self._is_pkg else None


class _MemfdExtensionLoader(importlib.abc.Loader):
    """Loads an extension module from verified bytes through an anonymous memfd."""

    def __init__(self, finder: TreeFinder, fullname: str, logical: str) -> None:
        self._finder, self._fullname, self._logical = finder, fullname, logical
        self._inner: importlib.machinery.ExtensionFileLoader | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        fd = os.memfd_create(os.path.basename(self._logical), os.MFD_CLOEXEC)
        try:
            os.write(fd, self._finder.tree.read(self._logical))
            proc = f"/proc/self/fd/{fd}"
            inner = self._inner = importlib.machinery.ExtensionFileLoader(self._fullname, proc)
            inner_spec = importlib.util.spec_from_file_location(self._fullname, proc, loader=inner)
            assert inner_spec is not None
            module = inner.create_module(inner_spec)
        finally:
            os.close(fd)  # the mapping outlives the descriptor
        module.__file__ = self._finder.view(self._logical)
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        assert self._inner is not None, "create_module runs first"
        self._inner.exec_module(module)


def _require_sealed_module(finder: TreeFinder, name: str) -> None:
    """Refuse ``-m name`` unless the module (a package: its ``__main__``) is in the tree.

    Otherwise a module of that name elsewhere on ``sys.path`` (the host's working
    directory) would run with the released configuration.
    """
    try:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations is not None:
            spec = importlib.util.find_spec(f"{name}.__main__")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not isinstance(spec.loader, TreeLoader | _MemfdExtensionLoader):
        where = "not found" if spec is None else f"found outside it ({spec.origin})"
        raise errors.IntegrityError(
            f"module {name!r} is not in the protected tree {finder.tree.fspf_path}: {where}; "
            "refusing to run it with the released configuration"
        )


def _fix_filename(code: types.CodeType, path: str) -> types.CodeType:
    """``code`` with ``co_filename`` set to ``path`` recursively (sealed under the logical path)."""
    if code.co_filename == path:
        return code
    consts = tuple(
        _fix_filename(c, path) if isinstance(c, types.CodeType) else c for c in code.co_consts
    )
    return code.replace(co_filename=path, co_consts=consts)


# --- importlib.resources ---------------------------------------------------


class _Resources(importlib.abc.TraversableResources):
    def __init__(self, finder: TreeFinder, logical_dir: str) -> None:
        self._finder, self._dir = finder, logical_dir

    def files(self) -> Any:
        return sealed_path_class(self._finder)(self._finder.view(self._dir))


class _SealedPathBase(pathlib.PosixPath):
    """A real path (so ``as_file`` needs no temp copy) whose reads come from the tree."""

    _finder: TreeFinder

    def _logical(self) -> str | None:
        return self._finder.logical(str(self))

    def open(
        self,
        mode: str = "r",
        buffering: int = -1,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
    ) -> Any:
        logical = self._logical()
        tree = self._finder.tree
        if logical is None or not (tree.has_file(logical) or tree.covers(logical)):
            return super().open(mode, buffering, encoding, errors, newline)
        if set(mode) & set("wax+"):
            raise PermissionError(f"{self} is a sealed file and is read-only")
        raw = tree.open_file(logical)
        return raw if "b" in mode else io.TextIOWrapper(raw, encoding or "utf-8", errors, newline)

    def is_file(self) -> bool:
        logical = self._logical()
        return self._finder.tree.has_file(logical) if logical else super().is_file()

    def is_dir(self) -> bool:
        logical = self._logical()
        return self._finder.tree.is_dir(logical) if logical else super().is_dir()

    def exists(self) -> bool:
        return self.is_file() or self.is_dir()

    def iterdir(self) -> Generator[Any, None, None]:
        logical = self._logical()
        if logical is None:
            yield from super().iterdir()
            return
        for name in self._finder.tree.listdir(logical):
            yield self / name


_PATH_CLASSES: dict[int, type[_SealedPathBase]] = {}


def sealed_path_class(finder: TreeFinder) -> type[_SealedPathBase]:
    """A ``pathlib.PosixPath`` subclass bound to ``finder``'s tree (derived paths keep it)."""
    cls = _PATH_CLASSES.get(id(finder))
    if cls is None:
        cls = type("SealedPath", (_SealedPathBase,), {"_finder": finder})
        _PATH_CLASSES[id(finder)] = cls
    return cls


# --- linecache, install, run -------------------------------------------------


def _updatecache(filename: str, module_globals: Any = None) -> list[str]:
    """Source lines of sealed files come from the tree, never from the ciphertext on disk."""
    if filename and os.path.isabs(filename):
        for finder in _FINDERS:
            logical = finder.logical(filename)
            if logical is not None and finder.tree.has_file(logical):
                if not finder.show_source:  # file and line only: no plaintext in stderr
                    linecache.cache[filename] = (0, None, [], filename)
                    return []
                text = importlib.util.decode_source(finder.tree.read(logical))
                lines = text.splitlines(keepends=True)
                if lines and not lines[-1].endswith("\n"):
                    lines[-1] += "\n"
                linecache.cache[filename] = (len(text), None, lines, filename)
                return lines
    return _ORIGINAL_UPDATECACHE(filename, module_globals)


def install_importer(tree: ProtectedTree, sealed_root: str | None = None, *,
                     show_source: bool = False) -> TreeFinder:
    """Serve imports from ``tree`` seen below ``sealed_root`` (default: ``tree.default_root``);
    ``show_source`` puts its decrypted lines into tracebacks (debugging only)."""
    sys.dont_write_bytecode = True
    finder = TreeFinder(tree, sealed_root or tree.default_root, show_source=show_source)
    sys.meta_path.insert(0, finder)
    _FINDERS.append(finder)
    linecache.updatecache = _updatecache
    if sys.excepthook is sys.__excepthook__:
        # the C default reads source lines from the disk (ciphertext); this one uses linecache
        sys.excepthook = _excepthook
    importlib.invalidate_caches()
    return finder


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: types.TracebackType | None
) -> None:
    traceback.print_exception(exc_type, exc, tb, file=sys.stderr)


def uninstall_importer(finder: TreeFinder) -> None:
    """Undo :func:`install_importer` (modules already imported stay)."""
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    if finder in _FINDERS:
        _FINDERS.remove(finder)
    if not _FINDERS:
        linecache.updatecache = _ORIGINAL_UPDATECACHE
        if sys.excepthook is _excepthook:
            sys.excepthook = sys.__excepthook__


def run_main(
    tree: ProtectedTree,
    path_or_module: str,
    argv: Sequence[str],
    *,
    module: bool = False,
    sealed_root: str | None = None,
    show_source: bool = False,
) -> None:
    """Run a sealed script (by its path) or ``-m`` module (``module=True``) as ``__main__``.

    ``argv`` are the arguments after the script; ``sys.argv[0]`` becomes the
    script's path as Python itself would set it.  Exceptions, including
    SystemExit, propagate like in ``python3 script.py``.
    """
    finder = next((f for f in _FINDERS if f.tree is tree), None)
    if finder is None:
        finder = install_importer(tree, sealed_root, show_source=show_source)
    if module:
        sys.argv = [path_or_module, *argv]
        _require_sealed_module(finder, path_or_module)
        runpy.run_module(path_or_module, run_name="__main__", alter_sys=True)
        return
    view = os.path.abspath(path_or_module)
    logical = finder.logical(view)
    if logical is None or not tree.has_file(logical):
        if logical is not None and tree.covers(logical):
            tree.read(logical)  # raises the IntegrityError naming the file
        raise errors.LaunchError(
            f"{view} is not a file of the sealed tree {tree.fspf_path}",
            details=[f"sealed files are seen below {finder.root}"],
        )
    loader = TreeLoader(finder, logical, is_pkg=False)
    code = loader.get_code("__main__")
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=view, __loader__=loader, __spec__=None, __cached__=None, __builtins__=__builtins__
    )
    sys.argv = [view, *argv]
    sys.path.insert(0, os.path.dirname(view))
    sys.modules["__main__"] = main
    exec(code, main.__dict__)  # noqa: S102 - verified code
