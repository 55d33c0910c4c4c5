"""The webhook as kube-apiserver meets it: a real `hearth webhook` process over TLS, real AdmissionReviews."""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Webhook
from tests.support import GOLDEN, admission_review, apiserver_pod, load_case
from webhook.app import ENDPOINTS as WEBHOOK_ENDPOINTS

pytestmark = pytest.mark.process  # real processes (tests/conftest.py: the tiers)

DEPLOYMENT, _ = load_case(GOLDEN / "nvidia-hf.yaml")
ENDPOINTS = [
    "/mutate/pods",
    "/mutate/deployments",
    "/validate/deployments",
    "/validate/inferenceruntimes",
    "/validate/llmservices",
]
assert set(ENDPOINTS) == set(WEBHOOK_ENDPOINTS), "every endpoint of the webhook is fuzzed"


@pytest.fixture(scope="module")
def client(webhook: Webhook) -> Any:
    with httpx.Client(base_url=webhook.url, verify=webhook.tls, timeout=10) as c:
        yield c


def post(client: httpx.Client, path: str, review: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=review)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["apiVersion"] == review["apiVersion"] and body["kind"] == "AdmissionReview"
    answer: dict[str, Any] = body["response"]
    assert answer["uid"] == review["request"]["uid"]
    return answer


