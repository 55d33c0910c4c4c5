"""Who owns a plain model name. Clients may call a model by `namespace/name` always, and by its plain
name (the Deployment's name, or its `hearth.dev/served-name`) when no other model claims the same one.
When several do, the name stays with the model that held it first: a name that resolved yesterday keeps
resolving to the same model, whatever another tenant creates, renames or opts in today, and a newcomer
is reached as `namespace/name` (and told so when it is applied).

The claims are a record, not a rule computed afresh: ranking by creation time alone would hand a name to
an old Deployment that opts in, or renames its served name, today. The scaler's leader keeps the record
(a ConfigMap in Hearth's namespace that tenants cannot write); a name nobody has recorded yet goes to
the oldest claimant by creation time, then by key."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from policies.objects import model_key_of, served_names_of

NAMES_CONFIGMAP = "hearth-model-names"
NAMES_KEY = "names.json"
NAMES_LABEL = "hearth.dev/model-names"


@dataclass(frozen=True)
class Claimant:
    key: str  # namespace/name
    names: frozenset[str]  # the plain names it answers to
    created: str  # RFC 3339 creation time (sorts as text); "" when unknown


def claimant_of(deployment: Mapping[str, Any]) -> Claimant:
    meta = deployment.get("metadata") or {}
    names = frozenset({str(meta.get("name", "")), *served_names_of(deployment)} - {""})
    return Claimant(model_key_of(deployment), names, str(meta.get("creationTimestamp") or ""))


def _seniority(claimant: Claimant) -> tuple[str, str]:
    """The order in which unrecorded names are given out: oldest first, then by key."""
    return claimant.created, claimant.key


def assign_names(recorded: Mapping[str, str], claimants: Iterable[Claimant]) -> dict[str, str]:
    """The record after this change: every recorded name whose owner still claims it stays; every other
    name claimed goes to its oldest claimant (creation time, then key)."""
    by_key = {c.key: c for c in claimants}
    names = {name: key for name, key in recorded.items() if key in by_key and name in by_key[key].names}
    for claimant in sorted(by_key.values(), key=_seniority):
        for name in sorted(claimant.names):
            names.setdefault(name, claimant.key)
    return names


def owner(name: str, candidates: Iterable[Claimant], recorded: Mapping[str, str]) -> Claimant | None:
    """Which of `candidates` (the models that answer to `name`) a plain `name` reaches."""
    ranked = sorted(candidates, key=_seniority)
    holder = recorded.get(name)
    return next((c for c in ranked if c.key == holder), ranked[0] if ranked else None)


def squatting_warnings(claimant: Claimant, recorded: Mapping[str, str]) -> list[str]:
    """What a Deployment is told at apply time about names another model holds."""
    return [
        f"the model name {name!r} is already served by {holder}; clients reach this model as {claimant.key} "
        f"(or as {name!r} with an API key of its namespace)"
        for name in sorted(claimant.names)
        if (holder := recorded.get(name)) is not None and holder != claimant.key
    ]


def names_of_configmap(configmap: Mapping[str, Any]) -> dict[str, str]:
    """The record in the ConfigMap (ValueError when it is not one)."""
    data = configmap.get("data") or {}
    text = data.get(NAMES_KEY, "{}") if isinstance(data, Mapping) else None
    if not isinstance(text, str):
        raise ValueError(f"{NAMES_KEY} is missing or not text")
    names = json.loads(text)  # a JSONDecodeError is a ValueError
    if not isinstance(names, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise ValueError(f"{NAMES_KEY} is not an object of names to namespace/name")
    return names


def names_configmap(namespace: str, names: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAMES_CONFIGMAP,
            "namespace": namespace,
            "labels": {NAMES_LABEL: "true", "app.kubernetes.io/part-of": "hearth"},
        },
        "data": {NAMES_KEY: json.dumps(dict(sorted(names.items())), indent=0)},
    }
