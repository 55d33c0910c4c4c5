"""Where a model's weights come from: the `hearth.dev/model` URI and what it means for the pod."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

from policies.errors import Collector
from policies.values import is_dns_subdomain

SCHEMES = ("hf://", "huggingface://", "modelscope://", "pvc://", "s3://")
CACHE_DIR = "/var/cache/hearth"
PVC_MOUNT = "/mnt/models"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/=+-]*$")


@dataclass(frozen=True)
class ModelSource:
    uri: str
    kind: str  # huggingface | modelscope | pvc | s3
    path: str  # what the runtime is told to load
    env: dict[str, str] = field(default_factory=dict)
    claim: str | None = None  # pvc:// only
    needs_cache: bool = False  # hub downloads go to an emptyDir cache


def parse_model_uri(errors: Collector, where: str, raw: str) -> ModelSource | None:
    uri = raw.strip()
    scheme, sep, rest = uri.partition("://")
    if not sep or f"{scheme}://" not in SCHEMES:
        errors.add(
            where,
            raw,
            "must be a model URI starting with " + ", ".join(SCHEMES),
            'write e.g. "hf://Qwen/Qwen3-8B" or "pvc://models/qwen3-8b"',
        )
        return None
    if scheme in ("hf", "huggingface"):
        return _hub(errors, where, raw, rest, "huggingface", {"HF_HOME": f"{CACHE_DIR}/huggingface"})
    if scheme == "modelscope":
        env = {"VLLM_USE_MODELSCOPE": "true", "MODELSCOPE_CACHE": f"{CACHE_DIR}/modelscope"}
        return _hub(errors, where, raw, rest, "modelscope", env)
    if scheme == "pvc":
        return _pvc(errors, where, raw, rest)
    return _s3(errors, where, raw, rest)


def _hub(errors: Collector, where: str, raw: str, rest: str, kind: str, env: dict[str, str]) -> ModelSource | None:
    if not _HUB_ID.fullmatch(rest):
        errors.add(
            where,
            raw,
            f"a {kind} model is named ORGANISATION/MODEL (letters, digits, '.', '_', '-')",
            f'write e.g. "{raw.partition("://")[0]}://Qwen/Qwen3-8B"',
        )
        return None
    return ModelSource(uri=raw.strip(), kind=kind, path=rest, env=env, needs_cache=True)


def _pvc(errors: Collector, where: str, raw: str, rest: str) -> ModelSource | None:
    claim, _, sub = rest.partition("/")
    if not is_dns_subdomain(claim):
        errors.add(
            where,
            raw,
            "pvc:// takes a PersistentVolumeClaim name (lower-case DNS name) and an optional sub-path",
            'write e.g. "pvc://models/qwen3-8b"',
        )
        return None
    sub = sub.strip("/")
    if not _safe_relative(sub):
        errors.add(
            where,
            raw,
            "the sub-path after the claim must be a plain relative path (no '..', no spaces)",
            'write e.g. "pvc://models/qwen/qwen3-8b"',
        )
        return None
    path = posixpath.join(PVC_MOUNT, sub) if sub else PVC_MOUNT
    return ModelSource(uri=raw.strip(), kind="pvc", path=path, claim=claim)


def _s3(errors: Collector, where: str, raw: str, rest: str) -> ModelSource | None:
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or not _safe_relative(prefix.strip("/")):
        errors.add(
            where,
            raw,
            "s3:// takes a bucket name (3-63 lower-case letters, digits, '.', '-') and an optional prefix",
            'write e.g. "s3://models/qwen3-8b"',
        )
        return None
    return ModelSource(uri=raw.strip(), kind="s3", path=raw.strip())


def _safe_relative(path: str) -> bool:
    if not _SAFE_PATH.fullmatch(path):
        return False
    return all(part not in ("..", ".") for part in path.split("/") if part) and "//" not in path
