"""`hearth dev up|down|status|env`: a real control plane on one machine, with Hearth installed.

etcd, kube-apiserver (secure port on 127.0.0.1, RBAC, service-account keys, an admin client certificate
in system:masters), kube-controller-manager and kube-scheduler, then the Hearth webhook as a local
process, Hearth's manifests applied with only the webhook address patched, the sample runtimes plus
simulator-backed ones, and the node agent with simulated NVIDIA and Ascend nodes.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from certs import issue
from devcluster import processes
from devcluster.build import KUBERNETES_VERSION, Binaries
from devcluster.layout import Layout
from devcluster.nodeagent import DEFAULT_NODES
from devcluster.pki import ensure_pki

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
DEV_RUNTIMES = Path(__file__).resolve().parent / "runtimes.yaml"
ORDER = (
    "node-agent",
    "gateway",
    "scaler",
    "webhook",
    "kube-scheduler",
    "kube-controller-manager",
    "kube-apiserver",
    "etcd",
)


class Cluster:
    def __init__(self, layout: Layout, binaries: Binaries | None = None) -> None:
        self.layout = layout
        self.binaries = binaries
        self.id = str(layout.state.resolve())
        self._launched: dict[str, tuple[list[str], Any, float]] = {}

    # --- helpers -----------------------------------------------------------------------------
    def _tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.layout.pki / "ca.crt"))
        context.load_cert_chain(str(self.layout.pki / "admin.crt"), str(self.layout.pki / "admin.key"))
        return context

    def _insecure(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # components' self-signed health endpoints on loopback
        return context

    def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise processes.StartError(
                "kubectl is not installed (apt-get install kubectl, or build k8s.io/kubernetes/cmd/kubectl)"
            )
        result = subprocess.run(
            [kubectl, f"--kubeconfig={self.layout.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise processes.StartError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def _start(self, name: str, argv: list[str], check: Any, timeout: float, pids: dict[str, int]) -> None:
        self._launched[name] = (argv, check, timeout)
        started = time.monotonic()
        pid = processes.start(name, argv, self.layout.logs, self.id)
        pids[name] = pid
        processes.save_pids(self.layout.pids, pids)
        processes.wait_for(name, check, pid, self.layout.logs / f"{name}.log", timeout)
        print(f"  {name:<24} ready in {time.monotonic() - started:4.1f}s  (pid {pid})", flush=True)

    def restart(self, name: str) -> None:
        """Stop one component (SIGTERM, then SIGKILL) and start it again as it was started."""
        argv, check, timeout = self._launched[name]
        pids = processes.load_pids(self.layout.pids)
        processes.stop_one(pids[name])
        self._start(name, argv, check, timeout, pids)

    def running(self) -> dict[str, int]:
        return {n: p for n, p in processes.load_pids(self.layout.pids).items() if processes.alive(p)}

    def apiserver_ready(self) -> bool:
        return processes.url_ok(f"https://127.0.0.1:{self.layout.apiserver_port}/readyz", self._tls())()

    # --- up ----------------------------------------------------------------------------------
    def up(self) -> float:
        if self.binaries is None:
            raise processes.StartError("no control-plane binaries")
        if self.running() and self.apiserver_ready():
            print(f"The dev cluster in {self.layout.state} is already running.")
            return 0.0
        self.down(quiet=True)
        started = time.monotonic()
        layout, bins = self.layout, self.binaries
        layout.state.mkdir(parents=True, exist_ok=True)
        ensure_pki(layout)
        pki = layout.pki
        pids: dict[str, int] = {}
        print(f"Starting the dev cluster (Kubernetes {KUBERNETES_VERSION}) in {layout.state}", flush=True)
        etcd_url = f"http://127.0.0.1:{layout.etcd_port}"
        peer_url = f"http://127.0.0.1:{layout.etcd_peer_port}"
        self._start(
            "etcd",
            [
                str(bins["etcd"]),
                "--name=hearth-dev",
                f"--data-dir={layout.state / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=hearth-dev={peer_url}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=1073741824",
            ],
            processes.url_ok(f"{etcd_url}/health"),
            30,
            pids,
        )
        server = f"https://127.0.0.1:{layout.apiserver_port}"
        self._start(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={layout.apiserver_port}",
                f"--cert-dir={layout.state / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--allow-privileged=true",
                f"--service-account-issuer={server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
            self.apiserver_ready,
            90,
            pids,
        )
        kcm = layout.component_kubeconfig("controller-manager")
        self._start(
            "kube-controller-manager",
            [
                str(bins["kube-controller-manager"]),
                f"--kubeconfig={kcm}",
                f"--authentication-kubeconfig={kcm}",
                f"--authorization-kubeconfig={kcm}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={layout.controller_manager_port}",
                f"--cert-dir={layout.state / 'kcm-certs'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=true",
                "--controllers=*,-nodeipam,-service-lb-controller,-cloud-node-lifecycle",
                "--node-monitor-grace-period=40s",
                "--v=1",
            ],
            processes.url_ok(f"https://127.0.0.1:{layout.controller_manager_port}/healthz", self._insecure()),
            60,
            pids,
        )
        scheduler_config = layout.state / "scheduler.yaml"
        scheduler_config.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kubescheduler.config.k8s.io/v1",
                    "kind": "KubeSchedulerConfiguration",
                    "clientConnection": {"kubeconfig": str(layout.component_kubeconfig("scheduler"))},
                    "leaderElection": {"leaderElect": False},
                }
            )
        )
        sched_kubeconfig = layout.component_kubeconfig("scheduler")
        self._start(
            "kube-scheduler",
            [
                str(bins["kube-scheduler"]),
                f"--config={scheduler_config}",
                "--bind-address=127.0.0.1",
                f"--secure-port={layout.scheduler_port}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                f"--cert-dir={layout.state / 'scheduler-certs'}",
                "--v=1",
            ],
            processes.url_ok(f"https://127.0.0.1:{layout.scheduler_port}/healthz", self._insecure()),
            60,
            pids,
        )
        self.install_crds()
        self.start_webhook(pids)
        self.install_hearth()
        self.start_scaler(pids)
        self.start_gateway(pids)
        self._start(
            "node-agent",
            [
                sys.executable,
                "-m",
                "hearth",
                "dev",
                "node-agent",
                f"--kubeconfig={layout.kubeconfig}",
                f"--pod-net={layout.pod_net}",
                f"--log-dir={layout.logs / 'pods'}",
            ],
            self.nodes_ready,
            60,
            pids,
        )
        elapsed = time.monotonic() - started
        print(f"Dev cluster ready in {elapsed:.1f}s.", flush=True)
        return elapsed

    def start_webhook(self, pids: dict[str, int]) -> None:
        layout = self.layout
        issue(layout.webhook_tls, ["127.0.0.1", "localhost"])
        context = ssl.create_default_context(cafile=str(layout.webhook_tls / "ca.crt"))
        self._start(
            "webhook",
            [
                sys.executable,
                "-m",
                "hearth",
                "webhook",
                f"--cert-dir={layout.webhook_tls}",
                "--host=127.0.0.1",
                f"--port={layout.webhook_port}",
                f"--kubeconfig={layout.kubeconfig}",
            ],
            processes.url_ok(f"https://127.0.0.1:{layout.webhook_port}/healthz", context),
            30,
            pids,
        )

    def start_gateway(self, pids: dict[str, int]) -> None:
        port = self.layout.gateway_port
        self._start(
            "gateway",
            [
                sys.executable,
                "-m",
                "hearth",
                "gateway",
                "front-door",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--kubeconfig={self.layout.kubeconfig}",
                "--heartbeat-interval=2s",
                f"--scaler-url=http://127.0.0.1:{self.layout.scaler_port}",
            ],
            processes.url_ok(f"http://127.0.0.1:{port}/healthz"),
            30,
            pids,
        )

    def start_scaler(self, pids: dict[str, int], name: str = "scaler", port: int | None = None) -> None:
        """A scaler replica; a second one (another name and port) stands by for the lease."""
        port = port or self.layout.scaler_port
        self._start(
            name,
            [
                sys.executable,
                "-m",
                "hearth",
                "scaler",
                "--host=127.0.0.1",
                f"--port={port}",
                f"--kubeconfig={self.layout.kubeconfig}",
                f"--gateway-url=http://127.0.0.1:{self.layout.gateway_port}",
                f"--identity={name}",
                "--tick=1s",
                "--lease-duration=6s",
                "--renew-deadline=4s",
                "--retry-period=1s",
            ],
            processes.url_ok(f"http://127.0.0.1:{port}/healthz"),
            30,
            pids,
        )

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.layout.gateway_port}/v1"

    def hearth_manifests(self) -> list[dict[str, Any]]:
        """The kustomization users apply, with the webhook address patched to the local process, and
        Hearth's own Deployments and Services left out: the webhook, gateway and scaler run as local
        processes (the node agent runs model pods, not Hearth's)."""
        rendered = self.kubectl("kustomize", str(MANIFESTS)).stdout
        ca = base64.b64encode((self.layout.webhook_tls / "ca.crt").read_bytes()).decode()
        docs = []
        for doc in yaml.safe_load_all(rendered):
            if not doc:
                continue
            if doc["kind"] in ("Deployment", "Service") and doc["metadata"].get("namespace") == "hearth-system":
                continue  # Hearth's own components run as local processes here
            for hook in doc.get("webhooks") or []:
                path = hook["clientConfig"]["service"].get("path", "/")
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{self.layout.webhook_port}{path}", "caBundle": ca}
            docs.append(doc)
        return docs

    def install_crds(self) -> None:
        self.kubectl("apply", "-f", str(MANIFESTS / "crd-inferenceruntime.yaml"))
        self.kubectl("wait", "--for=condition=Established", "crd/inferenceruntimes.serving.hearth.dev", "--timeout=30s")

    def install_hearth(self) -> None:
        docs = self.hearth_manifests()
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        # The webhook learns runtimes from its watch; retry while it syncs, as `kubectl apply` users would.
        for attempt in range(30):
            result = self.kubectl("apply", "-f", str(MANIFESTS / "runtimes"), "-f", str(DEV_RUNTIMES), check=False)
            if result.returncode == 0:
                break
            if attempt == 29:
                raise processes.StartError(f"applying the runtimes failed:\n{result.stderr}")
            time.sleep(0.5)
        print("  Hearth installed: CRD, webhooks, runtimes " + ", ".join(self.runtime_names()), flush=True)

    def runtime_names(self) -> list[str]:
        out = self.kubectl("get", "inferenceruntimes", "-o", "jsonpath={.items[*].metadata.name}").stdout
        return out.split()

    def nodes_ready(self) -> bool:
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        nodes = json.loads(result.stdout).get("items", [])
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
        }
        return {n.name for n in DEFAULT_NODES} <= ready

    # --- down / status / env ------------------------------------------------------------------
    def down(self, quiet: bool = False) -> None:
        recorded = processes.load_pids(self.layout.pids)
        order = [recorded[n] for n in ORDER if n in recorded]
        processes.stop_all(self.id, order)
        if self.layout.pids.exists():
            self.layout.pids.unlink()
        shutil.rmtree(self.layout.state / "etcd", ignore_errors=True)  # a fresh cluster each `up`
        if not quiet:
            print(f"Dev cluster in {self.layout.state} stopped; no process left.")

    def status(self) -> int:
        running = self.running()
        recorded = processes.load_pids(self.layout.pids)
        if not recorded:
            print(f"No dev cluster in {self.layout.state}. Start one with: hearth dev up")
            return 1
        for name in reversed(ORDER):
            if name in recorded:
                state = "running" if name in running else "STOPPED"
                print(f"  {name:<24} {state:<8} pid {recorded[name]}")
        healthy = self.apiserver_ready()
        print(f"apiserver https://127.0.0.1:{self.layout.apiserver_port}: {'ready' if healthy else 'NOT ready'}")
        print(f"kubeconfig: {self.layout.kubeconfig}")
        return 0 if healthy and len(running) == len(recorded) else 1

    def env(self) -> str:
        return (
            f"export KUBECONFIG={self.layout.kubeconfig}\n"
            f"export OPENAI_BASE_URL={self.openai_base_url}\n"
            "export OPENAI_API_KEY=hearth-dev  # the SDK wants one; the dev gateway does not check it\n"
        )
