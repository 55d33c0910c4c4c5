"""API keys owned by namespaces: what a key Secret says, read from the Secret. No I/O.

A namespace's admin creates a Secret labelled `hearth.dev/api-key: "true"` in the namespace whose models
the key may call. Its `key` entry is the key; annotations, optional, narrow it:

    hearth.dev/models: "qwen3-8b,embedder"    only these Deployments of the namespace (default: all)
    hearth.dev/requests-per-minute: "600"      a rate (enforced per second: bursts of rpm/60, at least 1)
    hearth.dev/max-concurrent: "8"            requests held or in flight at once (streams included)

The front door keeps only a SHA-256 digest of the key: the key itself is never stored, logged or exported.
A key is named `namespace/secret-name` in metrics, logs and errors.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from policies.annotations import PREFIX
from policies.errors import ContractError, Problem

KEY_LABEL = f"{PREFIX}api-key"
KEY_ENTRY = "key"
MODELS = f"{PREFIX}models"
REQUESTS_PER_MINUTE = f"{PREFIX}requests-per-minute"
MAX_CONCURRENT = f"{PREFIX}max-concurrent"
MIN_KEY_LENGTH = 20  # shorter keys can be guessed; `openssl rand -hex 24` gives 48
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class ApiKey:
    name: str  # namespace/secret-name: how logs and metrics name the key
    namespace: str  # the only namespace whose models it reaches
    digest: bytes  # SHA-256 of the key
    models: frozenset[str] | None = None  # Deployment names it may call (None: all of the namespace's)
    requests_per_minute: int | None = None
    max_concurrent: int | None = None
    created: str = ""  # the Secret's creationTimestamp: of two Secrets holding one key, the older keeps it

    def may_call(self, namespace: str, deployment: str) -> bool:
        return namespace == self.namespace and (self.models is None or deployment in self.models)


def digest(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    return hashlib.sha256(raw.strip()).digest()


def api_key_of(secret: Mapping[str, Any]) -> ApiKey:
    """The key a labelled Secret holds; ContractError naming the Secret and the fix when it is unusable."""
    meta = secret.get("metadata") or {}
    namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
    where = f"Secret {namespace}/{name}"
    annotations = meta.get("annotations") or {}
    problems: list[Problem] = []
    raw = _entry(secret, where, problems)
    if raw is not None and len(raw.strip()) < MIN_KEY_LENGTH:
        problems.append(
            Problem(
                f"{where} data.{KEY_ENTRY}",
                None,
                f"a key of at least {MIN_KEY_LENGTH} characters",
                "generate one, e.g. `openssl rand -hex 24`",
            )
        )
    models = _models(annotations.get(MODELS), where, problems)
    rpm = _positive(annotations, REQUESTS_PER_MINUTE, where, problems)
    concurrent = _positive(annotations, MAX_CONCURRENT, where, problems)
    if problems or raw is None:
        raise ContractError(problems)
    created = str(meta.get("creationTimestamp") or "")
    return ApiKey(f"{namespace}/{name}", namespace, digest(raw), models, rpm, concurrent, created)


def unique_keys(keys: list[ApiKey]) -> tuple[dict[bytes, ApiKey], dict[str, str]]:
    """The keys by digest, one Secret per key: when several Secrets hold the same key (another namespace
    stored a leaked key of yours in a Secret of its own), the oldest keeps it and the others are refused,
    never re-scoped to the newest. Returns the kept keys and, for each refused Secret, the one that kept it."""
    kept: dict[bytes, ApiKey] = {}
    for key in sorted(keys, key=lambda k: (k.created or "~", k.name)):  # no timestamp (a file): last
        kept.setdefault(key.digest, key)
    refused = {key.name: kept[key.digest].name for key in keys if kept[key.digest].name != key.name}
    return kept, refused


def _entry(secret: Mapping[str, Any], where: str, problems: list[Problem]) -> bytes | None:
    data = secret.get("data") or {}
    string_data = secret.get("stringData") or {}  # only in manifests; the apiserver turns it into data
    if isinstance(string_data, Mapping) and isinstance(string_data.get(KEY_ENTRY), str):
        return str(string_data[KEY_ENTRY]).encode()
    encoded = data.get(KEY_ENTRY) if isinstance(data, Mapping) else None
    if not isinstance(encoded, str):
        problems.append(
            Problem(
                f"{where} data.{KEY_ENTRY}",
                None,
                "the key, under the entry `key`",
                f"kubectl create secret generic NAME --from-literal={KEY_ENTRY}=$(openssl rand -hex 24)",
            )
        )
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        problems.append(Problem(f"{where} data.{KEY_ENTRY}", None, "base64", "set it with stringData or kubectl"))
        return None


def _models(value: object, where: str, problems: list[Problem]) -> frozenset[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    bad = [n for n in names if not _NAME.match(n)]
    if not names or bad:
        problems.append(
            Problem(
                f"{where} annotation {MODELS}",
                str(value),
                "comma-separated Deployment names of the Secret's namespace",
                "list the Deployments, e.g. qwen3-8b,embedder; remove the annotation to allow all",
            )
        )
        return None
    return frozenset(names)


def _positive(annotations: Mapping[str, Any], key: str, where: str, problems: list[Problem]) -> int | None:
    value = annotations.get(key)
    if value is None:
        return None
    text = str(value).strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    problems.append(Problem(f"{where} annotation {key}", str(value), "a whole number above 0", "e.g. 600"))
    return None
