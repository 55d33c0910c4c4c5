"""The front door with API keys, in process (ASGI, scripted backends): who sees and calls which model,
the limits, the OpenAI shape of every refusal, the access log, and that no key leaks anywhere. Live with
Secrets, the real OpenAI SDK and a watch: tests/e2e/test_auth_live.py."""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.access import usage_of
from gateway.activator import Activator
from gateway.frontdoor import FrontDoor, create_app
from gateway.keys import KeyRing
from gateway.metrics import GatewayMetrics
from gateway.settings import FrontDoorSettings
from policies import ScaleSpec, api_key_of
from tests.gateway_fakes import ScriptedResponse, ScriptedUpstreams
from tests.test_keys import secret

KEY_A = "sk-team-a-0123456789abcdef0123"
KEY_B = "sk-team-b-0123456789abcdef0123"
ANSWER = b'{"choices":[{"message":{"content":"ok"}}],"usage":{"prompt_tokens":8,"completion_tokens":2}}'


class Door:
    def __init__(self, **annotations: str) -> None:
        self.upstreams = ScriptedUpstreams({f"http://{n}": ScriptedResponse(chunks=(ANSWER,)) for n in "abc"})
        self.registry = CollectorRegistry()
        self.metrics = GatewayMetrics(self.registry)
        self.keys = KeyRing()
        self.keys.replace(
            [
                api_key_of(secret(KEY_A, "team-a", "ci", **annotations)),
                api_key_of(secret(KEY_B, "team-b", "web")),
            ]
        )
        activator = Activator(httpx.AsyncClient(), lambda: [], self.metrics)
        self.front = FrontDoor(FrontDoorSettings(), _table(), self.upstreams, self.metrics, activator, self.keys)  # type: ignore[arg-type]
        self.front.table.upsert("team-a/chat", "Qwen/Qwen3-8B", ScaleSpec(), "2026-11-01T10:00:00Z")
        self.front.table.upsert("team-a/embedder", "bge", ScaleSpec(), "2026-11-02T10:00:00Z")
        self.front.table.upsert("team-b/chat", "chat", ScaleSpec(), "2026-11-03T10:00:00Z")
        for key, url in (("team-a/chat", "http://a"), ("team-a/embedder", "http://b"), ("team-b/chat", "http://c")):
            self.front.table.set_backends(key, {url: key.replace("/", "-")})
        self.log = io.StringIO()
        logger = logging.getLogger(f"test.access.{id(self)}")
        logger.addHandler(logging.StreamHandler(self.log))
        logger.setLevel(logging.INFO)
        logger.propagate = False
        self.app = create_app(self.front, access_log=logger)

    def calls(self, *requests: tuple[str, str, dict[str, Any]]) -> list[httpx.Response]:
        async def run() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://door") as client:
                return [await client.request(method, path, **kwargs) for method, path, kwargs in requests]

        return asyncio.run(run())

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.calls((method, path, kwargs))[0]


def _table() -> Any:
    from gateway.table import ModelTable

    return ModelTable()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


CHAT = {"messages": [{"role": "user", "content": "hi"}]}


def test_no_key_and_a_wrong_key_get_openai_401s_before_the_body_is_read() -> None:
    door = Door()
    for headers in ({}, bearer(KEY_A + "x"), {"authorization": f"Basic {KEY_A}"}):
        for method, path, kwargs in (
            ("POST", "/v1/chat/completions", {"json": {"model": "chat", **CHAT}}),
            ("GET", "/v1/models", {}),
            ("GET", "/v1/models/chat", {}),
        ):
            answer = door.call(method, path, headers=headers, **kwargs)
            assert answer.status_code == 401, (headers, path)
            assert answer.json()["error"]["code"] == "invalid_api_key"
            assert answer.headers["www-authenticate"] == "Bearer"
    assert door.upstreams.sent == []
    failures = {
        s.labels["reason"]: s.value
        for m in door.registry.collect()
        for s in m.samples
        if s.name == "hearth_gateway_auth_failures_total"
    }
    assert failures == {"missing": 6.0, "invalid": 3.0}  # Basic is not a key: missing


