"""The test tiers (README, "Tests"): a test is in the fast tier unless its module says otherwise with
`pytestmark = pytest.mark.process` (it starts real processes: Hearth's, Go tools, kubectl) or
`pytest.mark.e2e` (the local cluster). A fast-tier test that starts a process fails, naming the fix."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from certs import issue
from tests.servers import free_port, hearth_process, tls_context
from tests.support import RUNTIMES


class ProcessInFastTier(AssertionError):
    pass


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Around a fast-tier test's setup (module fixtures included), call and teardown: no process."""
    if item.get_closest_marker("process") or item.get_closest_marker("e2e"):
        return (yield)

    def refuse(*args: object, **kwargs: object) -> None:
        raise ProcessInFastTier(
            f"{item.nodeid} starts a process in the fast tier: give its module `pytestmark = pytest.mark.process`"
        )

    saved = subprocess.Popen.__init__, asyncio.create_subprocess_exec
    subprocess.Popen.__init__ = refuse  # type: ignore[method-assign]
    asyncio.create_subprocess_exec = refuse  # type: ignore[assignment]
    try:
        return (yield)
    finally:
        subprocess.Popen.__init__, asyncio.create_subprocess_exec = saved  # type: ignore[method-assign]


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
