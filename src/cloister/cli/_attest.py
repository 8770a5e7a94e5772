"""``cloister attest verify FILE --type TYPE``: check evidence by hand with the CAS's verifier."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloister import errors

#: evidence files larger than this are refused (a quote with its chain is a few KiB)
MAX_FILE_BYTES = 1024 * 1024


def register(subparsers: Any) -> None:
    attest = subparsers.add_parser(
        "attest", help="check attestation evidence by hand",
        description="Tools for attestation evidence.")
    sub = attest.add_subparsers(dest="attest_command", metavar="COMMAND", required=True)
    verify = sub.add_parser(
        "verify", help="verify evidence and print its claims as JSON",
        description="Verify FILE as evidence of TYPE with the CAS's own verifier: print the "
        "verified claims as JSON and exit 0, or print every reason and exit 3. FILE is a "
        "cloister evidence envelope or the vendor's raw form (an SNP report, a TDX quote, "
        "Azure's HCL report or evidence JSON).")
    verify.add_argument("file", type=Path, metavar="FILE", help="the evidence")
    verify.add_argument("--type", required=True, dest="evidence_type", metavar="TYPE",
                        help="evidence type: simulation, tpm, sev-snp, tdx, az-snp-vtpm")
    verify.add_argument("--collateral", type=Path, default=None, metavar="DIR",
                        help="certificates (VCEK, VLEK), TDX TCB info, QE identity and CRLs; "
                        "DIR/trusted-roots/<type>/ adds trusted roots")
    verify.add_argument("--at", default=None, metavar="TIME",
                        help="verify as of this ISO 8601 time (default: now), e.g. "
                        "2025-06-01T00:00:00Z")
    verify.set_defaults(func=_verify)


def _time(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.ConfigError(f"--at {text!r} is not an ISO 8601 time",
                                 details=["write e.g. 2025-06-01T00:00:00Z"]) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _verify(args: argparse.Namespace) -> int:
    from cloister.attest import _registry, load_collateral  # noqa: PLC0415 — keep start fast

    types = _registry.evidence_types()
    plugin = types.get(args.evidence_type)
    if plugin is None:
        raise errors.ConfigError(f"unknown evidence type {args.evidence_type!r}",
                                 details=[f"known: {', '.join(types)}"])
    try:
        size = args.file.stat().st_size
        if size > MAX_FILE_BYTES:
            raise errors.ConfigError(f"{args.file} is {size} bytes, over {MAX_FILE_BYTES}")
        evidence = args.file.read_bytes()
    except OSError as exc:
        raise errors.ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
    result = plugin.verifier.verify(evidence, expected_report_data=b"", now=_time(args.at),
                                    collateral=load_collateral(args.collateral))
    if isinstance(result, list):
        count = len(result)
        raise errors.AttestationError(
            f"{args.file} is not valid {plugin.name} evidence "
            f"({count} reason{'s' if count != 1 else ''})", details=result)
    print(json.dumps(result.to_json(), indent=2, sort_keys=True))
    return 0
