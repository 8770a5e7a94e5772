"""The one table of HTTP statuses: which error class a CAS answers with which status.

The server maps an error to its status with :func:`status_for`; a client maps
an error answer back to the server's class with :func:`error_class` — by the
answer's ``code`` (every class here has its own), else by the status alone.
Light on purpose (no server, no policy model): ``cloister run`` imports it.
"""

from __future__ import annotations

from cloister import errors

#: most specific class first: the first ``isinstance`` match wins; for a status
#: alone the first class with that status is the client's guess, so the generic
#: class of a status comes before the others that share it
HTTP_STATUS: tuple[tuple[type[errors.Error], int], ...] = (
    (errors.MethodNotAllowed, 405),
    (errors.RequestError, 400),
    (errors.TemplateError, 400),
    # before PolicyError, its parent; SecretError first so that 422 alone reads as it
    (errors.SecretError, 422),
    (errors.UnservedFeature, 422),
    (errors.BadShare, 400),
    (errors.PolicyError, 400),
    (errors.EvidenceError, 400),
    (errors.AuthenticationError, 401),
    (errors.AccessDenied, 403),
    (errors.NotPublic, 403),
    (errors.AttestationError, 403),
    (errors.QuotaExceeded, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.RateLimited, 429),
    (errors.Overloaded, 503),
    (errors.Sealed, 503),
    (errors.StoreFull, 507),
    (errors.StoreError, 503),
)
#: any other error (a bug in the CAS)
DEFAULT_STATUS = 500

_BY_CODE: dict[str, type[errors.Error]] = {cls.code: cls for cls, _ in HTTP_STATUS}
_BY_STATUS: dict[int, type[errors.Error]] = {}
for _cls, _status in HTTP_STATUS:
    _BY_STATUS.setdefault(_status, _cls)


def status_for(err: errors.Error) -> int:
    """The HTTP status the CAS answers ``err`` with."""
    for cls, status in HTTP_STATUS:
        if isinstance(err, cls):
            return status
    return DEFAULT_STATUS


def error_class(code: str | None, status: int) -> type[errors.Error]:
    """The server's class for an error answer: by ``code``, else by ``status``.

    An answer that matches neither (a 500, a status the CAS never sends) is
    a plain :class:`~cloister.errors.Error`: the CAS failed, not the caller.
    """
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    return _BY_STATUS.get(status, errors.Error)
