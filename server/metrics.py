"""Prometheus metrics, one registry per app (no module-level state)."""

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """The figures an operator graphs: live meetings, people, tracks, traffic, errors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.meetings_live = Gauge(
            "veche_meetings_live", "Meetings with someone in them", registry=r
        )
        self.participants = Gauge(
            "veche_participants", "People connected, by state", ["state"], registry=r
        )
        self.tracks = Gauge("veche_tracks", "Published media tracks", registry=r)
        self.forwarded_packets = Counter(
            "veche_forwarded_packets", "RTP packets forwarded to subscribers", registry=r
        )
        self.forwarded_bytes = Counter(
            "veche_forwarded_bytes", "RTP bytes forwarded to subscribers", registry=r
        )
        self.errors = Counter(
            "veche_errors", "Refused requests and dropped input, by kind", ["kind"], registry=r
        )
        self.http_requests = Counter(
            "veche_http_requests", "HTTP requests, by status class", ["status"], registry=r
        )

    def error(self, kind: str) -> None:
        self.errors.labels(kind=kind).inc()

    def watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        """Read `gauge` from live state at scrape time rather than keeping a copy in step."""
        gauge.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
