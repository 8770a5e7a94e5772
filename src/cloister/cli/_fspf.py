"""``cloister fspf create|addr|addf|encrypt|show`` (SCONE's flow) and ``cloister seal``.

Thin: every step is a call into :mod:`cloister.fspf`.  The key/tag line of
``fspf encrypt`` keeps SCONE's field order (awk ``$9`` = tag, ``$11`` = key).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cloister import fspf
from cloister.cli._output import emit, notice

#: show a counter on stderr when a tree has at least this many files
_PROGRESS_FROM = 200


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("fspf", help="build and inspect file-system protection files")
    sub = group.add_subparsers(dest="fspf_command", metavar="STEP", required=True)

    p = sub.add_parser("create", help="create an empty protection file")
    p.add_argument("file")
    p.set_defaults(func=_create)

    p = sub.add_parser("addr", help="add a region (path prefix) and its protection")
    p.add_argument("file")
    p.add_argument("region", help="path prefix, e.g. / or /fspf/encrypted-files/")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--kernel", metavar="DIR", help="host directory holding the region's files")
    where.add_argument("--ephemeral", action="store_true", help="in memory, lost on exit")
    how = p.add_mutually_exclusive_group(required=True)
    for name in fspf_protections():
        how.add_argument(f"--{name}", dest="protection", action="store_const", const=name)
    p.add_argument("-k", "--key-length", type=int, default=32, choices=(16, 24, 32))
    p.add_argument("-c", "--chunk-length", type=int, default=64 * 1024)
    p.set_defaults(func=_addr)

    p = sub.add_parser("addf", help="add the files of SRC_DIR to a region")
    p.add_argument("file")
    p.add_argument("region")
    p.add_argument("src_dir")
    p.add_argument("out_dir", nargs="?", help="where ciphertext goes (encrypted regions)")
    p.set_defaults(func=_addf)

    p = sub.add_parser("encrypt", help="encrypt the protection file; prints its tag and key")
    p.add_argument("file")
    p.set_defaults(func=_encrypt)

    p = sub.add_parser("show", help="show regions and files, or only the tag")
    p.add_argument("--tag", action="store_true", help="print only the tag")
    p.add_argument("file")
    p.add_argument("key", nargs="?", help="64 hex digits, to show an encrypted file's content")
    p.set_defaults(func=_show)

    p = subparsers.add_parser("seal", help="encrypt a source tree in one step")
    p.add_argument("src", help="directory to seal")
    p.add_argument("--out", required=True, metavar="DIR", help="empty or new output directory")
    p.add_argument(
        "--authenticate",
        nargs="+",
        default=[],
        metavar="DIR",
        help="subdirectories of SRC to protect for integrity only (stay plaintext)",
    )
    p.set_defaults(func=_seal)


def fspf_protections() -> tuple[str, ...]:
    return ("not-protected", "authenticated", "encrypted")


def _progress(done: int, total: int) -> None:
    if total >= _PROGRESS_FROM and (done % 50 == 0 or done == total):
        end = "\n" if done == total else ""
        print(f"\rsealing: {done}/{total} files", end=end, file=sys.stderr, flush=True)


def _create(args: argparse.Namespace) -> int:
    tag = fspf.create(args.file)
    print(f"Created empty file system protection file in {args.file}. AES-GCM tag: {tag}")
    return 0


def _addr(args: argparse.Namespace) -> int:
    fspf.add_region(
        args.file,
        args.region,
        args.protection,
        kernel=args.kernel,
        ephemeral=args.ephemeral,
        key_bytes=args.key_length,
        chunk=args.chunk_length,
    )
    print(f"Added region {args.region} to file system protection file {args.file}")
    return 0


def _addf(args: argparse.Namespace) -> int:
    count, tag = fspf.add_files(
        args.file, args.region, args.src_dir, args.out_dir, progress=_progress
    )
    print(f"Added {count} files to region {args.region} of {args.file}. AES-GCM tag: {tag}")
    return 0


def _encrypt(args: argparse.Namespace) -> int:
    key, tag = fspf.encrypt(args.file)
    emit(args, {"file": args.file, "fspf_tag": tag, "fspf_key": key},
         f"Encrypted file system protection file {args.file} AES-GCM tag: {tag} key: {key}")
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.tag:
        tag = fspf.tag(args.file)
        emit(args, {"file": args.file, "fspf_tag": tag}, tag)
        return 0
    for line in fspf.describe(args.file, args.key):
        print(line)
    return 0


def _seal(args: argparse.Namespace) -> int:
    result = fspf.seal(args.src, args.out, authenticate=args.authenticate, progress=_progress)
    # prose on stderr: stdout is exactly the three lines scripts read (or one JSON object)
    notice(f"sealed {result.files} files of {args.src} into {args.out}")
    notice("put these three lines into the service of your policy:")
    emit(args, {"fspf_path": result.fspf_path, "fspf_key": result.key_hex,
                "fspf_tag": result.tag_hex, "files": result.files},
         [f"fspf_path: {result.fspf_path}", f"fspf_key: {result.key_hex}",
          f"fspf_tag: {result.tag_hex}"])
    return 0
