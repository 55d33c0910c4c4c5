"""Who may call which model, on the real cluster: API keys as namespace admins make them (labelled
Secrets), the real OpenAI SDK, the front doors' watches; the internal endpoints answering only Hearth's
own ServiceAccounts (TokenReview on the real apiserver); no key in any log or metric."""

from __future__ import annotations

import time
from typing import Any

import httpx
import openai
import pytest

from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import MESSAGES, apply, expected, phase, sdk, wait_for
from tests.test_gateway import wav

pytestmark = pytest.mark.e2e


def key_secret(namespace: str, name: str, key: str, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"hearth.dev/api-key": "true"},
            "annotations": annotations,
        },
        "stringData": {"key": key},
    }


def client(cluster: Cluster, key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=cluster.openai_base_url, api_key=key, max_retries=retries, timeout=120)


def front_door_logs(cluster: Cluster) -> str:
    logs = [
        cluster.kubectl("logs", "-n", "hearth-system", pod["metadata"]["name"], "-c", "gateway").stdout
        for pod in cluster.hearth_pods("hearth-gateway")
    ]
    return "\n".join(logs)


def test_keys_scope_models_to_their_namespace_and_never_leak(cluster: Cluster, namespace: str) -> None:
    other = f"{namespace[:50]}-b"
    cluster.kubectl("create", "namespace", other)
    try:
        for name in ("emb", "resp", "audio"):
            apply(cluster, simulated_model(namespace, name, startup="2s", delay="30s"))
        apply(cluster, simulated_model(other, "theirs"))
        at_zero = lambda: all(phase(cluster, namespace, n) == "ScaledToZero" for n in ("emb", "resp", "audio"))  # noqa: E731
        wait_for("the three models at zero", at_zero, timeout=30)
        own = sdk(cluster, namespace)
        theirs_key = cluster.api_key(other)

        # No key, a wrong key: 401 in OpenAI's shape, before anything else.
        bare = httpx.post(f"{cluster.openai_base_url}/chat/completions", json={"model": "emb", "messages": MESSAGES})
        assert bare.status_code == 401 and bare.json()["error"]["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            client(cluster, "sk-not-a-key-of-anyone-0000000000").models.list()

        # A key lists and calls only its namespace's models; another's are 404, not 403.
        assert sorted(m.id for m in own.models.list()) == ["audio", "emb", "resp"]
        with pytest.raises(openai.NotFoundError):
            own.chat.completions.create(model=f"{other}/theirs", messages=MESSAGES, max_tokens=2)
        with pytest.raises(openai.NotFoundError):
            client(cluster, theirs_key).models.retrieve(f"{namespace}/emb")
        assert own.models.retrieve("emb").owned_by == namespace

        # Embeddings, responses and a transcription, each from zero: held, then answered.
        embedded = own.embeddings.create(model="emb", input=["a", "b"])
        assert len(embedded.data) == 2
        assert own.responses.create(model="resp", input="hi", max_output_tokens=4).output_text == expected(4)
        transcript = own.audio.transcriptions.create(model="audio", file=("tone.wav", wav(), "audio/wav"))
        assert transcript.text.startswith(expected(3))

        # Limits: over its rate, a key gets 429 with Retry-After; after it, it is served again. Each front
        # door keeps its own bucket (12 a minute: one request, then one every 5 s): of three requests
        # through the Service, two reach the same door within 5 s.
        limited = "sk-limited-" + "0123456789abcdef" * 2
        apply(cluster, key_secret(namespace, "limited", limited, **{"hearth.dev/requests-per-minute": "12"}))
        cluster.wait_key_taken(limited)
        with pytest.raises(openai.RateLimitError) as over:
            for _ in range(3):
                client(cluster, limited).chat.completions.create(model="emb", messages=MESSAGES, max_tokens=2)
        retry_after = float(over.value.response.headers["retry-after"])
        assert 0 < retry_after <= 5 and over.value.code == "rate_limit_exceeded"
        # The SDK itself waits out Retry-After on a 429 and tries again.
        assert client(cluster, limited, retries=3).embeddings.create(model="emb", input="again").data

        # Revoked: the Secret deleted, the key stops working within seconds, on every front door.
        cluster.kubectl("delete", "secret", "limited", "-n", namespace)
        started = time.monotonic()
        doors = [f"http://{p['status']['podIP']}:8080/v1/models" for p in cluster.hearth_pods("hearth-gateway")]
        headers = {"Authorization": f"Bearer {limited}"}
        wait_for(
            "every front door to refuse the revoked key",
            lambda: all(httpx.get(u, headers=headers, timeout=5).status_code == 401 for u in doors),
            timeout=10,
            every=0.1,
        )
        print(f"revoked key refused by every front door {time.monotonic() - started:.2f}s after the delete")

        # The keys appear in no log line and no metric; the key's name does.
        metrics = "\n".join(httpx.get(u.replace(":8080/v1/models", ":9090/metrics"), timeout=5).text for u in doors)
        assert all(httpx.get(u.replace("/v1/models", "/metrics"), timeout=5).status_code == 404 for u in doors)
        logs = front_door_logs(cluster)
        assert f'"key":"{namespace}/hearth-dev-key"' in logs and f'key="{namespace}/limited"' not in metrics
        for key in (cluster.api_key(namespace), theirs_key, limited):
            assert key not in logs and key not in metrics
    finally:
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)


def test_internal_endpoints_answer_only_hearths_own_service_accounts(cluster: Cluster, namespace: str) -> None:
    door = cluster.hearth_pods("hearth-gateway")[0]["status"]["podIP"]
    scaler = cluster.hearth_pods("hearth-scaler")[0]["status"]["podIP"]
    demand, activate = f"http://{door}:8080/demand", f"http://{scaler}:8081/activate"
    assert httpx.get(demand, timeout=5).status_code == 401
    assert httpx.post(activate, json={"model": f"{namespace}/x"}, timeout=5).status_code == 401
    # A valid token for the audience hearth, of a ServiceAccount that is not Hearth's: 403.
    stranger = cluster.kubectl("create", "token", "default", "-n", namespace, "--audience=hearth").stdout.strip()
    assert httpx.get(demand, headers={"Authorization": f"Bearer {stranger}"}, timeout=5).status_code == 403
    # The scaler's own token, but for the apiserver's audience (not hearth): refused.
    apiserver = cluster.kubectl("create", "token", "hearth-scaler", "-n", "hearth-system").stdout.strip()
    assert httpx.get(demand, headers={"Authorization": f"Bearer {apiserver}"}, timeout=5).status_code == 401
    # The scaler's token for hearth: answered (this is what the scaler itself sends each tick).
    scalers = cluster.kubectl("create", "token", "hearth-scaler", "-n", "hearth-system", "--audience=hearth")
    answer = httpx.get(demand, headers={"Authorization": f"Bearer {scalers.stdout.strip()}"}, timeout=5)
    assert answer.status_code == 200 and "models" in answer.json()
    doors = cluster.kubectl("create", "token", "hearth-gateway", "-n", "hearth-system", "--audience=hearth")
    pushed = httpx.post(
        activate,
        json={"model": f"{namespace}/none"},
        headers={"Authorization": f"Bearer {doors.stdout.strip()}"},
        timeout=5,
    )
    assert pushed.status_code in (404, 409)  # past the check: no such model (leader), or not the leader
