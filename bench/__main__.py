"""``python -m bench [--quick] [--only SECTION…]``: run the benchmark, print the table.

Writes ``results.json`` and ``results.png`` next to this file (``--out`` to
change).  Each section fails soft: an error or a missing piece becomes a
"skipped" line with its reason, and the other sections still run.  Every
process the bench starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import _report
from bench._context import Context
from bench._procs import Processes
from bench._stats import Figure, skipped

Section = Callable[[Context], list[Figure]]


def _sections() -> dict[str, Section]:
    from bench import api, attest, cas, imports, peer_cfssl, replicas  # noqa: PLC0415 - fast --help

    return {"attest": attest.run, "import": imports.run, "cas": cas.run,
            "replicas": replicas.run, "api": api.run, "peer": peer_cfssl.run}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about a minute)")
    parser.add_argument("--only", action="append", metavar="SECTION",
                        help="run only these sections (attest, import, cas, replicas, api, peer); "
                        "repeatable")
    parser.add_argument("--out", default=str(Path(__file__).parent),
                        help="where results.json and results.png go (default: bench/)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (logs, sealed trees) for inspection")
    args = parser.parse_args(argv)
    sections = _sections()
    chosen = args.only or list(sections)
    unknown = [s for s in chosen if s not in sections]
    if unknown:
        parser.error(f"unknown section {', '.join(unknown)}; choose from {', '.join(sections)}")
    work = Path(tempfile.mkdtemp(prefix="cloister-bench-"))
    procs = Processes(work / "logs")
    ctx = Context(work, procs, quick=args.quick)
    figures: list[Figure] = []
    started = time.time()
    try:
        for name in chosen:
            ctx.say(f"== {name}")
            try:
                figures += sections[name](ctx)
            except Exception as err:  # fail soft: one broken section must not hide the rest
                ctx.say(f"{name} failed: {err}")
                if args.keep:
                    traceback.print_exc()
                figures.append(skipped(name, "(section)", f"failed: {str(err)[:300]}"))
            finally:
                procs.stop_all()
    except KeyboardInterrupt:
        print("interrupted; stopping what the bench started", file=sys.stderr)
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python -m bench" + (" --quick" if args.quick else "")
            + "".join(f" --only {s}" for s in args.only or []),
            "machine": _report.machine(), "started": time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "seconds": round(time.time() - started, 1)}
    print(_report.table(figures))
    _report.write_json(str(out / "results.json"), figures, meta)
    problem = _report.write_chart(str(out / "results.png"), figures)
    print(f"\n{meta['command']}: {meta['seconds']} s on {meta['machine']['cpu']} "
          f"({meta['machine']['cores']} cores); wrote {out / 'results.json'}"
          + ("" if problem else f" and {out / 'results.png'}"))
    if problem:
        print(problem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
