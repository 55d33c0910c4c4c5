"""A small certificate authority for the webhook: a CA and a serving certificate, made with `cryptography`.

DNS names and IP addresses go into separate SAN kinds (an IP written as a DNS name does not verify).
Keys are ECDSA P-256 by default, RSA-2048 on request.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ecdsa", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
CA_DAYS = 3650
SERVING_DAYS = 365


@dataclass(frozen=True)
class Pair:
    cert: x509.Certificate
    key: PrivateKey

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def new_key(key_type: KeyType) -> PrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(common_name: str = "hearth-webhook-ca", key_type: KeyType = "ecdsa", days: int = CA_DAYS) -> Pair:
    key = new_key(key_type)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = _now() - dt.timedelta(minutes=5)  # tolerate a little clock skew between hosts
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pair(cert, key)


def subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_serving(ca: Pair, hosts: list[str], key_type: KeyType = "ecdsa", days: int = SERVING_DAYS) -> Pair:
    if not hosts:
        raise ValueError("a serving certificate needs at least one host name or IP address")
    key = new_key(key_type)
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Pair(cert, key)


def make_client(ca: Pair, common_name: str, organizations: list[str], days: int = SERVING_DAYS) -> Pair:
    """A client certificate: the apiserver reads the user from CN and the groups from O."""
    key = new_key("ecdsa")
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    start = _now() - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attributes))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Pair(cert, key)


def write_pair(out: Path, name: str, pair: Pair) -> None:
    _write(out / f"{name}.key", pair.key_pem(), 0o600)
    _write(out / f"{name}.crt", pair.cert_pem(), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write beside, then rename: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def load_ca(out: Path) -> Pair | None:
    cert_file, key_file = out / "ca.crt", out / "ca.key"
    if not (cert_file.exists() and key_file.exists()):
        return None
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{key_file} is neither an ECDSA nor an RSA key")
    return Pair(cert, key)


def expires_within(cert_file: Path, days: float) -> bool:
    if not cert_file.exists():
        return True
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.not_valid_after_utc - _now() < dt.timedelta(days=days)


def issue(out: Path, hosts: list[str], key_type: KeyType = "ecdsa", days: int = SERVING_DAYS) -> Pair:
    """Write ca.crt/ca.key (kept when present, so the caBundle stays valid) and tls.crt/tls.key."""
    out.mkdir(parents=True, exist_ok=True)
    ca = load_ca(out)
    if ca is None:
        ca = make_ca(key_type=key_type)
        _write(out / "ca.key", ca.key_pem(), 0o600)
        _write(out / "ca.crt", ca.cert_pem(), 0o644)
    serving = make_serving(ca, hosts, key_type, days)
    # Key first, then certificate: a reloader that sees the new key with the old certificate fails to
    # load the mismatched pair and keeps serving the old one until the certificate lands.
    _write(out / "tls.key", serving.key_pem(), 0o600)
    _write(out / "tls.crt", serving.cert_pem(), 0o644)
    return ca
