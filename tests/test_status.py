"""Hearth's status condition on a Deployment: what the scaler writes is what `hearth status` reads back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from hearth.status_cmd import row
from policies import CONDITION, condition, phase_since, status_of


def deployment(*conditions: dict[str, str], replicas: int = 2, ready: int = 1) -> dict[str, Any]:
    controllers = {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable", "message": "ok"}
    return {
        "metadata": {"name": "chat", "namespace": "ai", "labels": {"hearth.dev/phase": "Scaling"}},
        "spec": {"replicas": replicas, "template": {"metadata": {}}},
        "status": {"readyReplicas": ready, "conditions": [controllers, *conditions]},
    }


def test_the_condition_reads_back_as_written_and_hearth_status_shows_it() -> None:
    status = {"demand": 14, "desired": 2, "ready": 1, "runtime": "vllm-nvidia, vllm-ascend-910b", "reason": "x"}
    written = condition("Scaling", status, "2026-12-01T10:00:05Z", "2026-12-01T10:00:00Z")
    assert written["type"] == CONDITION and written["reason"] == "Scaling" and written["status"] == "True"
    got = deployment(written)
    assert status_of(got) == {"demand": "14", "desired": "2", "ready": "1", "runtime": "vllm-nvidia, vllm-ascend-910b"}
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert row(got, now, with_namespace=False)[:5] == ["chat", "Scaling", "vllm-nvidia, vllm-ascend-910b", "1/2", "14"]


def test_a_failure_is_kept_in_words_and_never_read_as_a_field() -> None:
    status = {"demand": 1, "desired": 1, "ready": 0, "reason": "held requests", "failure": "refused; demand 999"}
    written = condition("Degraded", status, "t1", "t0")
    assert written["status"] == "False"
    assert written["message"].endswith("; failed: refused; demand 999")
    assert status_of(deployment(written))["demand"] == "1"


def test_no_condition_yet_shows_dashes() -> None:
    assert status_of(deployment()) == {}
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert row(deployment(), now, with_namespace=True)[:5] == ["ai/chat", "Scaling", "-", "1/2", "-"]


def test_a_restarted_scaler_keeps_the_time_the_phase_began() -> None:
    written = condition("Ready", {"demand": 0, "reason": "steady"}, "t9", "t1")
    assert phase_since(deployment(written), "Ready") == "t1"
    assert phase_since(deployment(written), "Scaling") is None
    assert phase_since(deployment(), "Ready") is None
