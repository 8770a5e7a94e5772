"""``cloister run``: attest, receive the configuration, install it in memory, launch.

Python programs (the policy's command starts with a Python interpreter) run
in this very process — the process whose interpreter and runtime were
measured.  Native programs are measured by their executable and exec'd after
their injected files are written to a memory-backed filesystem.  On any
refusal nothing of the program runs.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from cloister import errors
from cloister._address import parse_host_port
from cloister._python import is_python_name
from cloister.runtime._attest import Timings, fetch_config
from cloister.runtime._config import LaunchConfig
from cloister.runtime._isolation import set_dumpable
from cloister.runtime._python import open_tree, run_python
from cloister.runtime._rundir import remove_stale
from cloister.runtime._settings import DEFAULT_CAS_PORT, RunSettings
from cloister.runtime._volumes import mount_volumes

# imported where they are needed, not here (the service's start-up time): the lease
# keeper (threads, a helper process) only for a service with a singleton lease, the
# native launcher only for a native program
if TYPE_CHECKING:
    from cloister.runtime._lease import Lease

__all__ = ["LaunchConfig", "RunSettings", "Timings", "attest_and_fetch", "run"]

_log = logging.getLogger(__name__)


def is_python_command(program: str) -> bool:
    """True when ``program`` names a Python interpreter (:mod:`cloister._python`'s rule)."""
    return is_python_name(program)


def attest_and_fetch(
    settings: RunSettings, command: Sequence[str], host_env: Mapping[str, str]
) -> tuple[LaunchConfig, str | None, Timings]:
    """Attest for what ``command`` starts (the LAS measures it), return the configuration.

    Returns the configuration (host ``@@`` values applied), the native
    executable's resolved path (None for Python), and the step timings.
    """
    program = command[0] if command else None
    native = None
    if program is not None and not is_python_command(program):
        native = _resolve(program)
    config, timings = fetch_config(settings, native)
    config = config.with_host_values(command[1:], host_env)
    _check_kind(config, native)
    return config, native, timings


def _resolve(program: str) -> str:
    from cloister.runtime._native import resolve  # noqa: PLC0415 - native programs only

    return resolve(program)


def _check_kind(config: LaunchConfig, native: str | None) -> None:
    if not config.command:
        raise errors.LaunchError(
            f"service {config.session}/{config.service} has no command: add 'command' to it "
            "in the session"
        )
    policy_program = config.command[0]
    if native is None and not is_python_command(policy_program):
        raise errors.LaunchError(
            f"service {config.session}/{config.service} runs {policy_program!r}, but cloister "
            f"run was started for Python: start it as 'cloister run -- {policy_program}'"
        )
    if native is not None and _resolve(policy_program) != native:
        raise errors.LaunchError(
            f"service {config.session}/{config.service} runs {policy_program!r}, not the "
            f"measured {native}: start cloister run with the policy's program"
        )


def run(command: Sequence[str], settings: RunSettings | None = None) -> int:
    """Attest and launch; returns the Python program's exit status (native: never returns)."""
    settings = settings or RunSettings.from_env()
    # a core file would put the released secrets on disk; the limit holds across exec
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # no ptrace, no /proc/PID/mem for this user's other processes, before the CAS is asked
    set_dumpable(False)
    remove_stale()  # injected files a kill -9 of an earlier run left on /dev/shm
    host_env = dict(os.environ)
    config, native, timings = attest_and_fetch(settings, command, host_env)
    _log.debug(
        "attested %s/%s: nonce %.1f ms, quote %.1f ms, decision %.1f ms",
        config.session,
        config.service,
        timings.nonce * 1e3,
        timings.quote * 1e3,
        timings.decision * 1e3,
    )
    lease = _lease(settings, config)
    if native is not None:
        if config.fspf is not None:
            raise errors.LaunchError(
                f"service {config.session}/{config.service} names protected files "
                f"({config.fspf.path}), which only Python programs can use: remove fspf_* "
                "from a native service"
            )
        mount_volumes(config.volumes)
        if lease is not None:
            from cloister.runtime._lease import keep_in_helper  # noqa: PLC0415

            keep_in_helper(lease)
        from cloister.runtime._native import exec_native  # noqa: PLC0415

        exec_native(config, native)
    tree = open_tree(config)  # verified against the released tag before anything runs
    mount_volumes(config.volumes)
    release = None
    if lease is not None:
        from cloister.runtime._lease import keep_in_thread  # noqa: PLC0415

        release = keep_in_thread(lease)
    try:
        return run_python(config, tree)
    finally:
        if release is not None:
            release()  # an exit gives the lease back; a crash leaves it to expire


def _lease(settings: RunSettings, config: LaunchConfig) -> Lease | None:
    if config.lease is None:
        return None
    from cloister.runtime._lease import Lease  # noqa: PLC0415

    where = parse_host_port(settings.cas_addr, default_port=DEFAULT_CAS_PORT,
                            what="CAS address", example="CLOISTER_CAS_ADDR=cas:8081")
    lease_id, ttl = config.lease
    return Lease(where.host, where.port, settings.cas_cert_pem,
                               settings.config_id.partition("@")[0], lease_id, ttl)
