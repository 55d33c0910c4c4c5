"""The dev cluster's PKI, as envtest makes it: one CA, the apiserver's serving certificate, the
service-account key pair, and client certificates (admin in system:masters, the controller-manager and
the scheduler as their well-known users) with a kubeconfig each."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from certs import Pair, load_ca, make_ca, make_client, make_serving, write_pair
from devcluster.layout import Layout

USERS = {
    "admin": ("hearth-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
    "kube-proxy": ("system:kube-proxy", []),
}


def ensure_pki(layout: Layout, nodes: list[str]) -> None:
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    ca = load_ca(pki)
    if ca is None:
        ca = make_ca("hearth-dev-ca")
        write_pair(pki, "ca", ca)
    net = layout.network
    hosts = [
        "127.0.0.1",
        "localhost",
        net.host_ip,
        net.kubernetes_service_ip,
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    if not _names_cover(pki / "apiserver.crt", hosts):  # also a state folder from an older layout
        write_pair(pki, "apiserver", make_serving(ca, hosts))
    if not (pki / "sa.key").exists():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (pki / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        (pki / "sa.key").chmod(0o600)
        (pki / "sa.pub").write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    users = dict(USERS)
    users.update({f"node-{n}": (f"system:node:{n}", ["system:nodes"]) for n in nodes})
    for name, (user, groups) in users.items():
        if not (pki / f"{name}.crt").exists():
            write_pair(pki, name, make_client(ca, user, groups))
        target = layout.kubeconfig if name == "admin" else layout.component_kubeconfig(name)
        write_kubeconfig(target, layout.apiserver_url, ca, pki / f"{name}.crt", pki / f"{name}.key", user)


def _names_cover(cert_file: Path, hosts: list[str]) -> bool:
    """Whether the certificate exists and names every host (DNS names and IP addresses alike)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    named = {str(n) for n in sans.get_values_for_type(x509.DNSName)}
    named |= {str(a) for a in sans.get_values_for_type(x509.IPAddress)}
    return set(hosts) <= named


def write_kubeconfig(path: Path, server: str, ca: Pair, cert: Path, key: Path, user: str) -> None:
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "hearth-dev",
                "cluster": {"server": server, "certificate-authority-data": b64(ca.cert_pem())},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": b64(cert.read_bytes()), "client-key-data": b64(key.read_bytes())},
            }
        ],
        "contexts": [{"name": "hearth-dev", "context": {"cluster": "hearth-dev", "user": user}}],
        "current-context": "hearth-dev",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
