"""configfs-tsm: the Linux interface through which a confidential guest asks its CPU for a report.

``/sys/kernel/config/tsm/report`` (Linux 6.7+; the path is a parameter, so
tests serve a fake tree): a quoter makes a directory there, writes up to 64
bytes of report data to ``inblob`` and reads the signed report from
``outblob`` (an SNP report or a TDX quote) and, for SNP, the certificate
table from ``auxblob``; ``provider`` names the backend (``sev_guest``,
``tdx_guest``) and ``generation`` counts writes, so a report read after
someone else's write is detected and asked for again.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from cloister import errors

DEFAULT_TSM_REPORT = Path("/sys/kernel/config/tsm/report")
#: how long a report may take (the CPU or host answers in well under a second)
REPORT_TIMEOUT = 10.0
_RETRIES = 3
_counter = itertools.count()
log = logging.getLogger("cloister.attest.tsm")


@dataclass(frozen=True)
class TsmReport:
    provider: str
    outblob: bytes
    auxblob: bytes | None


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _wait(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise errors.EvidenceError(f"configfs-tsm did not answer in time ({what})",
                                       details=["is this a confidential guest with a TSM "
                                                "provider (sev_guest, tdx_guest) loaded?"])
        time.sleep(0.01)


def _changed(path: Path, before: int) -> bool:
    return int(_read(path) or b"0") != before


def request(root: Path, report_data: bytes, *, provider: str,
            privlevel: int | None = None, timeout: float = REPORT_TIMEOUT) -> TsmReport:
    """A report over ``report_data`` (64 bytes) from the configfs-tsm tree at ``root``."""
    if not root.is_dir():
        raise errors.ConfigError(f"configfs-tsm report directory {root} does not exist",
                                 details=["mount configfs (mount -t configfs none "
                                          "/sys/kernel/config) on Linux 6.7 or later"])
    entry = root / f"cloister-{os.getpid()}-{next(_counter)}"
    entry.mkdir(mode=0o700)
    try:
        deadline = time.monotonic() + timeout
        _wait((entry / "generation").exists, deadline, "no generation file")
        found = _read(entry / "provider").decode().strip()
        if found != provider:
            raise errors.ConfigError(f"configfs-tsm provider is {found!r}, not {provider!r}",
                                     details=["start the LAS with the evidence type of this "
                                              "machine's CPU"])
        if privlevel is not None:
            (entry / "privlevel").write_text(str(privlevel))
        for _ in range(_RETRIES):
            before = int(_read(entry / "generation") or b"0")
            (entry / "inblob").write_bytes(report_data)
            _wait(partial(_changed, entry / "generation", before), deadline,
                  "generation unchanged")
            written = int(_read(entry / "generation"))
            out = _read(entry / "outblob")
            aux = _read(entry / "auxblob") if (entry / "auxblob").exists() else None
            if int(_read(entry / "generation")) == written == before + 1 and out:
                return TsmReport(found, out, aux or None)
        raise errors.EvidenceError("configfs-tsm report kept changing while being read; retry")
    finally:
        try:
            entry.rmdir()
        except OSError as exc:  # only a fake tree keeps its files: configfs removes them
            log.debug("could not remove %s: %s", entry, exc)
