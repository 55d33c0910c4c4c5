"""The rendered stamp: what the webhook writes on every pod it renders (`hearth.dev/rendered`), and what the
front door and the scaler read back from it. One model, written by `render` and parsed, validated, by
everyone else: a pod whose stamp does not parse is malformed and is skipped, never trusted halfway."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.annotations import RENDERED

MAX_STAMP_BYTES = 4096  # a stamp is a few hundred bytes; anything far bigger was not written by Hearth


class MalformedStamp(ValueError):
    """A pod carries a `hearth.dev/rendered` annotation that is not a stamp Hearth wrote."""


class Stamp(BaseModel):
    """Which runtime rendered the pod (name and version stamp), the name the model is served as, and the
    ports of the sidecar (where the front door and the scaler reach the pod) and of the runtime."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    runtime: str = Field(min_length=1, max_length=253)
    stamp: str = Field(min_length=1, max_length=128)
    served_name: str = Field(alias="servedName", min_length=1, max_length=253)
    sidecar_port: int = Field(alias="sidecarPort", ge=1, le=65535)
    runtime_port: int = Field(alias="runtimePort", ge=1, le=65535)

    def annotation(self) -> str:
        """The annotation's value: compact JSON with sorted keys (one pod, one byte-identical stamp)."""
        return json.dumps(self.model_dump(by_alias=True), sort_keys=True, separators=(",", ":"))


def parse_stamp(text: str) -> Stamp:
    """The stamp in an annotation's value, or MalformedStamp saying what is wrong with it."""
    if len(text) > MAX_STAMP_BYTES:
        raise MalformedStamp(f"{RENDERED} is {len(text)} bytes long; a stamp is at most {MAX_STAMP_BYTES}")
    try:
        return Stamp.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "the value"
        raise MalformedStamp(f"{RENDERED} is not a stamp Hearth wrote: {where}: {first.get('msg')}") from None


def stamp_of(pod: Mapping[str, Any]) -> Stamp | None:
    """The pod's stamp; None when the pod was not rendered; MalformedStamp when its stamp is forged or broken."""
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
    if not isinstance(annotations, Mapping) or RENDERED not in annotations:
        return None
    value = annotations[RENDERED]
    if not isinstance(value, str):
        raise MalformedStamp(f"{RENDERED} is not a string")
    return parse_stamp(value)
