"""What `cloister run` imports before the program starts is the service's start-up time:
no X.509 parser, no evidence plug-in, no lease keeper or native launcher it does not use."""

from __future__ import annotations

import json
import subprocess
import sys

NOT_BEFORE_THE_PROGRAM = ("cryptography.x509", "cryptography.hazmat.primitives.serialization",
                          "cloister.attest._plugin", "cloister.attest.simulation",
                          "cloister.attest.tpm", "cloister.attest._caller",
                          "cloister.runtime._lease", "cloister.runtime._native",
                          "cloister.cas", "cloister.policy", "yaml")


def test_the_runtime_imports_only_what_every_launch_uses() -> None:
    code = ("import json, sys\nfrom cloister.cli import _main\n"
            "_main.build_parser(['run']).parse_args(['run'])\nfrom cloister import runtime\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                          check=True)
    loaded = json.loads(done.stdout)
    heavy = [m for m in loaded if m.startswith(NOT_BEFORE_THE_PROGRAM)]
    assert heavy == []
    # and what it does use is there: attestation, the sealed configuration, the file shield
    assert {"cloister.attest._las_client", "cloister.attest._seal",
            "cloister.runtime._attest", "cloister.fspf"} <= set(loaded)