def test_pod_is_rendered_through_a_patch(client: httpx.Client) -> None:
    pod = apiserver_pod(DEPLOYMENT)
    review = admission_review(pod, dry_run=True)
    answer = post(client, "/mutate/pods", review)
    assert answer["allowed"] and answer["patchType"] == "JSONPatch"
    patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    model = patched["spec"]["containers"][0]
    assert model["image"].startswith("vllm/vllm-openai") and model["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert [c["name"] for c in patched["spec"]["containers"]] == ["model", "hearth-gateway"]


def test_unlabelled_pod_and_other_operations_pass_untouched(client: httpx.Client) -> None:
    pod = apiserver_pod(DEPLOYMENT)
    del pod["metadata"]["labels"]["hearth.dev/enabled"]
    answer = post(client, "/mutate/pods", admission_review(pod))
    assert answer["allowed"] and "patch" not in answer
    labelled = apiserver_pod(DEPLOYMENT)
    answer = post(client, "/mutate/pods", admission_review(labelled, operation="UPDATE", old=labelled))
    assert answer["allowed"] and "patch" not in answer


def test_pod_without_runtime_is_denied_with_the_reason(client: httpx.Client) -> None:
    pod = apiserver_pod(DEPLOYMENT)
    pod["metadata"]["annotations"]["hearth.dev/vendors"] = "amd"
    answer = post(client, "/mutate/pods", admission_review(pod))
    assert answer["allowed"] is False
    assert "no InferenceRuntime of these vendors exists" in answer["status"]["message"]
    assert answer["status"]["code"] == 400


def deployment_review(obj: dict[str, Any] | None, operation: str = "CREATE") -> dict[str, Any]:
    return admission_review(obj, group="apps", kind="Deployment", resource="deployments", operation=operation)


def test_deployment_validation_denies_and_warns(client: httpx.Client) -> None:
    bad = copy.deepcopy(DEPLOYMENT)
    bad["metadata"]["annotations"]["hearth.dev/max-replicas"] = "lots"
    answer = post(client, "/validate/deployments", deployment_review(bad))
    assert answer["allowed"] is False and '"lots"' in answer["status"]["message"]
    risky = copy.deepcopy(DEPLOYMENT)
    risky["spec"]["replicas"] = 3
    answer = post(client, "/validate/deployments", deployment_review(risky))
    assert answer["allowed"] is True and any("spec.replicas" in w for w in answer["warnings"])
    answer = post(client, "/validate/deployments", deployment_review(None, operation="DELETE"))
    assert answer["allowed"] is True


def test_runtime_validation(client: httpx.Client) -> None:
    import yaml

    from tests.support import RUNTIMES

    runtime = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
    review = admission_review(
        runtime, group="serving.hearth.dev", version="v1alpha1", kind="InferenceRuntime", resource="inferenceruntimes"
    )
    assert post(client, "/validate/inferenceruntimes", review)["allowed"] is True
    runtime["spec"]["container"]["args"].append("--x={{ secret }}")
    answer = post(client, "/validate/inferenceruntimes", review | {"request": review["request"] | {"object": runtime}})
    assert answer["allowed"] is False and "unknown template variable {{ secret }}" in answer["status"]["message"]
    twin = yaml.safe_load((RUNTIMES / "vllm-nvidia.yaml").read_text())
    twin["metadata"]["name"] = "vllm-nvidia-2"
    answer = post(client, "/validate/inferenceruntimes", review | {"request": review["request"] | {"object": twin}})
    assert answer["allowed"] is True and "vllm-nvidia has the same vendor" in answer["warnings"][0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not JSON"),
        (b"[]", "JSON object"),
        (b'{"apiVersion": "v1", "kind": "Pod"}', "expected kind AdmissionReview"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "no request"),
        (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": {}}}', "no uid"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_malformed_bodies_are_400_with_a_message(client: httpx.Client, body: bytes, fragment: str) -> None:
    for path in ENDPOINTS:
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert fragment in response.json()["error"]["message"]


def test_oversized_body_is_refused(client: httpx.Client) -> None:
    response = client.post("/mutate/pods", content=b"x" * 2_000_000)
    assert response.status_code == 413
    # Also when the client does not declare a length (chunked upload).
    response = client.post("/mutate/pods", content=iter([b"x" * 65536] * 40))
    assert response.status_code == 413
    assert client.get("/healthz").status_code == 200


def reviews_counted(client: httpx.Client, result: str) -> float:
    """hearth_webhook_reviews_total{endpoint="/mutate/pods", result} as the webhook reports it now."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "hearth_webhook_reviews_total" and sample.labels == {
                "endpoint": "/mutate/pods",
                "result": result,
            }:
                return sample.value
    return 0.0


def test_metrics_count_the_answers(client: httpx.Client) -> None:
    """Counts what this test sends (whatever other tests sent before it)."""
    patched, malformed = reviews_counted(client, "patched"), reviews_counted(client, "malformed")
    answer = post(client, "/mutate/pods", admission_review(apiserver_pod(DEPLOYMENT)))
    assert answer["allowed"] and answer.get("patchType") == "JSONPatch", answer
    assert client.post("/mutate/pods", content=b"{not json").status_code == 400
    assert reviews_counted(client, "patched") == patched + 1
    assert reviews_counted(client, "malformed") == malformed + 1
    assert "hearth_webhook_runtimes 3.0" in client.get("/metrics").text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=30,
)


def hostile_objects() -> st.SearchStrategy[Any]:
    """Pods, Deployments and runtimes with parts replaced by junk of the wrong type."""
    pod = apiserver_pod(DEPLOYMENT)
    paths = [
        ("metadata",),
        ("metadata", "annotations"),
        ("metadata", "labels"),
        ("spec",),
        ("spec", "containers"),
        ("metadata", "ownerReferences"),
        ("metadata", "annotations", "hearth.dev/model"),
    ]

    def corrupt(path: tuple[str, ...], junk: Any) -> dict[str, Any]:
        obj = copy.deepcopy(pod)
        node = obj
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = junk
        return obj

    return st.builds(corrupt, st.sampled_from(paths), json_values) | json_values


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(ENDPOINTS),
    obj=hostile_objects(),
    op=st.sampled_from(["CREATE", "UPDATE", "DELETE", None, 7]),
    kind=st.sampled_from(["Pod", "Deployment", "InferenceRuntime", 3]),
)
def test_hostile_reviews_get_a_well_formed_answer(
    client: httpx.Client, path: str, obj: Any, op: Any, kind: Any
) -> None:
    review = admission_review(None)
    review["request"].update(
        object=obj, operation=op, kind={"group": "apps" if kind == "Deployment" else "", "kind": kind}
    )
    response = client.post(path, json=review)
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 200:
        assert body["response"]["uid"] == review["request"]["uid"]
        assert isinstance(body["response"]["allowed"], bool)
    else:
        assert body["error"]["message"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(ENDPOINTS), body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
)
def test_random_bodies_never_crash(client: httpx.Client, path: str, body: bytes) -> None:
    response = client.post(path, content=body)
    assert response.status_code == 400 and response.json()["error"]["message"]


def test_ten_thousand_unknown_keys_get_a_bounded_denial(client: httpx.Client) -> None:
    """Every problem is counted, the first ten are spelled out, and the answer stays a few KiB (it was
    2.3 MB: kubectl prints it and the apiserver stores it)."""
    hostile = copy.deepcopy(DEPLOYMENT)
    hostile["metadata"]["annotations"].update({f"hearth.dev/unknown-{i}": "x" for i in range(10_000)})
    for path in ("/validate/deployments", "/mutate/pods"):
        review = (
            deployment_review(hostile) if path == "/validate/deployments" else admission_review(apiserver_pod(hostile))
        )
        if path == "/mutate/pods":  # the pod's template annotations carry the keys
            review["request"]["object"]["metadata"]["annotations"].update(
                {f"hearth.dev/unknown-{i}": "x" for i in range(10_000)}
            )
        answer = post(client, path, review)
        message = answer["status"]["message"]
        assert answer["allowed"] is False and len(message) <= 4096, len(message)
        assert "10000 problems" in message and "and 9990 more" in message
        assert message.count("hearth.dev/unknown-") <= 20


@pytest.mark.parametrize("forged", ["{}", "[]", "1", '"x"', "null", '{"runtime":"mine","sidecarPort":1}'])
def test_a_pod_that_arrives_with_a_stamp_is_rendered_all_the_same(client: httpx.Client, forged: str) -> None:
    """The webhook is called once per CREATE, so a stamp on an incoming pod is a forgery: it used to skip
    rendering and keep the pod's own image on the accelerator node."""
    pod = apiserver_pod(DEPLOYMENT)
    pod["metadata"]["annotations"]["hearth.dev/rendered"] = forged
    pod["spec"]["containers"][0]["image"] = "attacker/miner:latest"
    answer = post(client, "/mutate/pods", admission_review(pod))
    assert answer["allowed"] and answer["patchType"] == "JSONPatch"
    rendered = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(answer["patch"])))
    assert rendered["spec"]["containers"][0]["image"].startswith("vllm/vllm-openai")
    stamp = json.loads(rendered["metadata"]["annotations"]["hearth.dev/rendered"])
    assert stamp["runtime"] == "vllm-nvidia" and stamp["sidecarPort"] == 8090


def test_request_heads_are_bounded(webhook: Webhook) -> None:
    from tests.servers import big_head, many_headers, send_head

    assert send_head(webhook.url, big_head(16 * 1024 * 1024), webhook.tls).startswith(b"HTTP/1.1 431")
    assert send_head(webhook.url, many_headers(101), webhook.tls).startswith(b"HTTP/1.1 400")
    assert httpx.get(f"{webhook.url}/healthz", verify=webhook.tls).status_code == 200


def test_a_body_that_does_not_arrive_in_time_is_a_408(webhook: Webhook) -> None:
    """The head has its timeout in the protocol; the body its own (the fixture's `--body-timeout=1s`)."""
    from tests.servers import send_part_of_a_body

    started = time.monotonic()
    assert send_part_of_a_body(webhook.url, "/mutate/pods", webhook.tls) == b"HTTP/1.1 408 Request Timeout"
    assert time.monotonic() - started < 5
    metrics = httpx.get(f"{webhook.url}/metrics", verify=webhook.tls).text
    assert 'hearth_webhook_reviews_total{endpoint="/mutate/pods",result="too_slow"} 1.0' in metrics


def test_llmservice_validation(client: httpx.Client) -> None:
    import yaml

    from tests.support import ROOT

    service = yaml.safe_load((ROOT / "examples" / "llmservice" / "qwen3-8b.yaml").read_text())
    review = admission_review(
        service, group="serving.hearth.dev", version="v1alpha1", kind="LLMService", resource="llmservices"
    )
    assert post(client, "/validate/llmservices", review)["allowed"] is True
    service["spec"]["scaling"]["scaleDownDelay"] = "soon"
    answer = post(client, "/validate/llmservices", review | {"request": review["request"] | {"object": service}})
    assert answer["allowed"] is False
    assert 'LLMService qwen3-8b: spec.scaling.scaleDownDelay is "soon"' in answer["status"]["message"]