def test_a_key_sees_and_calls_only_its_namespace_and_others_do_not_exist_for_it() -> None:
    door = Door()
    listed = door.call("GET", "/v1/models", headers=bearer(KEY_A)).json()["data"]
    # Within its namespace a plain name is the key's own: team-b's `chat` neither answers nor contests it.
    assert [(m["id"], m["owned_by"]) for m in listed] == [("chat", "team-a"), ("embedder", "team-a")]
    assert listed[0]["created"] == 1793527200  # the Deployment's creationTimestamp, not the time of the call
    answer = door.call("POST", "/v1/chat/completions", headers=bearer(KEY_A), json={"model": "chat", **CHAT})
    assert answer.status_code == 200
    assert door.upstreams.sent[-1] == ("http://a/v1/chat/completions", {"model": "Qwen/Qwen3-8B", **CHAT})
    assert not {"authorization", "api-key"} & {h.lower() for h in door.upstreams.headers[-1]}  # stops here
    for model in ("team-b/chat", "nope"):
        refused = door.call("POST", "/v1/chat/completions", headers=bearer(KEY_A), json={"model": model, **CHAT})
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "model_not_found"
        assert "team-b" not in refused.json()["error"]["message"].replace(model, "")  # nothing of B's shown
    assert door.call("GET", "/v1/models/team-b/chat", headers=bearer(KEY_A)).status_code == 404
    b = door.call("GET", "/v1/models/chat", headers=bearer(KEY_B)).json()
    assert b["hearth"]["deployment"] == "team-b/chat" and b["id"] == "chat"
    assert door.call("GET", "/v1/models", headers={"api-key": KEY_B}).json()["data"][0]["owned_by"] == "team-b"


def test_a_key_narrowed_to_some_models_reaches_only_those() -> None:
    door = Door(**{"hearth.dev/models": "embedder"})
    assert [m["id"] for m in door.call("GET", "/v1/models", headers=bearer(KEY_A)).json()["data"]] == ["embedder"]
    refused = door.call("POST", "/v1/chat/completions", headers=bearer(KEY_A), json={"model": "chat", **CHAT})
    assert refused.status_code == 404
    embedded = door.call("POST", "/v1/embeddings", headers=bearer(KEY_A), json={"model": "embedder", "input": "x"})
    assert embedded.status_code == 200 and door.upstreams.sent[-1][0] == "http://b/v1/embeddings"


def test_a_key_over_its_rate_gets_a_429_with_retry_after() -> None:
    door = Door(**{"hearth.dev/requests-per-minute": "6"})  # one per 10 s
    body = {"json": {"model": "chat", **CHAT}, "headers": bearer(KEY_A)}
    first, second = door.calls(("POST", "/v1/chat/completions", body), ("POST", "/v1/chat/completions", body))
    assert first.status_code == 200
    assert second.status_code == 429 and second.headers["retry-after"] == "10"
    assert second.json()["error"]["code"] == "rate_limit_exceeded"
    assert (
        door.call("POST", "/v1/chat/completions", headers=bearer(KEY_B), json={"model": "chat", **CHAT}).status_code
        == 200
    )


def test_the_access_log_and_metrics_name_the_key_never_show_it() -> None:
    door = Door()
    door.call("POST", "/v1/chat/completions", headers=bearer(KEY_A), json={"model": "chat", **CHAT})
    door.call("POST", "/v1/chat/completions", headers=bearer(KEY_A + "x"), json={"model": "chat", **CHAT})
    lines = door.log.getvalue().splitlines()
    assert len(lines) == 2
    assert '"key":"team-a/ci","model":"team-a/chat"' in lines[0] and '"status":200' in lines[0]
    assert '"promptTokens":8,"completionTokens":2' in lines[0]
    assert '"status":401' in lines[1] and '"key":null' in lines[1]
    exported = generate_latest(door.registry).decode()
    assert 'hearth_gateway_key_requests_total{code="200",key="team-a/ci"} 1.0' in exported
    assert 'hearth_gateway_key_tokens_total{key="team-a/ci",kind="completion"} 2.0' in exported
    for text in (door.log.getvalue(), exported):
        assert KEY_A not in text and KEY_A[:12] not in text


