"""The local cluster's addresses, and the host side of its network.

Every cluster (the developer's `hearth dev up`, the end-to-end tests, a benchmark) gets its own number k
(`Layout.pod_net`) and from it its own private ranges, so that several run side by side:

    host bridge  hearth<k>          172.30.<k>.1/24   the control plane listens here
    node i       veth in its netns  172.30.<k>.<10+i>
    pods of i    bridge in node i   10.<200+k>.<1+i>.0/24
    Services     ClusterIPs         10.<100+k>.0.0/24 (reachable from the host through node 0)

Pod traffic never leaves the bridge: the host forwards nothing between it and any other interface, and no
address is masqueraded towards the outside.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

CHAIN_PREFIX = "HEARTH-"


class NetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Network:
    k: int

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 55:
            raise NetworkError(f"--pod-net {self.k}: must be 1..55 (it numbers the cluster's private ranges)")

    @property
    def bridge(self) -> str:
        return f"hearth{self.k}"

    @property
    def host_ip(self) -> str:
        return f"172.30.{self.k}.1"

    @property
    def node_cidr(self) -> str:
        return f"172.30.{self.k}.0/24"

    def node_ip(self, index: int) -> str:
        return f"172.30.{self.k}.{10 + index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.{200 + self.k}.0.0/16"

    def node_pod_cidr(self, index: int) -> str:
        return f"10.{200 + self.k}.{1 + index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.{100 + self.k}.0.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.{100 + self.k}.0.1"

    @property
    def chain(self) -> str:
        return f"{CHAIN_PREFIX}{self.k}"

    def netns(self, node: str) -> str:
        return f"hearth{self.k}-{node}"

    def host_veth(self, index: int) -> str:
        return f"h{self.k}n{index}"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def _sysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/{name.replace('.', '/')}", "w") as handle:
        handle.write(value)


def host_up(net: Network) -> None:
    """The bridge the control plane listens on, and the fence that keeps pod traffic on it."""
    if run("ip", "link", "show", net.bridge, check=False).returncode != 0:
        run("ip", "link", "add", net.bridge, "type", "bridge")
    run("ip", "addr", "replace", f"{net.host_ip}/24", "dev", net.bridge)
    run("ip", "link", "set", net.bridge, "up")
    _sysctl("net.ipv4.ip_forward", "1")  # the host routes between nodes' pod ranges, on the bridge only
    if run("iptables", "-w", "-L", net.chain, "-n", check=False).returncode != 0:
        run("iptables", "-w", "-N", net.chain)
    run("iptables", "-w", "-F", net.chain)
    run("iptables", "-w", "-A", net.chain, "-i", net.bridge, "-o", net.bridge, "-j", "ACCEPT")
    run("iptables", "-w", "-A", net.chain, "-i", net.bridge, "-j", "DROP")  # never out of the bridge
    run("iptables", "-w", "-A", net.chain, "-o", net.bridge, "-j", "DROP")  # never in from elsewhere
    if run("iptables", "-w", "-C", "FORWARD", "-j", net.chain, check=False).returncode != 0:
        run("iptables", "-w", "-I", "FORWARD", "1", "-j", net.chain)


def host_down(net: Network) -> None:
    run("ip", "link", "del", net.bridge, check=False)
    while run("iptables", "-w", "-D", "FORWARD", "-j", net.chain, check=False).returncode == 0:
        pass
    run("iptables", "-w", "-F", net.chain, check=False)
    run("iptables", "-w", "-X", net.chain, check=False)


def node_up(net: Network, node: str, index: int) -> None:
    """A node's network namespace, joined to the host bridge by a veth, with a route to its pods."""
    ns = net.netns(node)
    run("ip", "netns", "del", ns, check=False)
    run("ip", "link", "del", net.host_veth(index), check=False)
    run("ip", "netns", "add", ns)
    run("ip", "link", "add", net.host_veth(index), "type", "veth", "peer", "name", "eth0", "netns", ns)
    run("ip", "link", "set", net.host_veth(index), "master", net.bridge, "up")
    inside = ("ip", "netns", "exec", ns)
    run(*inside, "ip", "link", "set", "lo", "up")
    run(*inside, "ip", "addr", "add", f"{net.node_ip(index)}/24", "dev", "eth0")
    run(*inside, "ip", "link", "set", "eth0", "up")
    run(*inside, "ip", "route", "add", "default", "via", net.host_ip)
    for setting in ("net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"):
        run(*inside, "sysctl", "-q", "-w", setting)
    run("ip", "route", "replace", net.node_pod_cidr(index), "via", net.node_ip(index))
    if index == 0:  # ClusterIPs from the host, as `minikube tunnel` does: node 0's kube-proxy answers
        run("ip", "route", "replace", net.service_cidr, "via", net.node_ip(index))


def node_down(net: Network, node: str, index: int) -> None:
    run("ip", "netns", "del", net.netns(node), check=False)
    run("ip", "link", "del", net.host_veth(index), check=False)
    run("ip", "route", "del", net.node_pod_cidr(index), check=False)
    if index == 0:
        run("ip", "route", "del", net.service_cidr, check=False)
