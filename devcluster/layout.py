"""Where a dev cluster lives: its state folder, its ports and its loopback addresses.

One cluster per state folder. Ports and the pod address range derive from a base so that the user's
`hearth dev up` and the end-to-end tests can run side by side.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from devcluster.network import Network


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "hearth" / "dev"


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hearth"


@dataclass(frozen=True)
class Layout:
    state: Path
    port_base: int = 16400
    pod_net: int = 10  # numbers the cluster's private address ranges (see devcluster/network.py)

    @property
    def network(self) -> Network:
        return Network(self.pod_net)

    @property
    def apiserver_url(self) -> str:
        return f"https://{self.network.host_ip}:{self.apiserver_port}"

    @property
    def nodes(self) -> Path:
        return self.state / "nodes"

    @property
    def etcd_port(self) -> int:
        return self.port_base + 1

    @property
    def etcd_peer_port(self) -> int:
        return self.port_base + 2

    @property
    def apiserver_port(self) -> int:
        return self.port_base + 43

    @property
    def controller_manager_port(self) -> int:
        return self.port_base + 57

    @property
    def scheduler_port(self) -> int:
        return self.port_base + 59

    @property
    def hub_port(self) -> int:
        return self.port_base + 80

    @property
    def hub_url(self) -> str:
        """The local Hugging Face-compatible hub (devcluster.hub), where pods reach the host."""
        return f"http://{self.network.host_ip}:{self.hub_port}"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def pids(self) -> Path:
        return self.state / "pids.json"

    @property
    def webhook_tls(self) -> Path:
        return self.state / "webhook-tls"

    def component_kubeconfig(self, name: str) -> Path:
        return self.state / f"{name}.kubeconfig"
