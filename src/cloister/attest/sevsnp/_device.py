"""``/dev/sev-guest``: the SNP guest driver's report ioctl (kernels before configfs-tsm).

``SNP_GET_REPORT`` = ``_IOWR('S', 0, struct snp_guest_request_ioctl)``: a
96-byte request (64 bytes of report data, the VMPL) and a 4000-byte
response whose message holds status, report size and the report.  No
certificate table comes this way: put the VCEK in the CAS's collateral.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct
from pathlib import Path

from cloister import errors

DEFAULT_DEVICE = Path("/dev/sev-guest")
SNP_GET_REPORT = 0xC0205300
_RESPONSE_SIZE = 4000
_REPORT_SIZE = 0x4A0


def pack_request(report_data: bytes, vmpl: int) -> bytes:
    """``struct snp_report_req``: user data (64), VMPL (u32), 28 reserved bytes."""
    return report_data.ljust(64, b"\0")[:64] + struct.pack("<I", vmpl) + bytes(28)


def unpack_response(data: bytes) -> bytes:
    """The report from ``struct snp_report_resp`` (status, size, 24 reserved, report)."""
    status, size = struct.unpack_from("<II", data, 0)
    if status != 0 or size < _REPORT_SIZE or 32 + size > len(data):
        raise errors.EvidenceError(f"/dev/sev-guest answered status {status:#x}, "
                                   f"report size {size}")
    return bytes(data[32:32 + size])


def request(device: Path, report_data: bytes, vmpl: int = 0) -> bytes:
    """An SNP report over ``report_data`` from the guest driver at ``device``."""
    req = ctypes.create_string_buffer(pack_request(report_data, vmpl))
    resp = ctypes.create_string_buffer(_RESPONSE_SIZE)
    ioctl = bytearray(struct.pack("<B7xQQQ", 1, ctypes.addressof(req), ctypes.addressof(resp), 0))
    try:
        fd = os.open(device, os.O_RDWR)
    except OSError as exc:
        raise errors.ConfigError(f"cannot open {device}: {exc.strerror}",
                                 details=["run on an SEV-SNP guest (module sev-guest), or use "
                                          "configfs-tsm"]) from None
    try:
        fcntl.ioctl(fd, SNP_GET_REPORT, ioctl)
    except OSError as exc:
        exitinfo = struct.unpack_from("<Q", ioctl, 24)[0]
        raise errors.EvidenceError(f"SNP_GET_REPORT failed: {exc.strerror} "
                                   f"(exitinfo2 {exitinfo:#x})") from None
    finally:
        os.close(fd)
    return unpack_response(resp.raw)
