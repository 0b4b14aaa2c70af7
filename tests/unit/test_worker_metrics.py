"""The worker's Prometheus text: the run-time histogram's buckets are cumulative."""

from __future__ import annotations

import re

from kubenenc_worker.metrics import Metrics


def _buckets(text: str) -> dict[str, int]:
    found = re.findall(r'kubenenc_worker_run_seconds_bucket\{pool="p",le="([^"]+)"\} (\d+)', text)
    return {le: int(n) for le, n in found}


def test_run_seconds_histogram_counts_each_run_in_every_bucket_at_or_above_it() -> None:
    m = Metrics()
    for seconds in (0.0, 0.001, 0.0011, 0.7, 30.0, 1e9):
        m.observe("succeeded", seconds)
    text = m.render("p")
    assert _buckets(text) == {
        "0.001": 2, "0.005": 3, "0.01": 3, "0.05": 3, "0.1": 3, "0.5": 3, "1.0": 4, "5.0": 4,
        "30.0": 5, "120.0": 5, "+Inf": 6,
    }  # fmt: skip
    assert 'kubenenc_worker_run_seconds_count{pool="p"} 6' in text
    assert 'kubenenc_worker_finished_total{pool="p",status="succeeded"} 6' in text


def test_observe_many_counts_like_one_observe_per_run() -> None:
    runs = [("succeeded", 0.0005), ("failed", 0.7), ("succeeded", 200.0)]
    one, many = Metrics(), Metrics()
    for status, seconds in runs:
        one.observe(status, seconds)
    many.observe_many(runs)
    assert many.render("p") == one.render("p")
    assert 'kubenenc_worker_finished_total{pool="p",status="failed"} 1' in many.render("p")
