"""How ``cloister run`` finds its CAS, LAS and configuration id (environment variables).

The cloister names win over SCONE's (``CLOISTER_CAS_ADDR`` over
``SCONE_CAS_ADDR`` …), so a SCONE deployment's environment works unchanged.
Read once, when the command starts — never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cloister import errors

DEFAULT_CAS = "cas"
DEFAULT_CAS_PORT = 8081
DEFAULT_LAS = "/run/cloister/las.sock"
#: how long to keep retrying an unreachable CAS or LAS before giving up
DEFAULT_RETRY_SECONDS = 30.0


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


@dataclass(frozen=True)
class RunSettings:
    cas_addr: str
    las_addr: str
    config_id: str
    cas_cert_pem: str
    fspf_path: str | None = None
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    #: SCONE's second factor: sent with the attestation, never logged
    service_access_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RunSettings:
        env = os.environ if env is None else env
        config_id = _first(env, "CLOISTER_CONFIG_ID", "SCONE_CONFIG_ID")
        if config_id is None:
            raise errors.ConfigError(
                "no configuration id: set CLOISTER_CONFIG_ID=session/service (or SCONE_CONFIG_ID)"
            )
        session, slash, service = config_id.partition("@")[0].rpartition("/")
        if not slash or not session or not service:
            raise errors.ConfigError(
                f"configuration id {config_id!r} is not SESSION/SERVICE: set "
                "CLOISTER_CONFIG_ID=session/service"
            )
        cert_file = env.get("CLOISTER_CAS_CERT")
        if not cert_file:
            raise errors.ConfigError(
                "no pinned CAS certificate: set CLOISTER_CAS_CERT to the PEM file printed by "
                "'cloister cas show-certificate'"
            )
        try:
            cert_pem = Path(cert_file).read_text()
        except OSError as err:
            raise errors.ConfigError(
                f"cannot read the pinned CAS certificate {cert_file} (CLOISTER_CAS_CERT): "
                f"{err.strerror}"
            ) from None
        except UnicodeDecodeError:
            raise errors.ConfigError(
                f"{cert_file} (CLOISTER_CAS_CERT) is not a PEM text file"
            ) from None
        if "-----BEGIN CERTIFICATE-----" not in cert_pem:
            raise errors.ConfigError(f"{cert_file} holds no PEM certificate (CLOISTER_CAS_CERT)")
        retry = env.get("CLOISTER_RETRY_SECONDS")
        try:
            retry_seconds = float(retry) if retry else DEFAULT_RETRY_SECONDS
        except ValueError:
            retry_seconds = -1.0
        if not 0 <= retry_seconds <= 3600:  # also refuses nan and inf
            raise errors.ConfigError(
                f"CLOISTER_RETRY_SECONDS={retry!r} is not a number of seconds from 0 to 3600"
            )
        return cls(
            cas_addr=_first(env, "CLOISTER_CAS_ADDR", "SCONE_CAS_ADDR") or DEFAULT_CAS,
            las_addr=_first(env, "CLOISTER_LAS_ADDR", "SCONE_LAS_ADDR") or DEFAULT_LAS,
            config_id=config_id,
            cas_cert_pem=cert_pem,
            fspf_path=env.get("CLOISTER_FSPF_PATH") or None,
            retry_seconds=max(0.0, retry_seconds),
            service_access_token=_first(
                env, "CLOISTER_SERVICE_ACCESS_TOKEN", "SCONE_SERVICE_ACCESS_TOKEN"
            ),
        )
