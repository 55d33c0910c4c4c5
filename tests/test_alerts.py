"""Hearth's alert rules (manifests/monitoring/alerts.yaml) as Prometheus reads them: each expression parsed
by Prometheus's own PromQL parser (tests/promqlcheck, built from its Go module), each metric it names one
the components really export, and the monitoring kustomization renders."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from tests.support import ROOT, go_json
from tests.test_dashboard import exported_names

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

MONITORING = ROOT / "manifests" / "components" / "monitoring"
OVERLAY = ROOT / "examples" / "kustomize" / "prometheus-operator"


def rules() -> list[dict[str, Any]]:
    (rule_set,) = yaml.safe_load_all((MONITORING / "alerts.yaml").read_text())
    return [rule for group in rule_set["spec"]["groups"] for rule in group["rules"]]


def test_every_alert_parses_and_names_only_exported_metrics() -> None:
    exprs = [rule["expr"] for rule in rules()]
    checked = go_json("promqlcheck", {"exprs": exprs})
    assert [c["error"] for c in checked] == [""] * len(exprs)
    named = {metric for c in checked for metric in c["metrics"]}
    assert named and named <= exported_names(), sorted(named - exported_names())
    assert all(c["metrics"] for c in checked)  # every alert watches a metric of Hearth's


def test_a_wrong_expression_is_refused_by_the_parser() -> None:
    assert go_json("promqlcheck", {"exprs": ["sum by (model) (rate(hearth_gateway_held[5m])"]})[0]["error"]


def test_every_alert_is_explained_and_ranked() -> None:
    for rule in rules():
        assert rule["alert"].startswith("Hearth")
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_prometheus_operator_overlay_adds_the_monitoring_objects() -> None:
    rendered = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True).stdout
    monitoring = [d for d in yaml.safe_load_all(rendered) if d and d["apiVersion"].startswith("monitoring.coreos.com")]
    kinds = sorted(d["kind"] for d in monitoring)
    assert kinds == ["PodMonitor", "PodMonitor", "PrometheusRule", "ServiceMonitor", "ServiceMonitor", "ServiceMonitor"]
    for doc in monitoring:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hearth"
