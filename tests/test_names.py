"""Who holds a contested plain model name (policies.names), the scaler's record of it, and the warning a
newcomer gets at apply time."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.kubeapi import ApiError
from policies import Claimant, RenderSettings, assign_names, claimant_of, names_configmap, owner
from scaler.names import NameRecord
from tests.support import ROOT, admission_review, load_case
from webhook.admission import check_deployment

DEPLOYMENT, RUNTIMES = load_case(ROOT / "tests" / "golden" / "nvidia-hf.yaml")
names = st.sampled_from(["chat", "qwen", "Qwen/Qwen3-8B", "llama"])
claimants = st.lists(
    st.builds(
        Claimant,
        key=st.sampled_from([f"{ns}/{n}" for ns in ("a", "b", "c") for n in ("chat", "qwen", "m")]),
        names=st.frozensets(names, min_size=1, max_size=3),
        created=st.sampled_from(["2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", ""]),
    ),
    max_size=6,
    unique_by=lambda c: c.key,
)


@given(claimants, claimants)
def test_a_recorded_name_stays_with_its_holder_whatever_others_do(before: list[Claimant], new: list[Claimant]) -> None:
    recorded = assign_names({}, before)
    holders = {c.key: c for c in before}
    # Newcomers arrive (older ones too, as an old Deployment that opts in); the holders stay as they are.
    after = assign_names(recorded, [*before, *(c for c in new if c.key not in holders)])
    assert all(after[name] == key for name, key in recorded.items())


@given(claimants)
def test_every_claimed_name_has_one_holder_among_its_claimants(everyone: list[Claimant]) -> None:
    recorded = assign_names({}, everyone)
    for name, key in recorded.items():
        claiming = [c for c in everyone if name in c.names]
        assert key in {c.key for c in claiming}
        assert owner(name, claiming, recorded) == next(c for c in claiming if c.key == key)
    assert set(recorded) == {name for c in everyone for name in c.names}


def test_a_holder_that_goes_or_drops_the_name_frees_it_for_the_oldest_claimant() -> None:
    a = Claimant("a/chat", frozenset({"chat"}), "2026-01-02T00:00:00Z")
    b = Claimant("b/chat", frozenset({"chat"}), "2025-01-01T00:00:00Z")
    recorded = {"chat": "a/chat"}
    assert assign_names(recorded, [a, b]) == {"chat": "a/chat"}
    assert assign_names(recorded, [b]) == {"chat": "b/chat"}
    renamed = Claimant("a/chat", frozenset({"other"}), a.created)
    assert assign_names(recorded, [renamed, b]) == {"chat": "b/chat", "other": "a/chat"}


def deployment(namespace: str, name: str, served: str | None = None, created: str = "") -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"annotations": {"hearth.dev/served-name": served} if served else {}}}
    meta = {"name": name, "namespace": namespace, "creationTimestamp": created}
    return {"metadata": meta, "spec": {"template": template}}


def test_a_deployment_claims_its_name_and_its_served_name() -> None:
    claimant = claimant_of(deployment("a", "chat", "Qwen/Qwen3-8B", "2026-01-01T00:00:00Z"))
    assert claimant == Claimant("a/chat", frozenset({"chat", "Qwen/Qwen3-8B"}), "2026-01-01T00:00:00Z")


class ConfigMaps:
    """An in-memory apiserver for one ConfigMap: resourceVersions, 404 and 409 as the real one answers."""

    def __init__(self) -> None:
        self.stored: dict[str, Any] | None = None
        self.writes = 0

    async def get(self, path: str) -> dict[str, Any]:
        if self.stored is None:
            raise ApiError(404, "not found")
        copied: dict[str, Any] = json.loads(json.dumps(self.stored))
        return copied

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.stored is not None:
            raise ApiError(409, "already exists")
        return self._save(body, 1)

    async def put(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert self.stored is not None
        if body["metadata"]["resourceVersion"] != self.stored["metadata"]["resourceVersion"]:
            raise ApiError(409, "conflict")
        return self._save(body, int(self.stored["metadata"]["resourceVersion"]) + 1)

    def _save(self, body: dict[str, Any], version: int) -> dict[str, Any]:
        self.writes += 1
        self.stored = {**body, "metadata": {**body["metadata"], "resourceVersion": str(version)}}
        return self.stored

    def names(self) -> dict[str, str]:
        assert self.stored is not None
        recorded: dict[str, str] = json.loads(self.stored["data"]["names.json"])
        return recorded


def test_the_leader_records_names_and_keeps_them_across_a_new_leader() -> None:
    api = ConfigMaps()
    old = deployment("a", "chat", created="2026-01-02T00:00:00Z")
    record = NameRecord(api, "hearth-system")  # type: ignore[arg-type]
    asyncio.run(record.sync([old]))
    assert api.names() == {"chat": "a/chat"}
    asyncio.run(record.sync([old]))
    assert api.writes == 1  # nothing changed, nothing written
    # A new leader reads the record: an older Deployment that opts in later does not take the name.
    newcomer = deployment("b", "chat", "bee", created="2020-01-01T00:00:00Z")
    asyncio.run(NameRecord(api, "hearth-system").sync([old, newcomer]))  # type: ignore[arg-type]
    assert api.names() == {"chat": "a/chat", "bee": "b/chat"}
    # The first leader's copy is stale now: its write conflicts, and it reads again on the next tick.
    with pytest.raises(ApiError) as conflict:
        asyncio.run(record.sync([old, deployment("c", "llama")]))
    assert conflict.value.status == 409
    asyncio.run(record.sync([old, deployment("c", "llama")]))
    assert api.names() == {"chat": "a/chat", "llama": "c/llama"}


def test_a_broken_record_is_rebuilt_by_creation_time() -> None:
    api = ConfigMaps()
    api.stored = {**names_configmap("hearth-system", {}), "data": {"names.json": "[1]"}}
    api.stored["metadata"]["resourceVersion"] = "7"
    record = NameRecord(api, "hearth-system")  # type: ignore[arg-type]
    asyncio.run(record.sync([deployment("b", "chat", created="2026-01-02T00:00:00Z")]))
    assert api.names() == {"chat": "b/chat"}


def test_a_newcomer_is_warned_at_apply_time_how_its_clients_reach_it() -> None:
    opted_in = copy.deepcopy(DEPLOYMENT)
    opted_in["metadata"]["namespace"] = "team-b"
    name = opted_in["metadata"]["name"]
    request = admission_review(opted_in, group="apps", kind="Deployment", resource="deployments")["request"]
    answer = check_deployment(request, RUNTIMES, RenderSettings(), {name: f"team-a/{name}"})["response"]
    assert answer["allowed"]
    expected = (
        f"the model name {name!r} is already served by team-a/{name}; clients reach this model as team-b/{name} "
        f"(or as {name!r} with an API key of its namespace)"
    )
    assert expected in answer["warnings"]
    mine = check_deployment(request, RUNTIMES, RenderSettings(), {name: f"team-b/{name}"})["response"]
    assert not any("already served" in w for w in mine.get("warnings", []))
