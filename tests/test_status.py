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
    shown = row(got, now, with_namespace=False)[:6]
    assert shown == ["chat", "Deployment", "Scaling", "vllm-nvidia, vllm-ascend-910b", "1/2", "14"]


def test_a_failure_is_kept_in_words_and_never_read_as_a_field() -> None:
    status = {"demand": 1, "desired": 1, "ready": 0, "reason": "held requests", "failure": "refused; demand 999"}
    written = condition("Degraded", status, "t1", "t0")
    assert written["status"] == "False"
    assert written["message"].endswith("; failed: refused; demand 999")
    assert status_of(deployment(written))["demand"] == "1"


def test_no_condition_yet_shows_dashes() -> None:
    assert status_of(deployment()) == {}
    now = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
    assert row(deployment(), now, with_namespace=True)[:6] == ["ai/chat", "Deployment", "Scaling", "-", "1/2", "-"]


def test_hearth_status_lists_llmservices_by_their_deployment_or_their_own_status() -> None:
    from hearth.status_cmd import table

    compiled = deployment()
    compiled["metadata"]["ownerReferences"] = [{"kind": "LLMService", "name": "chat", "controller": True}]
    taken = {
        "metadata": {"name": "taken", "namespace": "ai"},
        "status": {"phase": "Conflict", "message": "a Deployment taken that this LLMService does not own"},
    }
    served = {"metadata": {"name": "chat", "namespace": "ai"}, "status": {"phase": "Scaling"}}
    lines = table([compiled], with_namespace=False, services=[served, taken]).splitlines()
    assert lines[0].split()[:3] == ["NAME", "KIND", "PHASE"]
    assert lines[1].split()[:3] == ["chat", "LLMService", "Scaling"]
    assert lines[2].split()[:3] == ["taken", "LLMService", "Conflict:"] and len(lines) == 3


def test_a_restarted_scaler_keeps_the_time_the_phase_began() -> None:
    written = condition("Ready", {"demand": 0, "reason": "steady"}, "t9", "t1")
    assert phase_since(deployment(written), "Ready") == "t1"
    assert phase_since(deployment(written), "Scaling") is None
    assert phase_since(deployment(), "Ready") is None


def test_hearth_status_capacity_shows_each_pool_and_who_holds_it() -> None:
    from hearth.status_cmd import capacity_table
    from policies import capacity
    from tests.test_packing import node, pod

    def model(name: str, demand: int) -> dict[str, Any]:
        status = {"demand": demand, "desired": 1, "ready": 1, "reason": "x", "used": "2026-12-01T09:55:48Z"}
        found = deployment(condition("Ready", status, "t1", "t0"))
        found["metadata"]["name"] = name
        return found

    view = capacity(
        [node("gpu-0", {"nvidia.com/gpu": 4}), node("cpu-0", {})],
        [
            pod("q1", "gpu-0", {"nvidia.com/gpu": 1}, model="qwen"),
            pod("q2", "gpu-0", {"nvidia.com/gpu": 1}, model="qwen"),
            pod("g", "gpu-0", {"nvidia.com/gpu": 1}, model="glm"),
            pod("job", "gpu-0", {"nvidia.com/gpu": 1}),
        ],
    )
    now = dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)
    shown = capacity_table(view, [model("qwen", 0), model("glm", 3)], now).splitlines()
    assert shown[0].split() == ["NODE", "RESOURCE", "ALLOCATABLE", "FREE", "BUSY", "IDLE", "OTHER", "HELD", "BY"]
    assert shown[1].split()[:7] == ["gpu-0", "nvidia.com/gpu", "4", "0", "1", "2", "1"]
    assert shown[1].endswith("ai/glm (busy), 2x ai/qwen (idle 4m)")  # idle since its last use
    assert len(shown) == 2  # a node without accelerators is no pool


def test_hearth_status_shows_the_last_start_and_the_predicted_next() -> None:
    status = {"demand": 0, "desired": 0, "ready": 0, "reason": "idle", "starts": "c90,w20", "eta": 20}
    got = deployment(condition("ScaledToZero", status, "t1", "t0"))
    shown = row(got, dt.datetime(2026, 12, 1, tzinfo=dt.UTC), with_namespace=False)
    assert shown[7:9] == ["20s (warm)", "20s"]
    assert row(deployment(), dt.datetime(2026, 12, 1, tzinfo=dt.UTC), with_namespace=False)[7:9] == ["-", "-"]
