"""Write the CA bundle into webhook configurations: manifest files, and live objects with a kubeconfig."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def with_ca_bundle(docs: Iterable[Any], ca_pem: bytes) -> list[Any]:
    """Every webhook of every webhook configuration in `docs` gets clientConfig.caBundle; the rest is kept."""
    bundle = base64.b64encode(ca_pem).decode()
    out = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") in WEBHOOK_KINDS:
            for hook in doc.get("webhooks") or []:
                hook.setdefault("clientConfig", {})["caBundle"] = bundle
        out.append(doc)
    return out


def patch_file(path: Path, ca_pem: bytes) -> int:
    """Write the caBundle into every webhook of the file's webhook configurations, editing only those
    values: comments, order, quoting and every other document stay as they are. Returns how many
    configurations were patched."""
    text, patched = patch_text(path.read_text(), ca_pem)
    path.write_text(text)
    return patched


def patch_text(text: str, ca_pem: bytes) -> tuple[str, int]:
    """`text` with each webhook's clientConfig.caBundle set (replaced in place, or added as the first key of
    its clientConfig, in the block or flow style the map is written in), and how many configurations."""
    bundle = base64.b64encode(ca_pem).decode()
    lines = text.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line, start column, end column or -1 to insert), text
    patched = 0
    for doc in YAML(typ="rt").load_all(text):
        if not isinstance(doc, CommentedMap) or doc.get("kind") not in WEBHOOK_KINDS:
            continue
        patched += 1
        for hook in doc.get("webhooks") or []:
            config = hook.get("clientConfig") if isinstance(hook, CommentedMap) else None
            if not isinstance(config, CommentedMap) or not config:
                raise ValueError(f"webhook {hook.get('name')!r} has no clientConfig to put the caBundle in")
            if "caBundle" in config:
                line, col = config.lc.value("caBundle")
                value = str(config["caBundle"])
                quote = 1 if lines[line][col : col + 1] in ("'", '"') else 0  # base64 needs no escapes
                if lines[line][col + quote : col + quote + len(value)] != value:
                    raise ValueError(
                        f"the caBundle of webhook {hook.get('name')!r} spans several lines (line {line + 1}); "
                        "write it on one line, or remove it, and run this again"
                    )
                edits.append((line, col, col + len(value) + 2 * quote, bundle))
            elif config.fa.flow_style():
                edits.append((config.lc.line, config.lc.col + 1, -1, f"caBundle: {bundle}, "))
            else:
                line, col = config.lc.key(next(iter(config)))
                edits.append((line, 0, -1, " " * col + f"caBundle: {bundle}\n"))
    for line, start, end, new in sorted(edits, reverse=True):
        current = lines[line]
        lines[line] = current[:start] + new + (current[start:] if end < 0 else current[end:])
    return "".join(lines), patched


def patch_live(kubeconfig: str | None, ca_pem: bytes, names: Iterable[str] = ("hearth",)) -> list[str]:
    """Patch the caBundle of the named live webhook configurations; returns what was patched."""
    from kubernetes import client, config

    api = client.AdmissionregistrationV1Api(config.new_client_from_config(kubeconfig))
    bundle = base64.b64encode(ca_pem).decode()
    done = []
    for name in names:
        for read, patch, kind in (
            (api.read_mutating_webhook_configuration, api.patch_mutating_webhook_configuration, "mutating"),
            (api.read_validating_webhook_configuration, api.patch_validating_webhook_configuration, "validating"),
        ):
            current = read(name)
            hooks = [{"name": h.name, "clientConfig": {"caBundle": bundle}} for h in current.webhooks or []]
            # A strategic merge patch of the webhooks list merges by name.
            patch(name, {"webhooks": hooks})
            done.append(f"{kind}/{name}")
    return done
