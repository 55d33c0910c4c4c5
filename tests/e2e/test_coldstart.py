"""Cold starts people can see and plan for, on the local cluster: an opted-in chat stream read with the OpenAI
SDK sees the start's real stages as reasoning deltas, then the model's answer; an API client without the
option sees no change; the scaler learns the start's length from the pod's own timestamps, and Retry-After
and `hearth status` follow what it learned."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from policies import status_of
from tests.e2e.conftest import MESSAGES, apply, auth, get_json, phase, sdk, wait_for

pytestmark = pytest.mark.e2e

STAGES = ("asking for a replica", "creating its pod", "waiting for a node", "fetching", "starting its", "loading")


def stream(cluster: Cluster, namespace: str, name: str) -> tuple[list[str], str]:
    """The reasoning deltas and the answer of one streamed chat, as the SDK parses them."""
    reasoning: list[str] = []
    content: list[str] = []
    chunks = sdk(cluster, namespace).chat.completions.create(model=name, messages=MESSAGES, stream=True, max_tokens=20)
    for chunk in chunks:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        extra = (delta.model_extra or {}).get("reasoning_content")
        if extra:
            assert not content, "a progress line after the model's own tokens"
            reasoning.append(str(extra))
        if delta.content:
            content.append(delta.content)
    return reasoning, "".join(content)


def test_a_held_chat_stream_sees_the_real_stages_then_the_answer_and_the_eta_is_learned(
    cluster: Cluster, namespace: str
) -> None:
    progress = {"hearth.dev/cold-start-progress": "true"}
    apply(cluster, simulated_model(namespace, "shown", startup="4s", delay="2s", annotations=progress))
    apply(cluster, simulated_model(namespace, "plain", startup="1s", delay="2s"))
    at_zero = lambda: phase(cluster, namespace, "shown") == phase(cluster, namespace, "plain") == "ScaledToZero"  # noqa: E731
    wait_for("both at zero", at_zero)

    reasoning, answer = stream(cluster, namespace, "shown")
    lines = "".join(reasoning)
    assert answer and lines.startswith("Starting shown from zero."), lines
    assert "loading the model on gpu-node-" in lines and "shown is ready after" in lines, lines
    seen = [min((i for i, s in enumerate(STAGES) if s in line), default=-1) for line in lines.splitlines()]
    stages = [s for s in seen if s >= 0]
    assert stages == sorted(stages), lines  # each stage after the one before, as the pod went through them
    plain, plain_answer = stream(cluster, namespace, "plain")
    assert plain == [] and plain_answer  # API clients without the option: no change

    # The scaler measured the start from the pod's timestamps and predicts the next from it.
    def learned() -> dict[str, str] | None:
        fields = status_of(get_json(cluster, "deploy", "shown", "-n", namespace))
        return fields if fields.get("eta") and fields.get("starts") else None

    fields = wait_for("the start recorded", learned, timeout=30)
    eta = int(fields["eta"])
    assert 4 <= eta <= 60, fields  # the simulator loads for 4 s
    # Retry-After follows it: a reject-mode model at zero says when to come back.
    wait_for("back at zero", lambda: phase(cluster, namespace, "shown") == "ScaledToZero", timeout=60)
    rejecting = {**progress, "hearth.dev/cold-start": "reject"}
    apply(cluster, simulated_model(namespace, "shown", startup="4s", delay="2s", annotations=rejecting))
    wait_for("reject mode seen", lambda: "reject" in str(get_json(cluster, "deploy", "shown", "-n", namespace)))
    url = f"{cluster.openai_base_url}/chat/completions"
    body = {"model": "shown", "messages": MESSAGES, "max_tokens": 2}

    def refused() -> httpx.Response | None:
        answer = httpx.post(url, json=body, headers=auth(cluster, namespace), timeout=30)
        return answer if answer.status_code == 503 and answer.headers.get("retry-after") == str(eta) else None

    refusal = wait_for("Retry-After from the ETA", refused, timeout=30)
    assert refusal.json()["error"]["code"] == "model_starting"
    assert f"retry in about {eta}s" in refusal.json()["error"]["message"]
    hearth = [sys.executable, "-m", "hearth", "status", "-n", namespace, "--kubeconfig", str(cluster.layout.kubeconfig)]
    table = subprocess.run(hearth, capture_output=True, text=True, check=True).stdout
    row = next(line for line in table.splitlines() if line.startswith("shown "))
    assert f"{eta}s" in row and ("(warm)" in row or "(fetched)" in row), table
