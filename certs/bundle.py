"""Write the CA bundle into webhook configurations: manifest files, and live objects with a kubeconfig."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

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
    docs = list(yaml.safe_load_all(path.read_text()))
    patched = with_ca_bundle(docs, ca_pem)
    path.write_text(yaml.safe_dump_all(patched, sort_keys=False))
    return sum(1 for d in patched if isinstance(d, dict) and d.get("kind") in WEBHOOK_KINDS)


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
