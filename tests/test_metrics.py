"""Metrics: each Metrics object has its own registry and renders Prometheus text."""

from __future__ import annotations

from ladle.metrics import Metrics


def test_render_shows_every_metric_with_its_resource() -> None:
    """Counters, the histogram and the gauges appear under their names, labelled by resource."""
    metrics = Metrics()
    metrics.records_in.labels(resource="tickets").inc(3)
    metrics.records_loaded.labels(resource="tickets").inc(2)
    metrics.records_quarantined.labels(resource="tickets").inc(1)
    metrics.records_dead_lettered.labels(resource="tickets").inc(4)
    metrics.batch_seconds.labels(resource="tickets").observe(0.2)
    metrics.consumer_lag.labels(resource="tickets").set(7)
    metrics.pending.labels(resource="tickets").set(5)
    body, content_type = metrics.render()
    lines = body.decode().splitlines()
    for line in (
        'ladle_records_in_total{resource="tickets"} 3.0',
        'ladle_records_loaded_total{resource="tickets"} 2.0',
        'ladle_records_quarantined_total{resource="tickets"} 1.0',
        'ladle_records_dead_lettered_total{resource="tickets"} 4.0',
        'ladle_batch_seconds_count{resource="tickets"} 1.0',
        'ladle_consumer_lag{resource="tickets"} 7.0',
        'ladle_pending{resource="tickets"} 5.0',
    ):
        assert line in lines
    assert content_type.startswith("text/plain; version=")


def test_two_objects_do_not_share_counts() -> None:
    """Each object owns its registry: a second one neither fails nor sees the first's counts."""
    first, second = Metrics(), Metrics()
    first.records_in.labels(resource="a").inc()
    assert b'ladle_records_in_total{resource="a"}' not in second.render()[0]
