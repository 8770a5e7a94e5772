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
        help="the master key of the source (default DIR/master.key); the target is sealed "
        "under the same key, so start the replicas with it",
    )
    p.set_defaults(func=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from cloister.cas._copy import copy_store, source_ca  # noqa: PLC0415
    from cloister.cas._keys import Sealer, load_or_create_master_key  # noqa: PLC0415
    from cloister.cas._postgres import describe_url  # noqa: PLC0415
    from cloister.cas._sqlite import DB_FILE  # noqa: PLC0415
    from cloister.cas._stores import is_shared, open_store_url  # noqa: PLC0415
    from cloister.cli._cas import store_url  # noqa: PLC0415

    state: Path = args.source.expanduser()
    if not (state / DB_FILE).is_file():
        raise errors.ConfigError(f"{state} holds no CAS store ({DB_FILE})",
                                 details=["give the --state directory of the CAS to copy"])
    target_url = store_url(args)
    if target_url in ("sqlite", f"sqlite://{(state / DB_FILE).resolve()}"):
        raise errors.ConfigError("--to names the source store itself")
    key = load_or_create_master_key(args.master_key_file or state / "master.key", create=False)
    source = open_store_url("sqlite", state, Sealer(key))
    try:
        target = open_store_url(target_url, state, Sealer(key))
        try:
            report = copy_store(source, target, source_ca(state))
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
