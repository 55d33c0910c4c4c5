"""`kubectl explain inferenceruntime.spec` explains every field: the CRD's descriptions are the validator's
(policies.runtime, one description per field, beside its rules), copied into the CRD by this test when
HEARTH_UPDATE_GOLDEN=1 is set, and compared otherwise, so the two cannot drift."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from policies.runtime import RuntimeSpec, field_descriptions
from tests.support import ROOT

CRD = ROOT / "manifests" / "crd-inferenceruntime.yaml"
TOP = {  # the object's own fields, as Kubernetes describes them for every kind
    "apiVersion": "APIVersion defines the versioned schema of this representation of an object.",
    "kind": "Kind is a string value representing the REST resource this object represents.",
    "spec": " ".join((RuntimeSpec.__doc__ or "").split()),
}


def expected() -> dict[str, str]:
    return {**TOP, **field_descriptions()}


def properties(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of a structural schema, by path (`[]` for the items of an array)."""
    for name, node in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield path, node
        yield from properties(node, path)
        if "items" in node:
            yield from properties(node["items"], path + "[]")


def test_every_crd_field_is_described_as_the_validator_describes_it() -> None:
    if os.environ.get("HEARTH_UPDATE_GOLDEN"):
        write_descriptions()
    (version,) = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    schema = version["schema"]["openAPIV3Schema"]
    # metadata is the one property the apiserver forbids describing (it allows only its type there)
    found = {path: node.get("description") for path, node in properties(schema) if path != "metadata"}
    assert found == expected(), "run HEARTH_UPDATE_GOLDEN=1 pytest tests/test_crd_descriptions.py"
    assert all(found.values())


def write_descriptions() -> None:
    """The CRD with each property's description set from the validator (comments and layout kept)."""
    rt = YAML()
    rt.width = 4096  # no folding: the CEL rule and the descriptions stay on their lines
    rt.preserve_quotes = True
    document = rt.load(CRD.read_text())
    schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    wanted = expected()
    for path, node in properties(schema):
        if path in wanted and node.get("description") != wanted[path]:
            assert isinstance(node, CommentedMap)
            node.fa.set_block_style()  # a field with a description reads better as a block
            node["description"] = wanted[path]
    with CRD.open("w") as out:
        rt.dump(document, out)
