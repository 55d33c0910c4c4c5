"""The Grafana dashboard queries only metrics that Hearth's components really export."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import CollectorRegistry

from common.informer import InformerMetrics
from gateway.metrics import GatewayMetrics
from gateway.sidecar import Drain, SidecarMetrics
from nodecache.agent import AgentMetrics
from scaler.metrics import ScalerMetrics
from tests.support import ROOT
from webhook.metrics import WebhookMetrics


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    ScalerMetrics(registry)
    WebhookMetrics(registry)
    InformerMetrics(registry)
    SidecarMetrics(Drain(), registry)
    AgentMetrics(registry)
    names: set[str] = set()
    for metric in registry.collect():
        names.add(metric.name)
        kind = metric.type
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}.get(kind, [""])
        names.update(metric.name + suffix for suffix in suffixes)
    return names


def test_every_queried_metric_exists() -> None:
    config_map = yaml.safe_load((ROOT / "manifests" / "grafana-dashboard.yaml").read_text())
    dashboard = json.loads(config_map["data"]["hearth.json"])
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bhearth_[a-z_]+", target["expr"])
    }
    assert queried, "the dashboard queries nothing"
    assert queried <= exported_names(), f"unknown metrics: {sorted(queried - exported_names())}"
    assert len(dashboard["panels"]) >= 8
