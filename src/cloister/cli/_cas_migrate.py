"""``cloister cas migrate --from DIR --to postgresql://…``: move a CAS onto a shared store."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cloister import errors


def register(cas_sub: Any) -> None:
    from cloister.cli._cas import add_store_options  # noqa: PLC0415 — _cas imports us

    p = cas_sub.add_parser(
        "migrate",
        help="copy a CAS store (SQLite state directory) with its whole history, and verify it",
        description="Copy every session version, its sealed secrets and the CAS CA from the "
        "state directory of a stopped CAS to another store (a PostgreSQL database for "
        "replicas), then compare both. Clients keep their pinned certificate. Interrupted "
        "copies resume; a target holding something else is refused.",
    )
    p.add_argument("--from", dest="source", type=Path, required=True, metavar="DIR",
                   help="state directory of the CAS to copy (stop that CAS first)")
    add_store_options(p, "--to", required=True)
    p.add_argument(
        "--master-key-file", type=Path, default=None,
        help="file seal: the key file of the source, if it moved since cas init; the target "
        "is sealed under the same master key: start each replica on a copy of DIR/seal.json",
    )
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from cloister.cas._copy import copy_store  # noqa: PLC0415
    from cloister.cas._postgres import describe_url  # noqa: PLC0415
    from cloister.cas._sqlite import DB_FILE  # noqa: PLC0415
    from cloister.cas._state import (  # noqa: PLC0415
        open_sealed_store,
        require_current,
        unseal_automatic,
    )
    from cloister.cas._stores import is_shared  # noqa: PLC0415
    from cloister.cli._cas import store_url  # noqa: PLC0415

    state: Path = args.source.expanduser()
    if not (state / DB_FILE).is_file():
        raise errors.ConfigError(f"{state} holds no CAS store ({DB_FILE})",
                                 details=["give the --state directory of the CAS to copy"])
    target_url = store_url(args)
    if target_url in ("sqlite", f"sqlite://{(state / DB_FILE).resolve()}"):
        raise errors.ConfigError("--to names the source store itself")
    seal = require_current(state)
    key = unseal_automatic(state, seal, key_file=args.master_key_file)
    source = open_sealed_store(state, seal, key, "sqlite")
    try:
        target = open_sealed_store(state, seal, key, target_url)
        try:
            report = copy_store(source, target)
        finally:
            target.close()
    finally:
        source.close()
    where = describe_url(target_url) if is_shared(target_url) else target_url
    if report.problems:
        raise errors.IntegrityError(
            f"the copy to {where} differs from the source ({len(report.problems)} problems)",
            details=report.problems,
        )
    print(f"copied {report.sessions} sessions ({report.versions} versions, {report.secrets} "
          f"secrets; {report.skipped} versions were there already) to {where}")
    print("verified: every version, its secrets and the CAS CA are identical")
    return 0
