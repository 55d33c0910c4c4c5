"""Waking a model on the real cluster under pressure: the leading scaler killed during the cold start,
and 1,000 streaming clients held at one front door through a cold start."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from devcluster.cluster import Cluster
from devcluster.gotools import loadgen
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, expected, phase, ready_pods, replicas, wait_for
from tests.e2e.test_scaling import lease_holder, stream_text

pytestmark = pytest.mark.e2e


def test_killing_the_leader_during_a_cold_start_still_serves_every_held_request(
    cluster: Cluster, namespace: str
) -> None:
    apply(cluster, simulated_model(namespace, "coldkill", startup="10s"))
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "coldkill") == "ScaledToZero", timeout=30)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stream_text, cluster, f"{namespace}/coldkill", 4) for _ in range(4)]
        wait_for("the scale write", lambda: replicas(cluster, namespace, "coldkill") >= 1, timeout=30, every=0.1)
        assert ready_pods(cluster, namespace, "coldkill") is None  # the model is still loading (10 s)
        leader = lease_holder(cluster)
        pod = next(p for p in cluster.hearth_pods("hearth-scaler") if p["metadata"]["name"] == leader)
        for pid in cluster.container_pids(pod, "scaler"):
            os.kill(pid, signal.SIGKILL)  # the leader dies while the model loads
        assert [f.result(timeout=120) for f in futures] == [expected(4)] * 4


def test_a_thousand_streams_held_at_one_front_door_all_complete_after_a_cold_start(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    held = 1000
    model = simulated_model(namespace, "herd", startup="3s", itl="5ms")
    model["metadata"]["annotations"]["hearth.dev/queue-size"] = str(held)
    apply(cluster, model)
    wait_for("phase ScaledToZero", lambda: phase(cluster, namespace, "herd") == "ScaledToZero", timeout=30)
    door = sorted(cluster.hearth_pods("hearth-gateway"), key=lambda p: p["metadata"]["name"])[0]
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"model": f"{namespace}/herd", "messages": MESSAGES, "stream": True, "max_tokens": 4}))
    url = f"http://{door['status']['podIP']}:8080/v1/chat/completions"
    key = f"-auth=Bearer {cluster.api_key(namespace)}"
    argv = [str(loadgen()), f"-wake={held}", "-gap=1ms", f"-url={url}", f"-body={body}", key]
    result = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300).stdout)
    assert (result["complete"], result["errors"]) == (held, 0), result["first_error"]
    firsts = result["first_ns"]
    print(f"1,000 held streams: first tokens spread over {(max(firsts) - min(firsts)) / 1e6:.0f} ms")
