"""The one parser of ``HOST[:PORT]`` addresses (CAS, LAS, listen addresses).

Accepted: ``host``, ``host:port``, ``[v6]``, ``[v6]:port``, a bare IPv6
address (``::1``, its port the default), optionally as a URL
(``https://host:port/``).  Host names are checked against a conservative
character set, so an address can never smuggle URL or header syntax.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cloister import errors

_HOST_RE = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(
    value: str,
    *,
    default_port: int | None,
    what: str,
    example: str,
    empty_host: str | None = None,
    listen: bool = False,
) -> HostPort:
    """``value`` as a host and port; :class:`~cloister.errors.ConfigError` naming ``what``.

    ``default_port=None`` makes the port required; ``empty_host`` stands in
    for an omitted host (``:8081``), which is refused otherwise; ``listen``
    admits port 0 (any free port).
    """
    text = value.strip()
    for prefix in ("https://", "http://"):
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
    text = text.rstrip("/")
    host, port_text, valid = text, None, True
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        valid = bool(bracket) and (not rest or rest.startswith(":"))
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    if not host and empty_host is not None:
        host = empty_host
    port = default_port if port_text is None else (
        int(port_text) if port_text.isdigit() else -1)
    lowest = 0 if listen else 1
    if not (valid and host and _HOST_RE.fullmatch(host) and port is not None
            and lowest <= port <= 65535):
        form = ("HOST:PORT" if default_port is None
                else f"HOST or HOST:PORT (default port {default_port})")
        raise errors.ConfigError(f"invalid {what} {value!r}",
                                 details=[f"write {form}, e.g. {example}"])
    return HostPort(host, port)
