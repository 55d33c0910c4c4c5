"""A real Kubernetes node on this machine: containerd, runc, CNI, kubelet, kube-proxy and a device plugin.

Each node lives in namespaces of its own, as a kind node lives in its container: a network namespace
(joined to the host bridge by a veth) and a mount namespace held by a small holder process. The mount
namespace is what lets several kubelets share one machine: the kubelet's device-plugin folder is fixed at
/var/lib/kubelet/device-plugins, so each node bind-mounts its own folder there; a kubelet deletes every
folder of /var/log/pods whose pod it does not run, so each node has its own; and the pod network
namespaces and CNI state that containerd keeps under /run/netns and /var/lib/cni stay private to the node
(and vanish with it). The node's cgroups sit under a cgroup root of their own, so that stopping the
node finds every container it ran.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster.build import Binaries
from devcluster.network import Network, node_down, node_up

CGROUP_ROOT = Path("/sys/fs/cgroup")
RUNC = "/usr/sbin/runc"
CNI_BIN = "/usr/lib/cni"
CNI_PLUGINS = ("bridge", "host-local", "loopback", "portmap")
MODEL_CACHE = "/var/lib/hearth/models"  # the dev runtimes' cache.hostPath (devcluster/runtimes.yaml)


class NodeError(RuntimeError):
    pass


@dataclass(frozen=True)
class HostPath:
    """A path that a runtime mounts from the host (the Ascend driver, say), created inside the node."""

    path: str
    kind: str = "Directory"  # Directory | File


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    accelerators: dict[str, int]
    taints: list[dict[str, str]] = field(default_factory=list)
    host_paths: tuple[HostPath, ...] = ()


ASCEND_HOST_PATHS = (
    HostPath("/usr/local/Ascend/driver"),
    HostPath("/usr/local/dcmi"),
    HostPath("/usr/local/bin/npu-smi", "File"),
)

DEFAULT_NODES = (
    NodeSpec(
        "gpu-node-0",
        {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "Simulated-A100"},
        {"nvidia.com/gpu": 4},
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    ),
    NodeSpec(
        "ascend-node-0",
        {"accelerator": "huawei-Ascend910"},
        {"huawei.com/Ascend910": 8},
        host_paths=ASCEND_HOST_PATHS,
    ),
)


def check_host() -> None:
    """What a node needs from the machine, with the fix for each missing piece."""
    if os.geteuid() != 0:
        raise NodeError("the local cluster's nodes run containers: run as root (namespaces, cgroups, bridges)")
    missing = [p for p in (RUNC, *(f"{CNI_BIN}/{c}" for c in CNI_PLUGINS)) if not Path(p).exists()]
    for tool in ("iptables", "nsenter", "unshare", "ip", "mount"):
        if not any(Path(d, tool).exists() for d in os.environ.get("PATH", "/usr/sbin:/usr/bin").split(":")):
            missing.append(tool)
    if missing:
        raise NodeError(
            "missing on this machine: "
            + ", ".join(missing)
            + " (apt-get install runc containernetworking-plugins iptables util-linux iproute2)"
        )
    if not (CGROUP_ROOT / "memory").is_dir():
        raise NodeError("no cgroup v1 memory hierarchy under /sys/fs/cgroup (the nodes use the cgroupfs driver)")


@dataclass
class NodeRun:
    """One running node: where it keeps its state, and how to run a command inside it."""

    spec: NodeSpec
    index: int
    net: Network
    state: Path  # long-lived state: kubelet root, containerd root, configs
    holder_pid: int = 0

    @property
    def run_dir(self) -> Path:  # short paths: unix sockets are limited to 108 bytes
        return Path(f"/run/hearth{self.net.k}/{self.spec.name}")

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def cgroup_root(self) -> str:
        return f"/hearth{self.net.k}-{self.spec.name}"

    @property
    def ip(self) -> str:
        return self.net.node_ip(self.index)

    def inside(self, argv: list[str]) -> list[str]:
        """argv run in the node's network and mount namespaces."""
        return ["nsenter", f"--target={self.holder_pid}", "--net", "--mount", "--", *argv]

    def ctr(self, binaries: Binaries, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binaries["ctr"]), f"--address={self.containerd_socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )


def cgroup_dirs(root: str) -> list[Path]:
    """Every cgroup v1 folder of this root, in every hierarchy."""
    dirs: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        if hierarchy.name == "unified" or not hierarchy.is_dir():
            continue
        dirs.append(hierarchy / root.lstrip("/"))
    return dirs


def make_cgroups(root: str) -> None:
    for folder in cgroup_dirs(root):
        folder.mkdir(exist_ok=True)


def cgroup_pids(root: str) -> set[int]:
    """Every process under a node's cgroup root: the containers of its pods."""
    pids: set[int] = set()
    for folder in cgroup_dirs(root):
        if folder.is_dir():
            for procs in folder.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in procs.read_text().split())
    return pids


