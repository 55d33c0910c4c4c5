"""`hearth adopt`: the same manifest with only Hearth's label and annotations added, its comments, order
and formatting kept (a GitOps repo gets a diff of those lines alone, in the spirit of `linkerd inject`),
and the warnings the webhook would give.

Without --model the Deployment is adopted in keep mode (its server runs as written); the served name is
then read off the server's command line when it differs from the Deployment's name, since the front door
must ask the server for the name it reports."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from policies import (
    CONTAINER_KEY,
    ENABLED_LABEL,
    PREFIX,
    TEMPLATE_WHERE,
    ContractError,
    InferenceRuntime,
    accelerator_resources,
    model_container,
    reported_name,
    validate_deployment,
)


def _block_end(lines: list[str], line: int, col: int) -> int:
    """The last line of the block that starts with a key at (`line`, `col`): the lines after it that are
    deeper, or list items at its column, up to the next line that is not (trailing blanks and comments
    excluded)."""
    last = line
    for index in range(line + 1, len(lines)):
        text = lines[index]
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(text) - len(text.lstrip(" "))
        if stripped in ("---", "...") or indent < col or (indent == col and not stripped.startswith("- ")):
            break
        last = index
    return last


class Edits:
    """Lines to add to a YAML text, each after a given line (0-based), or a line's text to replace: applied
    bottom up so that earlier positions stay right."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.after: dict[int, list[str]] = {}
        self.replaced: dict[int, str] = {}

    def insert(self, after: int, *new: str) -> None:
        self.after.setdefault(after, []).extend(new)

    def apply(self) -> str:
        out = list(self.lines)
        for index, text in self.replaced.items():
            out[index] = text
        for index in sorted(self.after, reverse=True):
            out[index + 1 : index + 1] = self.after[index]
        return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _put_keys(edits: Edits, owner: Any, field: str, values: Mapping[str, str], step: int) -> None:
    """Sets `values` in the mapping `owner[field]` (labels or annotations) by adding lines: into a block
    mapping at its keys' column, into a one-line flow mapping before its `}`, or as a new `field:` block
    after the owner's last key. A key already there with another value has its line rewritten."""
    lines = edits.lines
    current: Any = owner.get(field)
    todo = {k: v for k, v in values.items() if not (isinstance(current, Mapping) and current.get(k) == v)}
    if not todo:
        return
    if isinstance(current, CommentedMap) and current:
        for key in [k for k in todo if k in current]:  # there with another value: that line only
            line, col = current.lc.key(key)
            edits.replaced[line] = f"{' ' * col}{key}: {_quoted(todo.pop(key))}"
        if not todo:
            return
        if current.fa.flow_style():
            line = current.lc.line
            text = lines[line].rstrip("\n")
            close = text.rfind("}")
            if close < 0:
                raise ValueError(f"line {line + 1}: a {field} map written over several lines; add the keys by hand")
            added = ", ".join(f"{k}: {_quoted(v)}" for k, v in todo.items())
            edits.replaced[line] = f"{text[:close].rstrip()}, {added}{text[close:]}"
            return
        col = current.lc.key(next(iter(current)))[1]
        last_key = list(current)[-1]
        end = _block_end(lines, current.lc.key(last_key)[0], col)
        edits.insert(end, *(f"{' ' * col}{k}: {_quoted(v)}" for k, v in todo.items()))
        return
    keys = list(owner)
    col = owner.lc.key(keys[0])[1]
    end = _block_end(lines, owner.lc.key(keys[-1])[0], col)
    if field in owner:  # `labels: {}` or `labels:` with nothing: that line is replaced
        end = owner.lc.key(field)[0]
        edits.replaced[end] = f"{' ' * col}{field}:"
    else:
        edits.insert(end, f"{' ' * col}{field}:")
    edits.insert(end, *(f"{' ' * (col + step)}{k}: {_quoted(v)}" for k, v in todo.items()))


def _step(doc: Any) -> int:
    """The file's mapping indentation, read where it shows: metadata's keys under `metadata:`."""
    meta = doc.get("metadata")
    return max(2, meta.lc.key(next(iter(meta)))[1] - doc.lc.key("metadata")[1]) if meta else 2


def _pod_keys(doc: Any, pod_keys: Mapping[str, str], runtimes: Sequence[InferenceRuntime]) -> dict[str, str]:
    """The template annotations to add: `pod_keys`, and in keep mode the served name the server's command
    line reports, when it is not the Deployment's name."""
    wanted = dict(pod_keys)
    if PREFIX + "model" in wanted or PREFIX + "served-name" in wanted:
        return wanted
    template = (doc.get("spec") or {}).get("template") or {}
    containers = [c for c in (template.get("spec") or {}).get("containers") or [] if isinstance(c, Mapping)]
    try:
        name = model_container(containers, wanted.get(CONTAINER_KEY), accelerator_resources(runtimes), TEMPLATE_WHERE)
    except ContractError:
        return wanted  # the validator says why
    reported = reported_name(next(c for c in containers if c.get("name") == name))
    deployment = str((doc.get("metadata") or {}).get("name") or "")
    if reported and reported != deployment:
        wanted[PREFIX + "served-name"] = f"{reported},{deployment}"
    return wanted


def adopt_text(text: str, pod_keys: Mapping[str, str], runtimes: Sequence[InferenceRuntime]) -> tuple[str, list[str]]:
    """Every Deployment of a YAML stream adopted by adding lines (and extending one-line flow maps); every
    other line as it was. Returns the text and the webhook's warnings for the adopted Deployments."""
    docs = list(YAML().load_all(text))
    edits = Edits(text.splitlines(keepends=True))
    warnings: list[str] = []
    adopted = 0
    for doc in docs:
        if not isinstance(doc, Mapping) or doc.get("kind") != "Deployment":
            continue
        meta, template_meta = doc.get("metadata"), ((doc.get("spec") or {}).get("template") or {}).get("metadata")
        if not isinstance(meta, Mapping) or not meta or not isinstance(template_meta, Mapping) or not template_meta:
            raise ValueError("a Deployment without metadata or template metadata; add them by hand")
        step = _step(doc)
        wanted = _pod_keys(doc, pod_keys, runtimes)
        _put_keys(edits, meta, "labels", {ENABLED_LABEL: "true"}, step)
        _put_keys(edits, template_meta, "labels", {ENABLED_LABEL: "true"}, step)
        if wanted:
            _put_keys(edits, template_meta, "annotations", wanted, step)
        adopted += 1
    if not adopted:
        raise ValueError("the file holds no Deployment")
    result = edits.apply()
    for doc in YAML(typ="safe").load_all(result):  # what the webhook will see
        if isinstance(doc, Mapping) and doc.get("kind") == "Deployment":
            warnings.extend(validate_deployment(doc, runtimes or None).warnings)
    return result, warnings


def run(
    path: Path,
    pod_keys: Mapping[str, str],
    runtimes: Sequence[InferenceRuntime],
    in_place: bool,
    out: TextIO = sys.stdout,
) -> int:
    try:
        text, warnings = adopt_text(path.read_text(), pod_keys, runtimes)
    except ContractError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (OSError, YAMLError, ValueError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"Warning: {warning}", file=sys.stderr)
    if in_place:
        path.write_text(text)
    else:
        out.write(text)
    return 0
