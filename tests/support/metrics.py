"""Reading Prometheus text expositions in tests."""

from __future__ import annotations

import re

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (sample name, labels)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape(url: str, token: str | None = None) -> Samples:
    """GET ``url`` (with ``Authorization: Bearer <token>`` when given); its samples."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    return parse(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent: a counter not yet incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def worker_metrics_urls(log: str) -> dict[str, str]:
    """The metrics URL each worker process logged (the latest one of each role), from JSON or human lines."""
    return dict(re.findall(r"metrics of (relay|projector|audit-sink) on (http://[^\s\"]+/metrics)", log))
