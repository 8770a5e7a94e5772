"""Child process of the encrypted-import benchmark: one cold import of a tree, timed.

Run as ``python -I -S _import_probe.py`` with a JSON request on stdin:
``{"mode": "plain"|"sealed"|"pyconcrete"|"sourcedefender", "tree": DIR,
"modules": [...], "after": [paths appended to sys.path], "fspf": {...}}``
(the fspf key comes on stdin, never in argv or the environment).

Prints one JSON line: ``{"setup": s, "imports": s, "runtime_import": s}`` —
``runtime_import`` is loading the protection mechanism's own code,
``setup`` opening/verifying the protected tree, ``imports`` importing the
modules.  Refuses (exit 3) when a module was not loaded from ``tree``: a
figure that silently measured site-packages would be worthless.
"""

import json
import sys
import time


def main() -> int:
    request = json.loads(sys.stdin.read())
    tree = request["tree"]
    sys.path.insert(0, tree)
    sys.path.extend(request.get("after", []))
    mode = request["mode"]
    t0 = time.perf_counter()
    if mode == "sealed":
        from cloister import fspf  # noqa: PLC0415

        t1 = time.perf_counter()
        info = request["fspf"]
        tree_obj = fspf.ProtectedTree.open(info["path"], info["key"], info["tag"])
        fspf.install_importer(tree_obj)
    elif mode == "pyconcrete":
        import pyconcrete  # noqa: F401, PLC0415

        t1 = time.perf_counter()
    elif mode == "sourcedefender":
        import sourcedefender  # noqa: F401, PLC0415

        t1 = time.perf_counter()
    else:
        t1 = time.perf_counter()
    t2 = time.perf_counter()
    for name in request["modules"]:
        __import__(name)
    t3 = time.perf_counter()
    for name in request["modules"]:
        where = getattr(sys.modules[name], "__file__", None) or ""
        if not where.startswith(tree):
            print(json.dumps({"error": f"{name} was loaded from {where}, not from {tree}"}))
            return 3
    print(json.dumps({"runtime_import": t1 - t0, "setup": t2 - t1, "imports": t3 - t2}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
