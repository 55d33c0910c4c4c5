"""Certificates: what `hearth certs` writes, and a rotation under load that drops no request."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import socket
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs import expires_within, issue, load_ca
from hearth.cli import main
from tests.conftest import Webhook


def test_ca_and_serving_certificate(tmp_path: Path) -> None:
    issue(tmp_path, ["hearth-webhook.hearth-system.svc", "127.0.0.1", "::1"])
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["hearth-webhook.hearth-system.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    assert 364 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 366
    assert (tmp_path / "tls.key").stat().st_mode & 0o777 == 0o600
    assert not expires_within(tmp_path / "tls.crt", 30) and expires_within(tmp_path / "tls.crt", 400)


def test_rsa_and_a_kept_ca(tmp_path: Path) -> None:
    issue(tmp_path, ["a.example"], key_type="rsa")
    first = load_ca(tmp_path)
    issue(tmp_path, ["a.example"], key_type="rsa")
    second = load_ca(tmp_path)
    assert first is not None and second is not None and first.cert == second.cert  # caBundle stays valid
    key = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes()).public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048


def test_cli_writes_the_ca_bundle_into_manifests(tmp_path: Path) -> None:
    manifest = tmp_path / "webhooks.yaml"
    manifest.write_text((Path(__file__).parent.parent / "manifests" / "webhooks.yaml").read_text())
    assert (
        main(
            [
                "certs",
                "--out",
                str(tmp_path / "tls"),
                "--host",
                "hearth-webhook.hearth-system.svc",
                "--patch",
                str(manifest),
            ]
        )
        == 0
    )
    bundle = (tmp_path / "tls" / "ca.crt").read_bytes()
    docs = list(yaml.safe_load_all(manifest.read_text()))
    hooks = [h for d in docs for h in d["webhooks"]]
    assert len(hooks) == 5
    assert all(base64.b64decode(h["clientConfig"]["caBundle"]) == bundle for h in hooks)
    # Only the five caBundle lines were added: every comment and line of the file is where it was.
    original = (Path(__file__).parent.parent / "manifests" / "webhooks.yaml").read_text().splitlines()
    patched = manifest.read_text().splitlines()
    assert [line for line in patched if "caBundle:" not in line] == original
    assert len(patched) == len(original) + 5
    assert main(["certs", "--out", str(tmp_path / "tls"), "--host", "x", "--if-expiring-within", "30"]) == 0
    assert (tmp_path / "tls" / "ca.crt").read_bytes() == bundle


def served_serial(port: int, context: ssl.SSLContext) -> int:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.mark.process  # real processes (tests/conftest.py: the tiers)
def test_rotation_drops_no_request(webhook: Webhook) -> None:
    port = int(webhook.url.rsplit(":", 1)[1])
    before = served_serial(port, webhook.tls)
    failures: list[str] = []
    done = threading.Event()
    count = 0

    def hammer() -> None:
        nonlocal count
        keepalive = httpx.Client(verify=webhook.tls, timeout=5)
        while not done.is_set():
            try:
                # a new connection (new handshake) each time, and one long-lived keep-alive connection
                assert httpx.get(f"{webhook.url}/healthz", verify=webhook.tls, timeout=5).status_code == 200
                assert keepalive.get(f"{webhook.url}/healthz").status_code == 200
                count += 1
            except Exception as exc:
                failures.append(repr(exc))
        keepalive.close()

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        started = time.monotonic()
        while count == 0 and not failures and time.monotonic() - started < 30:  # the hammer is running
            time.sleep(0.05)
        issue(webhook.cert_dir, ["localhost", "127.0.0.1"])
        deadline = time.monotonic() + 10
        while served_serial(port, webhook.tls) == before:
            if time.monotonic() > deadline:
                pytest.fail("the rotated certificate was not picked up within 10 s")
            time.sleep(0.1)
        rotated_at, started = count, time.monotonic()
        while count < rotated_at + 10 and not failures and time.monotonic() - started < 30:  # and keeps going
            time.sleep(0.05)
    finally:
        done.set()
        thread.join()
    assert failures == []
    assert count > 10
    assert (
        'hearth_webhook_cert_reloads_total{result="reloaded"} 1.0'
        in httpx.get(f"{webhook.url}/metrics", verify=webhook.tls).text
    )


def served_certificate(server: ssl.SSLContext, ca: Path) -> bytes:
    """The certificate (PEM) a TLS handshake with `server` presents, done in memory."""
    client = ssl.create_default_context(cafile=str(ca))
    client.check_hostname = False
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(to_client, to_server)
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(10):
        for side in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(to_server.read())
        to_client.write(server_out.read())
    der = tls_client.getpeercert(binary_form=True)
    assert der is not None, "no handshake"
    return ssl.DER_cert_to_PEM_cert(der).encode()


def test_a_half_written_pair_keeps_the_old_certificate_until_the_next_check(tmp_path: Path) -> None:
    """A rotation caught between its two writes (a new certificate, the old key) fails to load: the
    reload is counted as failed, the served certificate stays the old one, and the next check, once the
    key has landed too, picks the new pair up."""
    import shutil

    from prometheus_client import CollectorRegistry

    from webhook.metrics import WebhookMetrics
    from webhook.server import CertReloader

    live, staged = tmp_path / "live", tmp_path / "staged"
    issue(live, ["hearth-webhook.hearth-system.svc"])
    shutil.copytree(live, staged)
    issue(staged, ["hearth-webhook.hearth-system.svc"])  # same CA, new serving pair
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(live / "tls.crt", live / "tls.key")
    metrics = WebhookMetrics(CollectorRegistry())
    reloader = CertReloader(context, live / "tls.crt", live / "tls.key", metrics)

    def counted(result: str) -> float:
        return metrics.registry.get_sample_value("hearth_webhook_cert_reloads_total", {"result": result}) or 0.0

    old = served_certificate(context, live / "ca.crt")
    shutil.copy(staged / "tls.crt", live / "tls.crt")  # the certificate first...
    assert reloader.check() is False
    assert counted("failed") == 1 and counted("reloaded") == 0
    assert served_certificate(context, live / "ca.crt") == old  # handshakes still complete, with the old one
    shutil.copy(staged / "tls.key", live / "tls.key")  # ...then its key
    assert reloader.check() is True
    assert counted("reloaded") == 1
    assert served_certificate(context, live / "ca.crt") == (staged / "tls.crt").read_bytes()
    assert reloader.check() is False and counted("failed") == 1  # nothing changed since: nothing to do


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (  # a caBundle already there: its value only is replaced, the comment after it kept
            "kind: MutatingWebhookConfiguration\nwebhooks:\n- name: a\n  clientConfig:\n"
            "    caBundle: b2xk  # rotated by hearth certs\n    url: https://x\n",
            "kind: MutatingWebhookConfiguration\nwebhooks:\n- name: a\n  clientConfig:\n"
            "    caBundle: bmV3  # rotated by hearth certs\n    url: https://x\n",
        ),
        (  # a flow-style clientConfig gets the key inside its braces
            "kind: ValidatingWebhookConfiguration\nwebhooks:\n- name: a\n  clientConfig: {url: 'https://x'}\n",
            "kind: ValidatingWebhookConfiguration\nwebhooks:\n- name: a\n  clientConfig: {caBundle: bmV3, url: 'https://x'}\n",
        ),
        (  # other documents are left byte for byte
            "# a Service\nkind: Service\nmetadata: {name: s}\n---\nkind: MutatingWebhookConfiguration\nwebhooks:\n"
            "- name: a\n  clientConfig:\n    service: {name: s}\n",
            "# a Service\nkind: Service\nmetadata: {name: s}\n---\nkind: MutatingWebhookConfiguration\nwebhooks:\n"
            "- name: a\n  clientConfig:\n    caBundle: bmV3\n    service: {name: s}\n",
        ),
    ],
)
def test_the_ca_bundle_is_written_in_place(written: str, expected: str) -> None:
    from certs.bundle import patch_text

    assert patch_text(written, b"new") == (expected, 1)
    assert patch_text(expected, b"new") == (expected, 1)  # idempotent
