"""Prometheus metrics of the CAS, rendered in the text exposition format.

Routes are labelled by their *pattern* (``/v1/sessions/{name}``), never by
the concrete path, so label cardinality stays bounded and no session name
leaks into metrics.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(**labels: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in labels.items()
    )
    return "{" + inner + "}"


class Metrics:
    """Thread-safe counters and a latency histogram."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._latency: dict[str, list[int]] = {}
        self._latency_sum: dict[str, float] = defaultdict(float)
        self._latency_count: dict[str, int] = defaultdict(int)
        self._attestations: dict[str, int] = defaultdict(int)
        self._gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[(route, method, str(status))] += 1
            buckets = self._latency.setdefault(route, [0] * len(BUCKETS))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    buckets[i] += 1
            self._latency_sum[route] += seconds
            self._latency_count[route] += 1

    def count_attestation(self, result: str) -> None:
        """Count one attestation decision (``result`` e.g. ``allow`` / ``deny``)."""
        with self._lock:
            self._attestations[result] += 1

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """Register a gauge read at scrape time (e.g. the number of sessions)."""
        with self._lock:
            self._gauges[name] = (help_text, read)

    def render(self) -> str:
        with self._lock:
            requests = dict(self._requests)
            latency = {k: list(v) for k, v in self._latency.items()}
            sums, counts = dict(self._latency_sum), dict(self._latency_count)
            attestations = dict(self._attestations)
            gauges = dict(self._gauges)
        out = [
            "# HELP cloister_cas_requests_total HTTP requests by route, method and status.",
            "# TYPE cloister_cas_requests_total counter",
        ]
        for (route, method, status), n in sorted(requests.items()):
            labels = _labels(route=route, method=method, status=status)
            out.append(f"cloister_cas_requests_total{labels} {n}")
        out += [
            "# HELP cloister_cas_request_duration_seconds Request latency by route.",
            "# TYPE cloister_cas_request_duration_seconds histogram",
        ]
        for route in sorted(latency):
            for bound, n in zip(BUCKETS, latency[route], strict=True):
                out.append(
                    "cloister_cas_request_duration_seconds_bucket"
                    f"{_labels(route=route, le=repr(bound))} {n}"
                )
            out.append(
                "cloister_cas_request_duration_seconds_bucket"
                f"{_labels(route=route, le='+Inf')} {counts[route]}"
            )
            rl = _labels(route=route)
            out.append(f"cloister_cas_request_duration_seconds_sum{rl} {sums[route]}")
            out.append(f"cloister_cas_request_duration_seconds_count{rl} {counts[route]}")
        out += [
            "# HELP cloister_cas_attestations_total Attestation decisions by result.",
            "# TYPE cloister_cas_attestations_total counter",
        ]
        for result, n in sorted(attestations.items()):
            out.append(f"cloister_cas_attestations_total{_labels(result=result)} {n}")
        if not attestations:
            out.append('cloister_cas_attestations_total{result="allow"} 0')
        for name, (help_text, read) in sorted(gauges.items()):
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", f"{name} {read()}"]
        return "\n".join(out) + "\n"