def test_unknown_routes_and_methods_answer_in_openai_shape() -> None:
    door = Door()
    for method, path, status, code in (
        ("GET", "/v1/nothing", 404, "unknown_url"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("DELETE", "/v1/models", 405, "method_not_allowed"),
    ):
        answer = door.call(method, path, headers=bearer(KEY_A))
        assert answer.status_code == status and answer.json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("tail", "usage"),
    [
        (ANSWER, (8, 2)),
        (
            b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7}}\n\ndata: [DONE]\n\n',
            (5, 7),
        ),
        (b'data: {"usage": null}\n\n', None),
        (b'{"usage": {"prompt_tokens": 3}}', (3, 0)),  # embeddings report no completion tokens
        (b'"usage":{"prompt_tok', None),
        (b"no usage here", None),
    ],
)
def test_usage_is_read_from_an_answers_tail(tail: bytes, usage: tuple[int, int] | None) -> None:
    assert usage_of(tail) == usage


def test_usage_is_read_from_the_last_report_of_a_stream_split_across_reads() -> None:
    """The relay keeps only references to an answer's last reads; a stream's final usage report split
    between two of them, after earlier reports and many other reads, is the one counted."""
    door = Door()
    chunks = (
        b'data: {"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n',
        *(b"data: {}\n\n",) * 50,
        b'data: {"choices":[],"usage":{"prompt_tokens":8,',
        b'"completion_tokens":5}}\n\n',
        b"data: [DONE]\n\n",
    )
    door.upstreams.scripts["http://a"] = ScriptedResponse(headers={"content-type": "text/event-stream"}, chunks=chunks)
    answer = door.call(
        "POST", "/v1/chat/completions", headers=bearer(KEY_A), json={"model": "chat", "stream": True, **CHAT}
    )
    assert answer.status_code == 200 and answer.content.endswith(b"data: [DONE]\n\n")
    assert '"promptTokens":8,"completionTokens":5' in door.log.getvalue()


def test_another_namespace_storing_a_leaked_key_does_not_take_its_calls_over() -> None:
    """The newest Secret used to win: team-b stored team-a's key in a Secret of its own and every call made
    with it reached team-b's models (and was counted and limited as team-b's). The older Secret keeps it."""
    door = Door()
    mine: Any = secret(KEY_A, "team-a", "ci")
    theirs: Any = secret(KEY_A, "team-b", "stolen")
    mine["metadata"]["creationTimestamp"] = "2026-11-01T10:00:00Z"
    theirs["metadata"]["creationTimestamp"] = "2026-12-01T10:00:00Z"
    door.keys.replace([api_key_of(theirs), api_key_of(mine), api_key_of(secret(KEY_B, "team-b", "web"))])
    assert door.keys.duplicates == {"team-b/stolen": "team-a/ci"}
    bearer = {"Authorization": f"Bearer {KEY_A}"}
    models = door.call("GET", "/v1/models", headers=bearer).json()["data"]
    assert {m["hearth"]["deployment"] for m in models} == {"team-a/chat", "team-a/embedder"}
    body = {"model": "team-b/chat", "messages": [{"role": "user", "content": "hi"}]}
    assert door.call("POST", "/v1/chat/completions", headers=bearer, json=body).status_code == 404


def test_two_credentials_in_one_request_are_refused_not_judged_by_the_first() -> None:
    door = Door()
    body = {"model": "team-a/chat", "messages": [{"role": "user", "content": "hi"}]}
    twice = [("Authorization", f"Bearer {KEY_A}"), ("Authorization", f"Bearer {KEY_B}")]
    both = [("Authorization", f"Bearer {KEY_A}"), ("api-key", KEY_B)]
    for headers in (twice, both):
        answer = door.call("POST", "/v1/chat/completions", headers=headers, json=body)
        assert answer.status_code == 401, headers
        assert answer.json()["error"]["message"].startswith("More than one credential provided"), answer.text
    assert door.call("POST", "/v1/chat/completions", headers=twice[:1], json=body).status_code == 200
