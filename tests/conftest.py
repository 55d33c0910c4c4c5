from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs import issue
from tests.servers import free_port, hearth_process, tls_context
from tests.support import RUNTIMES


@dataclass
class Webhook:
    url: str
    tls: ssl.SSLContext
    cert_dir: Path
    log: Path


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """`hearth webhook` over real TLS, with the sample runtimes from a file."""
    tmp = tmp_path_factory.mktemp("webhook")
    cert_dir = tmp / "tls"
    issue(cert_dir, ["localhost", "127.0.0.1"])
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    tls = tls_context(cert_dir / "ca.crt")
    args = [
        "webhook",
        f"--cert-dir={cert_dir}",
        "--host=127.0.0.1",
        f"--port={port}",
        f"--runtimes={RUNTIMES}",
        "--max-body-bytes=1048576",
        "--body-timeout=1s",
        "--cert-reload-seconds=0.2",
    ]
    with hearth_process(args, f"{url}/healthz", tls, tmp / "webhook.log"):
        yield Webhook(url, tls, cert_dir, tmp / "webhook.log")
