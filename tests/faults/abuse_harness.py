"""Attack tools for the CAS abuse tests: HTTPS clients from chosen loopback addresses,
slow (slowloris) connections, and the CPU a process tree uses.

Every attacker binds its own loopback source address (127.0.0.2 …) so that it is a
different *client* from the legitimate one (127.0.0.1), as on a real network; all
traffic stays on this machine.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def tls_context(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    return ctx


def https(port: int, ctx: ssl.SSLContext, source: str = "127.0.0.1",
          timeout: float = 30) -> http.client.HTTPSConnection:
    """A keep-alive HTTPS connection to the CAS from ``source``."""
    return http.client.HTTPSConnection("localhost", port, context=ctx, timeout=timeout,
                                       source_address=(source, 0))


def tls_socket(port: int, ctx: ssl.SSLContext, source: str, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                   source_address=(source, 0))
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def _tree(pid: int) -> tuple[dict[int, list[str]], list[int]]:
    """``/proc/N/stat`` fields of every process, and ``pid`` with its live descendants."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with suppress(OSError):
            text = Path(f"/proc/{entry}/stat").read_text()
            fields = text[text.rindex(")") + 2:].split()
            stats[int(entry)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            tree.append(current)
        todo += children.get(current, [])
    return stats, tree


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its live descendants."""
    stats, tree = _tree(pid)
    return sum(int(stats[p][11]) + int(stats[p][12]) for p in tree) / _TICK


def descendants(pid: int) -> int:
    """How many live descendants ``pid`` has."""
    return len(_tree(pid)[1]) - 1


@dataclass
class Slowloris:
    """``per_source`` connections from each of ``sources``, each sending a request head
    one byte every ``interval`` seconds and reconnecting whenever the CAS drops it."""

    port: int
    ctx: ssl.SSLContext
    sources: tuple[str, ...]
    per_source: int
    interval: float = 1.0
    stop: threading.Event = field(default_factory=threading.Event)
    lifetimes: list[float] = field(default_factory=list)
    handshakes: int = 0
    _threads: list[threading.Thread] = field(default_factory=list)

    def _one(self, source: str) -> None:
        head = b"POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4096
        while not self.stop.is_set():
            try:
                sock = tls_socket(self.port, self.ctx, source)
            except OSError:
                self.stop.wait(0.2)
                continue
            self.handshakes += 1
            opened = time.monotonic()
            try:
                for byte in head:
                    sock.send(bytes([byte]))
                    if self.stop.wait(self.interval):
                        break
            except OSError:
                self.lifetimes.append(time.monotonic() - opened)
            finally:
                sock.close()

    def __enter__(self) -> Slowloris:
        for source in self.sources:
            for _ in range(self.per_source):
                thread = threading.Thread(target=self._one, args=(source,), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


@contextmanager
def threads(count: int, target: object, *args: object) -> Iterator[list[threading.Thread]]:
    started = [threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
               for _ in range(count)]
    for thread in started:
        thread.start()
    try:
        yield started
    finally:
        for thread in started:
            thread.join(timeout=600)
