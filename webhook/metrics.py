"""Prometheus metrics of the webhook, on a registry passed in (never the global one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reviews = Counter(
            "hearth_webhook_reviews",
            "AdmissionReviews answered, by endpoint and result "
            "(allowed, patched, denied, malformed, too_large, too_slow).",
            ["endpoint", "result"],
            registry=registry,
        )
        self.latency = Histogram(
            "hearth_webhook_review_seconds",
            "Time to answer one AdmissionReview, from the body read to the answer built.",
            ["endpoint"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
            registry=registry,
        )
        self.runtimes = Gauge("hearth_webhook_runtimes", "InferenceRuntimes known to the webhook.", registry=registry)
        self.cert_reloads = Counter(
            "hearth_webhook_cert_reloads", "Serving certificate reloads, by result.", ["result"], registry=registry
        )
