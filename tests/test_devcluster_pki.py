"""The local cluster's PKI follows its addresses: a state folder made for other addresses (an older
layout, another --pod-net) gets an apiserver certificate that names the new ones."""

from __future__ import annotations

from pathlib import Path

from devcluster.layout import Layout
from devcluster.pki import ensure_pki


def test_the_apiserver_certificate_is_kept_while_it_fits_and_reissued_when_it_does_not(tmp_path: Path) -> None:
    ensure_pki(Layout(state=tmp_path, pod_net=10), ["gpu-node-0"])
    first = (tmp_path / "pki" / "apiserver.crt").read_bytes()
    ensure_pki(Layout(state=tmp_path, pod_net=10), ["gpu-node-0"])
    assert (tmp_path / "pki" / "apiserver.crt").read_bytes() == first
    ensure_pki(Layout(state=tmp_path, pod_net=11), ["gpu-node-0"])
    assert (tmp_path / "pki" / "apiserver.crt").read_bytes() != first
    kubeconfig = (tmp_path / "kubeconfig").read_text()
    assert "https://172.30.11.1:" in kubeconfig
    assert (tmp_path / "node-gpu-node-0.kubeconfig").is_file()  # the kubelet's, as system:node:gpu-node-0
