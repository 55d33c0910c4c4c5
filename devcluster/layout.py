"""Where a dev cluster lives: its state folder, its ports and its loopback addresses.

One cluster per state folder. Ports and the pod address range derive from a base so that the user's
`hearth dev up` and the end-to-end tests can run side by side.
"""

from __future__ import annotations

import contextlib
import json
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


RECORD = "layout.json"  # the ports and address range a state folder's cluster was started with


@dataclass(frozen=True)
class Layout:
    state: Path
    port_base: int = 16400
    pod_net: int = 10  # numbers the cluster's private address ranges (see devcluster/network.py)

    @classmethod
    def of(cls, state: Path, port_base: int | None = None, pod_net: int | None = None) -> Layout:
        """The layout of the cluster in `state`: the values given, else those it was started with (so that
        `hearth dev down --state-dir X` stops what `hearth dev up --state-dir X --pod-net N` started), else
        the defaults."""
        recorded: dict[str, int] = {}
        with contextlib.suppress(OSError, ValueError):  # none yet, or unreadable: the values given or defaults
            recorded = json.loads((state / RECORD).read_text())
        return cls(
            state=state,
            port_base=port_base if port_base is not None else int(recorded.get("port_base", cls.port_base)),
            pod_net=pod_net if pod_net is not None else int(recorded.get("pod_net", cls.pod_net)),
        )

    def record(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / RECORD).write_text(json.dumps({"port_base": self.port_base, "pod_net": self.pod_net}) + "\n")

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
