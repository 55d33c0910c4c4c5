"""Prometheus metrics of the gateway, on a registry passed in; a model's children go when it goes."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)
FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.held = Gauge(
            "hearth_gateway_held", "Requests held while their model has no ready pod.", ["model"], registry=registry
        )
        self.in_flight = Gauge(
            "hearth_gateway_in_flight", "Requests being served by a pod.", ["model"], registry=registry
        )
        self.requests = Counter(
            "hearth_gateway_requests",
            "Calls to models, by model and outcome: the HTTP status, or for a held stream that began as a 200 "
            "the status of how it ended; 499 when the client left first.",
            ["model", "code"],
            registry=registry,
        )
        self.rejections = Counter(
            "hearth_gateway_rejections",
            "Calls refused or failed, by reason (the error code; client_gone: the client left before the end).",
            ["model", "reason"],
            registry=registry,
        )
        self.activation_wait = Histogram(
            "hearth_gateway_activation_wait_seconds",
            "Time a request was held until a pod was ready.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )
        self.routing = Histogram(
            "hearth_gateway_routing_seconds",
            "Time from a request's arrival to its upstream request, hold excluded.",
            ["model"],
            buckets=FAST_BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "hearth_gateway_time_to_first_byte_seconds",
            "Time from a request's arrival to the first upstream byte relayed, hold included.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )

        self.activation_pushes = Counter(
            "hearth_gateway_activation_pushes",
            "Activation pushes to the scalers, by outcome: accepted (by the leader) or unacknowledged.",
            ["model", "outcome"],
            registry=registry,
        )
        self.activation_push = Histogram(
            "hearth_gateway_activation_push_seconds",
            "Time from a request held at zero to a scaler accepting its activation, retries included.",
            ["model"],
            buckets=WAIT_BUCKETS,
            registry=registry,
        )

        self.key_requests = Counter(
            "hearth_gateway_key_requests",
            "Calls to models answered, by API key name (namespace/secret, never the key) and HTTP status.",
            ["key", "code"],
            registry=registry,
        )
        self.key_tokens = Counter(
            "hearth_gateway_key_tokens",
            "Tokens the answers reported in their usage, by API key name and kind (prompt, completion).",
            ["key", "kind"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "hearth_gateway_auth_failures",
            "Requests refused before any model was named: no key (missing), an unknown or revoked key "
            "(invalid), an internal endpoint called by someone else (internal).",
            ["reason"],
            registry=registry,
        )

    def forget_key(self, name: str) -> None:
        """Remove the children of an API key that no longer exists."""
        _remove_children((self.key_requests, self.key_tokens), "key", name)

    def forget(self, model: str) -> None:
        """Remove every child labelled with a model that no longer exists."""
        metrics = (
            self.held,
            self.in_flight,
            self.activation_wait,
            self.routing,
            self.first_byte,
            self.requests,
            self.rejections,
            self.activation_pushes,
            self.activation_push,
        )
        _remove_children(metrics, "model", model)


def _remove_children(metrics: tuple[Counter | Gauge | Histogram, ...], label: str, value: str) -> None:
    for metric in metrics:
        children = {
            tuple(s.labels[n] for n in metric._labelnames)
            for m in metric.collect()
            for s in m.samples
            if s.labels.get(label) == value
        }
        for labels in children:
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
