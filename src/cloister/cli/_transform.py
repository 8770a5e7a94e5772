"""``cloister transform SRC_DIR --entry SCRIPT``: make a Python app confidential (a bundle)."""

from __future__ import annotations

import argparse
from typing import Any

from cloister import errors
from cloister.cli._cas_client import add_cas_options, client_from_args
from cloister.cli._output import emit, notice


def _pairs(items: list[str], option: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise errors.ConfigError(f"{option} {item!r}: write {option} NAME=VALUE")
        result[key] = value
    return result


def _transform(args: argparse.Namespace) -> int:
    from cloister import transform as tf  # noqa: PLC0415 — keep CLI start fast

    bundle = tf.transform(
        args.src_dir, args.entry, name=args.name, out=args.out,
        injections=[tf.parse_injection(i) for i in args.inject],
        environment=_pairs(args.env, "--env"), app_path=args.app_path,
        measurement=args.measurement, image=args.image, port=args.port, dns=args.dns,
    )
    session_hash = None
    if args.cas is not None:
        session_hash = tf.create_session(bundle, client_from_args(args))
    notice(f"the fspf key is only in {bundle.policy_path} (mode 0600): send it to the CAS "
           "(cloister session create), keep it out of images and version control")
    lines = [f"bundle: {bundle.out}", *(f"  {rel}" for rel in bundle.files),
             f"config id: {bundle.config_id}  (CLOISTER_CONFIG_ID)",
             f"measurement: {bundle.measurement}", f"fspf_tag: {bundle.fspf_tag}"]
    if session_hash is not None:
        lines.append(f"session {bundle.name} created on {args.cas}: {session_hash}")
    emit(args, {"bundle": str(bundle.out), "files": [str(f) for f in bundle.files],
                "config_id": bundle.config_id, "measurement": bundle.measurement,
                "fspf_tag": bundle.fspf_tag, "policy": str(bundle.policy_path),
                "session_hash": session_hash}, lines)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "transform",
        help="turn a Python app directory into a confidential bundle",
        description="Seal SRC_DIR (with requirements.txt or pyproject.toml) and write a bundle: "
        "sealed code, a session policy (measurement, fspf key/tag, environment, injected "
        "files), a Dockerfile FROM the runtime image, a compose service and Helm values. "
        "With --cas, also create the session on that CAS.",
    )
    p.add_argument("src_dir", metavar="SRC_DIR", help="the application directory")
    p.add_argument("--entry", required=True, metavar="SCRIPT",
                   help="the program to run, relative to SRC_DIR (e.g. app.py)")
    p.add_argument("--name", default=None, help="session, service and image name "
                   "(default: the directory's name)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="bundle directory, new or empty (default ./NAME-confidential)")
    p.add_argument("--inject", action="append", default=[], metavar="PATH=SECRET_REF",
                   help="a file the program reads, from a generated secret: NAME (random "
                   "text) or NAME:crt|privatekey|chain (a TLS certificate); repeatable")
    p.add_argument("--env", action="append", default=[], metavar="VAR=VALUE",
                   help="environment of the program, set by the policy (repeatable; not -e, "
                   "which means a template value in cloister session)")
    p.add_argument("--app-path", default="/fspf/encrypted-files", metavar="PATH",
                   help="where the sealed tree is at run time (default /fspf/encrypted-files, "
                   "the image path; give BUNDLE/app to run it in place)")
    p.add_argument("--measurement", default=None, metavar="HEX",
                   help="measurement for the policy (default: `cloister measure` here; for "
                   "an image run `cloister measure` inside the runtime image)")
    p.add_argument("--image", default=None,
                   help="image name for compose/Helm (default NAME:latest)")
    p.add_argument("--port", type=int, default=4996, help="the port the app listens on")
    p.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="DNS name in generated certificates (default: NAME and localhost)")
    add_cas_options(p)
    p.set_defaults(func=_transform)
