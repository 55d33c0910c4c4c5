"""Certificates for the admission webhook: a CA, a serving certificate, and the caBundle in the configs."""

from certs.authority import Pair, expires_within, issue, load_ca, make_ca, make_client, make_serving, write_pair
from certs.bundle import patch_file, patch_live, with_ca_bundle

__all__ = [
    "Pair",
    "expires_within",
    "issue",
    "load_ca",
    "make_ca",
    "make_client",
    "make_serving",
    "patch_file",
    "patch_live",
    "with_ca_bundle",
    "write_pair",
]
