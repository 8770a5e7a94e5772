"""Exit codes of the ``cloister`` command: the one place errors map to them.

:data:`MEANINGS` is what ``cloister --help`` and the README list.
"""

from __future__ import annotations

from cloister import errors

#: most specific class first; the first ``isinstance`` match wins
EXIT_CODES: tuple[tuple[type[errors.Error], int], ...] = (
    (errors.PolicyError, 2),
    (errors.RequestError, 2),
    (errors.ConfigError, 2),
    (errors.EvidenceError, 5),  # the LAS could not quote, or sent what no verifier reads
    (errors.AttestationError, 3),
    (errors.IntegrityError, 4),
    (errors.TransportError, 5),
    (errors.AuthenticationError, 5),
    (errors.AccessDenied, 5),
    (errors.NotFound, 5),
    (errors.NotPublic, 5),
    (errors.Conflict, 5),
    (errors.PayloadTooLarge, 5),
    (errors.Overloaded, 5),
    (errors.QuotaExceeded, 5),
    (errors.Sealed, 5),
    (errors.BadShare, 2),
    (errors.LaunchError, 6),
    (errors.SecretError, 7),
    (errors.StoreError, 8),
)

#: any other error: a bug (the CAS answered 500, or an unexpected exception)
DEFAULT_EXIT = 1
#: argparse usage errors (argparse itself exits with 2 as well)
USAGE_EXIT = 2
#: Ctrl-C
INTERRUPTED_EXIT = 130

#: every exit status and what it means
MEANINGS: tuple[tuple[int, str], ...] = (
    (0, "success (cloister run: the program's own exit status once it started)"),
    (DEFAULT_EXIT, "unexpected failure: a bug (rerun with --verbose and report it)"),
    (2, "invalid input: usage, a policy, a configuration or a local file"),
    (3, "attestation refused: the CAS named every reason"),
    (4, "integrity failure: a protected file or manifest was changed"),
    (5, "the CAS or LAS refused (access, not found, conflict, busy), or could not be "
        "reached or trusted (network, TLS, timeout)"),
    (6, "launch failed: the configuration could not be installed or the program started"),
    (7, "a secret cannot be generated, imported or rendered"),
    (8, "the CAS store failed (I/O, corruption, full)"),
    (INTERRUPTED_EXIT, "interrupted (Ctrl-C)"),
)


def exit_code_for(err: errors.Error) -> int:
    """Exit status for ``err``."""
    for cls, code in EXIT_CODES:
        if isinstance(err, cls):
            return code
    return DEFAULT_EXIT


def epilog() -> str:
    """The exit-status table for ``cloister --help``."""
    rows = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in MEANINGS)
    return f"exit status:\n{rows}"
