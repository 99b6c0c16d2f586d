"""Prometheus metrics of ``ladle serve`` and ``ladle worker``, in a registry of their own.

One :class:`Metrics` object per process is created by the command and passed to the
parts that count; nothing registers in prometheus-client's global registry, so two
objects (in tests, say) never collide. Every metric has a ``resource`` label.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_RESOURCE = ("resource",)


class Metrics:
    """The counters, histogram and gauges ladle exposes on ``/metrics``.

    Count with the metric's ``labels``, e.g.
    ``metrics.records_loaded.labels(resource="tickets").inc(120)``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.records_in = Counter(
            "ladle_records_in",
            "Records accepted for loading (by the ingest endpoint, or read by a worker).",
            _RESOURCE,
            registry=registry,
        )
        self.records_loaded = Counter(
            "ladle_records_loaded",
            "Records committed to the destination (inserted, updated or unchanged).",
            _RESOURCE,
            registry=registry,
        )
        self.records_quarantined = Counter(
            "ladle_records_quarantined",
            "Records that failed a rule and went to _ladle_quarantine.",
            _RESOURCE,
            registry=registry,
        )
        self.records_dead_lettered = Counter(
            "ladle_records_dead_lettered",
            "Stream entries moved to the dead-letter stream.",
            _RESOURCE,
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "ladle_batch_seconds",
            "Time to process and load one batch, in seconds.",
            _RESOURCE,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "ladle_consumer_lag",
            "Stream entries not yet delivered to the consumer group.",
            _RESOURCE,
            registry=registry,
        )
        self.pending = Gauge(
            "ladle_pending",
            "Stream entries delivered to a consumer and not yet acknowledged.",
            _RESOURCE,
            registry=registry,
        )
        self.destination_up = Gauge(
            "ladle_destination_up",
            "1 when the worker's last attempt to reach the destination worked, 0 while it waits.",
            _RESOURCE,
            registry=registry,
        )
        self.destination_retries = Counter(
            "ladle_destination_retries",
            "Attempts that found the destination unavailable (each followed by a wait).",
            _RESOURCE,
            registry=registry,
        )
        self.batch_splits = Counter(
            "ladle_batch_splits",
            "Batches split in two because processing or loading them raised.",
            _RESOURCE,
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format, and the content type to serve them with."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
