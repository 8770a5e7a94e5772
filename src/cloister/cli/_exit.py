"""Exit codes of the ``cloister`` command: the one place errors map to them."""

from __future__ import annotations

from cloister import errors

#: most specific class first; the first ``isinstance`` match wins
EXIT_CODES: tuple[tuple[type[errors.Error], int], ...] = (
    (errors.PolicyError, 2),
    (errors.RequestError, 2),
    (errors.ConfigError, 2),
    (errors.EvidenceError, 5),  # the LAS failed or is unreachable: not a refusal
    (errors.AttestationError, 3),
    (errors.IntegrityError, 4),
    (errors.CASClientError, 5),
    (errors.AccessDenied, 5),
    (errors.NotFound, 5),
    (errors.NotPublic, 5),
    (errors.Conflict, 5),
    (errors.LaunchError, 6),
    (errors.SecretError, 7),
    (errors.StoreError, 8),
    (errors.Overloaded, 5),
)

#: any other cloister error
DEFAULT_EXIT = 1
#: argparse usage errors (argparse itself exits with 2 as well)
USAGE_EXIT = 2


def exit_code_for(err: errors.Error) -> int:
    """Exit status for ``err``."""
    for cls, code in EXIT_CODES:
        if isinstance(err, cls):
            return code
    return DEFAULT_EXIT
