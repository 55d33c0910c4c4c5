"""Serve the webhook over TLS with uvicorn, reloading a rotated certificate without dropping requests.

uvicorn builds one `ssl.SSLContext`; loading a new chain into that same context changes what new
handshakes present, while open connections carry on. A half-written pair (new cert, old key) is checked
in a scratch context first, fails there, and is retried at the next tick, so the old certificate keeps
serving meanwhile (loading it into the live context would have broken every handshake until then).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CollectorRegistry

from common.http import bounded_head_protocol
from policies import Capacity
from webhook.app import create_app
from webhook.metrics import WebhookMetrics
from webhook.runtimes import RuntimeStore, RuntimeWatch, load_runtimes
from webhook.settings import WebhookSettings

log = logging.getLogger("hearth.webhook")


@contextlib.contextmanager
def in_memory(data: bytes) -> Iterator[str]:
    """A path to `data` that `load_cert_chain` can read: an anonymous in-memory file (the pod's root
    filesystem is read-only), or a private temporary file where memfd_create does not exist."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("hearth-tls")
        try:
            with os.fdopen(fd, "wb", closefd=False) as handle:
                handle.write(data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.NamedTemporaryFile(prefix="hearth-tls-") as handle:  # pragma: no cover - not Linux
        handle.write(data)
        handle.flush()
        yield handle.name


class CertReloader:
    def __init__(self, context: ssl.SSLContext, cert: Path, key: Path, metrics: WebhookMetrics) -> None:
        self._context = context
        self._cert = cert
        self._key = key
        self._metrics = metrics
        self._seen = self._stamp()

    def _stamp(self) -> tuple[float, float, int, int]:
        cert, key = self._cert.stat(), self._key.stat()
        return (cert.st_mtime, key.st_mtime, cert.st_ino, key.st_ino)

    def check(self) -> bool:
        """Reload when the files changed; True when a new certificate is now served."""
        try:
            stamp = self._stamp()
            if stamp == self._seen:
                return False
            self._load_pair()
        except (OSError, ssl.SSLError) as exc:
            log.warning("certificate reload failed, keeping the current one: %s", exc)
            self._metrics.cert_reloads.labels("failed").inc()
            return False
        self._seen = stamp
        self._metrics.cert_reloads.labels("reloaded").inc()
        log.info("serving certificate reloaded from %s", self._cert)
        return True

    def _load_pair(self) -> None:
        """Load the pair into the live context only once it is known to load: a failed load_cert_chain
        leaves a context with the new certificate and the old key, which completes no handshake at all.
        The files are read once, into memory, so the pair checked is the pair loaded."""
        with in_memory(self._cert.read_bytes()) as cert, in_memory(self._key.read_bytes()) as key:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)  # raises if it is not a pair
            self._context.load_cert_chain(cert, key)

    async def run(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.check()


@dataclass
class Sources:
    """What the webhook answers from: the runtimes, and the record of contested model names (empty when
    the runtimes come from a file), with the watches that keep them current."""

    store: RuntimeStore
    names: Callable[[], Mapping[str, str]]
    watches: list[Callable[[], Coroutine[Any, Any, None]]]
    capacity: Callable[[], Capacity | None] = lambda: None  # none: the first listed vendor, always


def build_sources(settings: WebhookSettings, registry: CollectorRegistry | None = None) -> Sources:
    if settings.runtimes_file is not None:
        return Sources(RuntimeStore(load_runtimes(settings.runtimes_file)), dict, [])
    from common.accelerators import AcceleratorView  # the client's libraries only when watching the cluster
    from common.informer import InformerMetrics
    from common.kube import own_namespace
    from common.kubeapi import KubeAPI
    from common.names import NamesWatch

    store = RuntimeStore()
    api = KubeAPI.connect(str(settings.kubeconfig) if settings.kubeconfig else None)
    metrics = InformerMetrics(registry) if registry is not None else None
    runtimes = RuntimeWatch(store, api, metrics)
    names = NamesWatch(api, settings.names_namespace or own_namespace(), metrics)
    accelerators = AcceleratorView(api, metrics)
    return Sources(
        store, lambda: names.recorded, [runtimes.run, names.run, accelerators.run], accelerators.capacity_if_synced
    )


def uvicorn_config(settings: WebhookSettings, sources: Sources, metrics: WebhookMetrics) -> uvicorn.Config:
    app = create_app(
        sources.store,
        settings.render,
        metrics,
        settings.max_body_bytes,
        settings.body_timeout,
        sources.names,
        sources.capacity,
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.cert_dir / "tls.crt"),
        ssl_keyfile=str(settings.cert_dir / "tls.key"),
        log_level=settings.log_level,
        access_log=False,
        timeout_keep_alive=60,  # the apiserver keeps connections to webhooks alive
        http=bounded_head_protocol(),
    )


async def serve(settings: WebhookSettings) -> None:
    metrics = WebhookMetrics(CollectorRegistry())
    sources = build_sources(settings, metrics.registry)
    config = uvicorn_config(settings, sources, metrics)
    config.load()
    if config.ssl is None:
        raise RuntimeError("TLS was not configured")
    reloader = CertReloader(config.ssl, settings.cert_dir / "tls.crt", settings.cert_dir / "tls.key", metrics)
    server = uvicorn.Server(config)
    tasks = [asyncio.create_task(reloader.run(settings.cert_reload_seconds))]
    tasks += [asyncio.create_task(watch()) for watch in sources.watches]
    log.info("runtimes: %s", ", ".join(r.name for r in sources.store.snapshot()) or "(from the cluster)")
    try:
        await server.serve()
    finally:
        for task in tasks:
            task.cancel()