def kill_cgroups(root: str) -> None:
    """SIGKILL every process under the node's cgroup root (its containers), then remove the folders."""
    for _ in range(50):
        pids = cgroup_pids(root)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)
        time.sleep(0.1)
    for folder in cgroup_dirs(root):
        if folder.is_dir():
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    sub.rmdir()
            with contextlib.suppress(OSError):
                folder.rmdir()


# --- configuration files ------------------------------------------------------------------------------


def containerd_config(node: NodeRun, sandbox_image: str) -> str:
    root = node.state / "containerd"
    return f"""version = 3
root = "{root}"
state = "{node.run_dir / "containerd"}"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{node.containerd_socket}"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{sandbox_image}"

[plugins."io.containerd.cri.v1.runtime"]
  # This machine withholds CAP_SYS_RESOURCE: no process may lower its oom_score_adj, so the kubelet's
  # -998 for sandboxes would fail every pod. Clamp to containerd's own score, as rootless setups do.
  restrict_oom_score_adj = true

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN}"]
  conf_dir = "{node.state / "cni"}"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
  BinaryName = "{RUNC}"
  SystemdCgroup = false

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"
"""


def cni_config(node: NodeRun) -> dict[str, Any]:
    subnet = node.net.node_pod_cidr(node.index)
    return {
        "cniVersion": "1.0.0",
        "name": "hearth",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,  # pod traffic never leaves the cluster's bridges
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.state / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: NodeRun, ca_file: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,  # this machine has cgroup v1 hierarchies only (1.35+ refuses them by default)
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "address": node.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": False},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "AlwaysAllow"},  # only the apiserver holds a client certificate
        "registerWithTaints": node.spec.taints,
        "failSwapOn": False,
        "resolvConf": "/etc/resolv.conf",
        "serializeImagePulls": False,
        "syncFrequency": "10s",
        "nodeStatusUpdateFrequency": "4s",
        # Images come from the local build, never from a registry: keep them, whatever the disk says.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(node: NodeRun, kubeconfig: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": node.net.pod_cidr,
        "hostnameOverride": node.spec.name,
        "bindAddress": node.ip,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # Leave the machine-wide conntrack settings alone: several nodes share this kernel.
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


# A node resolves no names: the dev cluster is offline (nothing leaves its bridge), and everything in it is
# reached by address. The host's nameserver, which a node cannot reach, made every lookup wait out its
# timeouts (a pull from a registry failed after 51 s); nothing listens on the node's own port 53, so a
# lookup is refused at once.
NODE_RESOLV_CONF = "# hearth dev: nodes resolve no names (the cluster is offline)\nnameserver 127.0.0.1\n"


def holder_script(node: NodeRun, ready_file: Path) -> str:
    """The node's mount namespace: its own kubelet root, netns and CNI state, and the runtimes' host paths.
    Touches `ready_file` when done, then sleeps: the namespaces live as long as it (or a node daemon) does."""
    lines = [
        "set -e",
        f"mount --bind {node.state / 'kubelet'} /var/lib/kubelet",
        "mount --make-rshared /var/lib/kubelet",
        f"mount --bind {node.state / 'cni-state'} /var/lib/cni",
        # Pod logs: a kubelet's garbage collection removes every log folder of a pod it does not run.
        f"mount --bind {node.state / 'pod-logs'} /var/log/pods",
        f"mount --bind {node.state / 'container-logs'} /var/log/containers",
        "mount -t tmpfs -o mode=755 hearth-netns /run/netns",
        # The node's own disk for the model cache (the runtimes' cache.hostPath): one per node, as on a
        # real cluster, so a model fetched on one node is not on the others.
        f"mount --bind {node.state / 'model-cache'} {MODEL_CACHE}",
        # The node's own resolver list (NODE_RESOLV_CONF), for containerd, the kubelet and the pods.
        f"if [ -e /etc/resolv.conf ]; then mount --bind {node.state / 'resolv.conf'} /etc/resolv.conf; fi",
    ]
    if node.spec.host_paths:
        lines.append("mount -t tmpfs -o mode=755 hearth-node-local /usr/local")
        for host_path in node.spec.host_paths:
            if host_path.kind == "File":
                lines += [f"mkdir -p {Path(host_path.path).parent}", f"touch {host_path.path}"]
            else:
                lines.append(f"mkdir -p {host_path.path}")
    lines.append(f"touch {ready_file}")
    lines.append("exec sleep infinity")
    return "\n".join(lines)


def prepare(node: NodeRun, ca_file: Path, sandbox_image: str, proxy_kubeconfig: Path) -> None:
    folders = ("kubelet", "cni", "cni-state", "cni-ipam", "containerd", "pod-logs", "container-logs", "model-cache")
    for folder in folders:
        (node.state / folder).mkdir(parents=True, exist_ok=True)
    node.run_dir.mkdir(parents=True, exist_ok=True)
    for mountpoint in (
        "/var/lib/kubelet",
        "/var/lib/cni",
        "/run/netns",
        "/var/log/pods",
        "/var/log/containers",
        MODEL_CACHE,
    ):
        Path(mountpoint).mkdir(parents=True, exist_ok=True)
    (node.state / "resolv.conf").write_text(NODE_RESOLV_CONF)
    (node.state / "containerd.toml").write_text(containerd_config(node, sandbox_image))
    (node.state / "cni" / "10-hearth.conflist").write_text(json.dumps(cni_config(node), indent=2))
    (node.state / "kubelet.yaml").write_text(yaml.safe_dump(kubelet_config(node, ca_file)))
    (node.state / "kube-proxy.yaml").write_text(yaml.safe_dump(kube_proxy_config(node, proxy_kubeconfig)))


Starter = Callable[[str, list[str], Callable[[], bool], float], int]


def _socket_answers(path: Path) -> Callable[[], bool]:
    def check() -> bool:
        return path.is_socket()

    return check


def start(
    node: NodeRun,
    binaries: Binaries,
    start_process: Starter,
    ca_file: Path,
    kubeconfig: Path,
    proxy_kubeconfig: Path,
    images: list[Path],
    sandbox_image: str,
) -> None:
    """Bring one node up: namespaces, containerd (with the local images), kubelet, device plugin, kube-proxy."""
    name = node.spec.name
    node_up(node.net, name, node.index)
    make_cgroups(node.cgroup_root)
    prepare(node, ca_file, sandbox_image, proxy_kubeconfig)
    ready_file = node.run_dir / "holder.ready"
    ready_file.unlink(missing_ok=True)
    script = holder_script(node, ready_file)
    node.holder_pid = start_process(
        f"{name}.holder",
        [
            "nsenter",
            f"--net=/run/netns/{node.net.netns(name)}",
            "--",
            "unshare",
            "--mount",
            "--propagation=slave",
            "--",
            "sh",
            "-c",
            script,
        ],
        ready_file.exists,
        15,
    )
    # The holder is `sh` until it execs `sleep`; nsenter needs its pid, which stays the same.
    start_process(
        f"{name}.containerd",
        # containerd finds its runc shim on PATH: the folder it was built into comes first.
        node.inside(
            [
                "env",
                f"PATH={binaries['containerd-shim-runc-v2'].parent}:/usr/sbin:/usr/bin:/sbin:/bin",
                str(binaries["containerd"]),
                f"--config={node.state / 'containerd.toml'}",
                "--log-level=warn",
            ]
        ),
        _socket_answers(node.containerd_socket),
        30,
    )
    # All at once (unpacked for the CRI snapshotter): each import waits on the disk as much as on the CPU.
    with concurrent.futures.ThreadPoolExecutor(len(images) or 1) as pool:
        results = list(pool.map(lambda archive: node.ctr(binaries, "images", "import", str(archive)), images))
    for archive, result in zip(images, results, strict=True):
        if result.returncode != 0:
            raise NodeError(f"importing {archive.name} into {name}'s containerd failed: {result.stderr.strip()}")
    labels = ",".join(f"{k}={v}" for k, v in node.spec.labels.items())
    (node.state / "kubelet" / "device-plugins" / "kubelet.sock").unlink(missing_ok=True)  # wait for a fresh one
    start_process(
        f"{name}.kubelet",
        node.inside(
            [
                str(binaries["kubelet"]),
                f"--config={node.state / 'kubelet.yaml'}",
                f"--kubeconfig={kubeconfig}",
                f"--hostname-override={name}",
                f"--node-ip={node.ip}",
                f"--node-labels={labels}",
                "--v=1",
            ]
        ),
        _socket_answers(node.state / "kubelet" / "device-plugins" / "kubelet.sock"),
        60,
    )
    if node.spec.accelerators:
        start_process(
            f"{name}.device-plugin",
            node.inside(
                [
                    str(binaries["hearth-device-plugin"]),
                    "--device-plugin-dir=/var/lib/kubelet/device-plugins/",
                    *(f"--resource={r}={n}" for r, n in node.spec.accelerators.items()),
                ]
            ),
            lambda: True,
            10,
        )
    start_process(
        f"{name}.kube-proxy",
        node.inside([str(binaries["kube-proxy"]), f"--config={node.state / 'kube-proxy.yaml'}", "--v=1"]),
        lambda: True,
        10,
    )


def stop(node: NodeRun) -> None:
    """After the node's processes are gone: its containers, cgroups, namespaces and routes."""
    kill_cgroups(node.cgroup_root)
    node_down(node.net, node.spec.name, node.index)
