"""`hearth dev up|down|status|env`: a real Kubernetes cluster on one machine, with Hearth installed as
users install it.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) runs as local processes
listening on the cluster's host bridge; real nodes (containerd, runc, CNI, kubelet, kube-proxy and a
simulated accelerator device plugin, see devcluster/node.py) join it; Hearth's image, built here without
a daemon (devcluster/image.py), is imported into every node; and Hearth is installed with `kubectl apply
-k` of a local overlay of `manifests/` that sets only the image and the webhook's caBundle.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from certs import issue
from devcluster import processes
from devcluster.build import KUBERNETES_VERSION, Binaries
from devcluster.engine import ensure_engine_image
from devcluster.image import Image, ensure_image, ensure_pause_image, retagged
from devcluster.layout import Layout, default_cache_dir
from devcluster.network import host_down, host_up
from devcluster.node import DEFAULT_NODES, NodeRun, NodeSpec, cgroup_pids, check_host
from devcluster.node import start as start_node
from devcluster.node import stop as stop_node
from devcluster.pki import ensure_pki
from devcluster.reads import as_kubectl_prints, parse_get
from policies import ENABLED_LABEL, KEY_LABEL, SHIPPED_IMAGE, hub_id, is_ready

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"
DEV_RUNTIMES = Path(__file__).resolve().parent / "runtimes.yaml"
ENGINE_RUNTIME = Path(__file__).resolve().parent / "runtime-llamacpp.yaml"
DEV_ROOM_ARGS = ("--retire-grace=3s", "--min-residency=5s", "--vendor-fallback-after=5s")  # shipped: 30s, 2m, 30s
# The local hub's models (MiB): generated stand-ins under the name every simulated Deployment uses, a
# gated one, and small ones of their own for the model-cache tests (each node keeps what it fetched).
HUB_MODELS = {"Qwen/Qwen3-8B": 256, "Qwen/Qwen3-8B-Instruct": 256, "hearth-dev/gated-model": 2} | {
    f"hearth-dev/{name}": 32
    for name in ("cold", "twin", "prewarmed", "repair", "evict-a", "evict-b", "evict-c", "ms-baseline")
}
# llama.cpp models (one GGUF file of a random-weight Llama, devcluster/gguf_model.py), MiB: a tiny one for
# the engine's tests, and two sizes, so that a real engine's cold start can be seen to grow with the file.
HUB_GGUF_MODELS = {
    "hearth-dev/llama-tiny-gguf": 4,
    "hearth-dev/llama-small-gguf": 8,
    "hearth-dev/llama-large-gguf": 384,
}
HUB_GATED = {"hearth-dev/gated-model": "hf_hearth_dev_gated_token"}
HEARTH_NAMESPACE = "hearth-system"
_KEYS_LOCK = threading.Lock()
DEMO_NAMESPACE = "demo"  # where the demo's model runs; `hearth dev up` gives it an API key
HEARTH_COMPONENTS = ("hearth-webhook", "hearth-gateway", "hearth-scaler")
CONTROL_PLANE = ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd")
NODE_PROCESSES = ("kube-proxy", "device-plugin", "kubelet", "containerd", "holder")
# Seconds a process gets to exit on SIGTERM before SIGKILL (`down` and `restart`; 10 for the others). The
# apiserver stops listening at once and then hangs on its open watches until killed (10 s of every restart
# and every `down`, measured), and etcd waits about 7 s for the apiserver's streams. A dev cluster has no
# one to drain for: both are killed after a second, as a crash would (etcd's log survives it).
STOP_GRACE = {"kube-apiserver": 1.0, "etcd": 1.0}


def stop_grace(name: str) -> float:
    return STOP_GRACE.get(name, 10.0)


def _answers(url: str, headers: dict[str, str]) -> bool:
    try:
        return httpx.get(url, headers=headers, timeout=5).status_code == 200
    except httpx.HTTPError:  # a front door that died since it was listed: its restart lists every key
        return False


def _refusal(response: httpx.Response) -> str:
    """The status and the apiserver's message (its Status object's, when it sent one)."""
    message = response.json().get("message") if "json" in response.headers.get("content-type", "") else ""
    return f"{response.status_code} {message or response.text[:200]}"


class Cluster:
    def __init__(
        self,
        layout: Layout,
        binaries: Binaries | None = None,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        engine: bool = False,
    ) -> None:
        self.layout = layout
        self.binaries = binaries
        self.node_specs = nodes
        self.engine = engine  # llama.cpp's image in the nodes and its runtime (devcluster/engine.py)
        self.engine_image: str | None = None  # its name, once `up` imported it
        self.id = str(layout.state.resolve())
        self._launched: dict[str, tuple[list[str], Callable[[], bool], float]] = {}
        self._reader: httpx.Client | None = None  # reads of the common `kubectl get` forms (devcluster.reads)
        self._reader_lock = threading.Lock()

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

    def get_json(self, *args: str) -> dict[str, Any]:
        """What `kubectl get ARGS -o json` prints: read over a kept-alive connection for the common forms
        (a kubectl process costs about 80 ms of CPU, and tests poll), by kubectl for the others."""
        get = parse_get(args)
        if get is None:
            data: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
            return data
        return as_kubectl_prints(get, [self._read(path, get.params) for path in get.paths()])

    def _read(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        response, _ = self._call("GET", path, params=params)
        if response.status_code != 200:
            raise processes.StartError(f"GET {path}: {_refusal(response)}")
        answer: dict[str, Any] = response.json()
        return answer

    def create_namespace(self, name: str) -> None:
        """`kubectl create namespace NAME` over the kept-alive connection: every end-to-end test makes one."""
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        response, sent_again = self._call("POST", "/api/v1/namespaces", json=body)
        if response.status_code == 409 and sent_again:
            return  # the first attempt made it, and only its answer was lost
        if response.status_code != 201:
            raise processes.StartError(f"creating namespace {name}: {_refusal(response)}")

    def delete_namespace(self, name: str) -> None:
        """`kubectl delete namespace NAME --wait=false`, over the same connection; gone already is no error."""
        response, _ = self._call("DELETE", f"/api/v1/namespaces/{name}")
        if response.status_code not in (200, 202, 404):
            raise processes.StartError(f"deleting namespace {name}: {_refusal(response)}")

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[httpx.Response, bool]:
        """One request on the kept-alive connection (shared by threads: tests read from several), sent once
        more when the connection was cut (an apiserver restart); and whether it was sent again, so that a
        create can tell its own first attempt's success (409) from someone else's."""
        with self._reader_lock:
            if self._reader is None:
                self._reader = httpx.Client(base_url=self.layout.apiserver_url, verify=self._tls(), timeout=60)
            client = self._reader
        try:
            return client.request(method, path, **kwargs), False
        except httpx.TransportError:
            pass
        try:
            return client.request(method, path, **kwargs), True
        except httpx.TransportError as why:
            raise processes.StartError(f"{method} {path} failed: {why!r}") from why

    def _start(self, name: str, argv: list[str], check: Callable[[], bool], timeout: float) -> int:
        self._launched[name] = (argv, check, timeout)
        started = time.monotonic()
        pids = processes.load_pids(self.layout.pids)
        pid = processes.start(name, argv, self.layout.logs, self.id)
        pids[name] = pid
        processes.save_pids(self.layout.pids, pids)
        processes.wait_for(name, check, pid, self.layout.logs / f"{name}.log", timeout)
        print(f"  {name:<28} ready in {time.monotonic() - started:4.1f}s  (pid {pid})", flush=True)
        return pid

    def restart(self, name: str) -> None:
        """Stop one control-plane process (SIGTERM, then SIGKILL) and start it again as it was started."""
        argv, check, timeout = self._launched[name]
        pids = processes.load_pids(self.layout.pids)
        processes.stop_one(pids[name], stop_grace(name))
        self._start(name, argv, check, timeout)

    def running(self) -> dict[str, int]:
        return {n: p for n, p in processes.load_pids(self.layout.pids).items() if processes.alive(p)}

    def apiserver_ready(self) -> bool:
        return processes.url_ok(f"{self.layout.apiserver_url}/readyz", self._tls())()

    def node_runs(self) -> list[NodeRun]:
        return [
            NodeRun(spec, i, self.layout.network, self.layout.nodes / spec.name)
            for i, spec in enumerate(self.node_specs)
        ]

    # --- up ----------------------------------------------------------------------------------
    def up(self) -> float:
        if self.binaries is None:
            raise processes.StartError("no binaries: build them with `hearth dev build`")
        if self.running() and self.apiserver_ready():
            print(f"The dev cluster in {self.layout.state} is already running.")
            return 0.0
        check_host()
        self.down(quiet=True)
        started = time.monotonic()
        layout = self.layout
        layout.state.mkdir(parents=True, exist_ok=True)
        cache = default_cache_dir()
        image = ensure_image(cache)
        pause = ensure_pause_image(cache, self.binaries["hearth-pause"])
        images = [pause.archive, image.archive]
        engine = ensure_engine_image(cache) if self.engine else None
        if engine is not None:
            images.append(engine.archive)
            self.engine_image = engine.ref
        print(f"Starting the dev cluster (Kubernetes {KUBERNETES_VERSION}) in {layout.state}", flush=True)
        host_up(layout.network)
        ensure_pki(layout, [spec.name for spec in self.node_specs])
        self._control_plane(self.binaries)
        self._hub(cache / "hub")
        for node in self.node_runs():
            self._node(node, self.binaries, images, pause.ref)
        self.wait_nodes_ready(120)
        self.install_hearth(image, engine)
        self.kubectl("create", "namespace", DEMO_NAMESPACE, check=False)
        self.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", str(MANIFESTS / "tenant"))  # as a tenant's admin would
        self.api_key(DEMO_NAMESPACE)
        elapsed = time.monotonic() - started
        print(f"Dev cluster ready in {elapsed:.1f}s.", flush=True)
        return elapsed

    def _hub(self, folder: Path) -> None:
        """The local Hugging Face-compatible hub on the host bridge, serving generated stand-ins under the
        model names the examples use (kept in the cache folder: generated once)."""
        layout = self.layout
        argv = [sys.executable, "-m", "hearth", "dev", "hub", f"--folder={folder}"]
        argv += [f"--host={layout.network.host_ip}", f"--port={layout.hub_port}"]
        argv += [f"--generate={repo}={mib}" for repo, mib in HUB_MODELS.items()]
        argv += [f"--generate-gguf={repo}={mib}" for repo, mib in HUB_GGUF_MODELS.items()]
        argv += [f"--gated={repo}={token}" for repo, token in HUB_GATED.items()]
        self._start("hub", argv, processes.url_ok(f"{layout.hub_url}/_hub/health"), 120)

    def _control_plane(self, bins: Binaries) -> None:
        layout, pki, net = self.layout, self.layout.pki, self.layout.network
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
        )
        self._start(
            "kube-apiserver",
            [
                str(bins["kube-apiserver"]),
                f"--etcd-servers={etcd_url}",
                f"--bind-address={net.host_ip}",  # the host bridge: nodes and pods reach it there
                f"--advertise-address={net.host_ip}",
                f"--secure-port={layout.apiserver_port}",
                f"--cert-dir={layout.state / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--kubelet-client-certificate={pki / 'admin.crt'}",
                f"--kubelet-client-key={pki / 'admin.key'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                f"--service-account-issuer={layout.apiserver_url}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={net.service_cidr}",
                # Webhook calls go to the Service's endpoints (pod IPs the host routes to), as
                # apiservers without kube-proxy on their own host do.
                "--enable-aggregator-routing=true",
                "--enable-priority-and-fairness=false",
                "--profiling=false",
                "--v=1",
            ],
            self.apiserver_ready,
            90,
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
        )

    def _node(self, node: NodeRun, bins: Binaries, images: list[Path], sandbox_image: str) -> None:
        layout = self.layout
        start_node(
            node,
            bins,
            self._start,
            layout.pki / "ca.crt",
            layout.component_kubeconfig(f"node-{node.spec.name}"),
            layout.component_kubeconfig("kube-proxy"),
            images,
            sandbox_image,
        )

    def nodes_ready(self) -> bool:
        try:
            nodes = self.get_json("nodes")["items"]
        except processes.StartError:
            return False
        ready = {
            n["metadata"]["name"]
            for n in nodes
            if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
            and all(
                int(n.get("status", {}).get("allocatable", {}).get(resource, "0")) > 0
                for spec in self.node_specs
                if spec.name == n["metadata"]["name"]
                for resource in spec.accelerators
            )
        }
        return {n.name for n in self.node_specs} <= ready

    def wait_nodes_ready(self, timeout: float) -> None:
        started = time.monotonic()
        deadline = started + timeout
        while not self.nodes_ready():
            if time.monotonic() > deadline:
                nodes = self.kubectl("get", "nodes", "-o", "wide", check=False).stdout
                raise processes.StartError(f"nodes not Ready with their accelerators after {timeout:.0f}s:\n{nodes}")
            time.sleep(0.5)
        print(f"  nodes Ready with their accelerators in {time.monotonic() - started:.1f}s", flush=True)

    # --- Hearth, as users install it ---------------------------------------------------------
    def overlay(self, image: Image, also_admit: tuple[str, ...] = ()) -> Path:
        """The local overlay of manifests/: the image built here, the webhook's caBundle, and a scaler that
        makes room for a waking model after seconds of idleness (DEV_ROOM_ARGS). Nothing else. `also_admit`:
        more images the node cache's fetcher may run (the previous release's, while an upgrade rolls)."""
        folder = self.layout.state / "overlay"
        folder.mkdir(parents=True, exist_ok=True)
        name, tag = image.ref.rsplit(":", 1)
        ca = base64.b64encode((self.layout.webhook_tls / "ca.crt").read_bytes()).decode()
        rendered = self.kubectl("kustomize", str(MANIFESTS)).stdout
        patches: list[dict[str, Any]] = []
        for doc in yaml.safe_load_all(rendered):
            if doc and doc.get("kind") in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
                ops = [
                    {"op": "add", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": ca}
                    for i in range(len(doc.get("webhooks") or []))
                ]
                target = {"kind": doc["kind"], "name": doc["metadata"]["name"]}
                patches.append({"target": target, "patch": yaml.safe_dump(ops)})
        # Hearth's image in the containers it puts in model namespaces: the webhook's sidecars, the scaler's
        # prewarm Jobs (an env value, which the images: retag above does not reach).
        for deployment, container in (("hearth-webhook", "webhook"), ("hearth-scaler", "scaler")):
            env = [{"name": "HEARTH_SIDECAR_IMAGE", "value": image.ref}]
            spec = {"template": {"spec": {"containers": [{"name": container, "env": env}]}}}
            meta = {"name": deployment, "namespace": HEARTH_NAMESPACE}
            body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}
            patches.append({"patch": yaml.safe_dump(body)})
        # Making room in seconds, not minutes, so that the demo and the tests show it (scaler.packing).
        quick = [{"op": "add", "path": "/spec/template/spec/containers/0/args/-", "value": a} for a in DEV_ROOM_ARGS]
        patches.append({"target": {"kind": "Deployment", "name": "hearth-scaler"}, "patch": yaml.safe_dump(quick)})
        fetcher = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"images": ",".join((image.ref, *also_admit))}}
        fetcher["metadata"] = {"name": "hearth-fetcher-images", "namespace": HEARTH_NAMESPACE}
        patches.append({"patch": yaml.safe_dump(fetcher)})  # the image the node cache policy admits
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [os.path.relpath(MANIFESTS, folder)],  # kustomize wants a relative base
            "images": [{"name": SHIPPED_IMAGE.rsplit(":", 1)[0], "newName": name, "newTag": tag}],
            "patches": patches,
        }
        (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return folder

    def install_hearth(self, image: Image, engine: Image | None = None) -> None:
        started = time.monotonic()
        hosts = [f"hearth-webhook.{HEARTH_NAMESPACE}.svc", f"hearth-webhook.{HEARTH_NAMESPACE}.svc.cluster.local"]
        issue(self.layout.webhook_tls, hosts)
        self.kubectl("apply", "-f", str(MANIFESTS / "namespace.yaml"))
        self.apply_webhook_secret()
        self.kubectl("apply", "-k", str(self.overlay(image)))
        self.wait_hearth_ready(180)
        runtimes = self.dev_runtimes(image.ref, engine.ref if engine else None)
        # The webhook learns runtimes from its watch; retry while it syncs, as `kubectl apply` users would.
        for attempt in range(60):
            result = self.kubectl("apply", "-f", str(MANIFESTS / "runtimes"), "-f", "-", stdin=runtimes, check=False)
            if result.returncode == 0:
                break
            if attempt == 59:
                raise processes.StartError(f"applying the runtimes failed:\n{result.stderr}")
            time.sleep(0.5)
        print(
            f"  Hearth installed from manifests/ in {time.monotonic() - started:.1f}s: "
            + ", ".join(self.runtime_names()),
            flush=True,
        )

    def upgrade_hearth(self, tag: str | None = None) -> str:
        """Upgrade Hearth as docs/guides/upgrading.md tells users to, to the same code under a new tag: the
        image imported into every node (as a registry pull would bring it); `kubectl apply -k` of the overlay
        naming it, with the node cache's fetcher admitting the old image too while the webhook's replicas
        roll (an old replica renders the old one); once they have, the overlay again with the new image
        alone. Every Deployment and the node agent's DaemonSet roll. No tag: back to the image the cluster
        was built with (the nodes have it). Returns the image; the other Deployments may still be rolling."""
        if self.binaries is None:
            raise processes.StartError("no binaries: build them with `hearth dev build`")
        image, previous = ensure_image(default_cache_dir()), self.image
        if tag is not None:
            image = retagged(image, tag, self.layout.state / "images")
            for node in self.node_runs():
                result = node.ctr(self.binaries, "images", "import", str(image.archive))
                if result.returncode != 0:
                    raise processes.StartError(f"importing {image.ref} into {node.spec.name} failed: {result.stderr}")
            image.archive.unlink()  # the nodes have it now
        self.kubectl("apply", "-k", str(self.overlay(image, also_admit=(previous,))))
        webhook = ("deployment/hearth-webhook", "-n", HEARTH_NAMESPACE)
        self.kubectl("rollout", "status", *webhook, "--timeout=300s", check=False)  # the apiserver may be away
        self.kubectl("apply", "-k", str(self.overlay(image)))
        return image.ref

    def cache_key(self, repo: str, kind: str = "huggingface") -> str:
        """The node cache entry of hf://`repo` (or modelscope://, kind modelscope) as the dev runtimes fetch
        it (from this cluster's hub)."""
        return f"{kind}/{hub_id(self.layout.hub_url)}/{repo}"

    def dev_runtimes(self, image: str, engine: str | None = None) -> str:
        """devcluster/runtimes.yaml for this cluster: Hearth's image and the cluster's own hub; with the
        engine's image, its runtime too (devcluster/runtime-llamacpp.yaml)."""
        text = DEV_RUNTIMES.read_text().replace("hearth.dev/simulator:dev", image)
        if engine is not None:
            text += "---\n" + ENGINE_RUNTIME.read_text().replace("hearth.dev/llamacpp:dev", engine)
        return text.replace("http://hearth.dev-hub", self.layout.hub_url)

    def apply_webhook_secret(self) -> None:
        """The webhook's serving certificate as the Secret its pods mount (created, or updated in place)."""
        tls = self.layout.webhook_tls
        files = [f"--from-file={name}={tls / name}" for name in ("tls.crt", "tls.key", "ca.crt")]
        secret = self.kubectl(
            "create", "secret", "generic", "hearth-webhook-tls", f"--namespace={HEARTH_NAMESPACE}", *files,
            "--dry-run=client", "-o", "yaml",
        ).stdout  # fmt: skip
        self.kubectl("apply", "-f", "-", stdin=secret)

    def hearth_ready(self) -> bool:
        try:
            listed = self.get_json("deploy", "-n", HEARTH_NAMESPACE)["items"]
        except processes.StartError:
            return False
        items = {d["metadata"]["name"]: d for d in listed}
        return all(
            name in items
            and (items[name]["status"].get("updatedReplicas") or 0) == items[name]["spec"].get("replicas")
            and (items[name]["status"].get("availableReplicas") or 0) == items[name]["spec"].get("replicas")
            and (items[name]["status"].get("replicas") or 0) == items[name]["spec"].get("replicas")
            for name in HEARTH_COMPONENTS
        )

    def wait_hearth_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.hearth_ready():
            if time.monotonic() > deadline:
                pods = self.kubectl("get", "pods", "-n", HEARTH_NAMESPACE, "-o", "wide", check=False).stdout
                raise processes.StartError(f"Hearth's components were not available after {timeout:.0f}s:\n{pods}")
            time.sleep(0.5)

    def webhook_runtimes(self) -> list[str]:
        """What each webhook replica knows (they watch independently): one answer per pod."""
        context = ssl.create_default_context(cafile=str(self.layout.webhook_tls / "ca.crt"))
        context.check_hostname = False  # the certificate names the Service; this reaches each pod by address
        return [
            httpx.get(f"https://{pod['status']['podIP']}:8443/debug/runtimes", verify=context, timeout=5).text
            for pod in self.hearth_pods("hearth-webhook")
            if pod["status"].get("podIP")
        ]

    def runtime_names(self) -> list[str]:
        out = self.kubectl("get", "inferenceruntimes", "-o", "jsonpath={.items[*].metadata.name}").stdout
        return out.split()

    @property
    def gateway_ip(self) -> str:
        return self.kubectl(
            "get", "service", "hearth-gateway", "-n", HEARTH_NAMESPACE, "-o", "jsonpath={.spec.clusterIP}"
        ).stdout.strip()

    @property
    def openai_base_url(self) -> str:
        """The front door's Service, reached from this machine through node 0 (see devcluster/network.py)."""
        return f"http://{self.gateway_ip}/v1"

    def api_key(self, namespace: str, name: str = "hearth-dev-key", wait: bool = True) -> str:
        """An API key for `namespace`'s models, as a namespace admin makes one (a labelled Secret); kept in
        the state folder so that `hearth dev env` can print it. Waits until every front door takes it."""
        with _KEYS_LOCK:  # tests ask from several threads at once: one key per namespace
            return self._api_key(namespace, name, wait)

    def _api_key(self, namespace: str, name: str, wait: bool) -> str:
        path = self.layout.state / "keys" / f"{namespace}.{name}"
        if path.exists():
            return path.read_text().strip()
        key = "sk-hearth-" + secrets.token_hex(20)
        # The namespace lets the front doors read its keys (and guards its model pods), as its admin would.
        self.kubectl("apply", "-n", namespace, "-f", str(MANIFESTS / "tenant"))
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": {KEY_LABEL: "true"}},
            "stringData": {"key": key},
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(secret))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(key + "\n")
        path.chmod(0o600)
        if wait and self.get_json("deploy", "-n", namespace, "-l", f"{ENABLED_LABEL}=true")["items"]:
            self.wait_key_taken(key)  # (the front doors read a namespace's keys once it has models)
        return key

    def wait_key_taken(self, key: str, timeout: float = 30.0) -> None:
        """Until every serving front-door pod answers the key (each learns keys from its own watch). A pod
        that is not Ready is not waited for: it turns Ready only after it has listed every key."""
        deadline = time.monotonic() + timeout
        headers = {"Authorization": f"Bearer {key}"}
        serving = [p for p in self.hearth_pods("hearth-gateway") if is_ready(p) and p["status"].get("podIP")]
        for door in serving:
            url = f"http://{door['status']['podIP']}:8080/v1/models"
            while not _answers(url, headers):
                if time.monotonic() > deadline:
                    raise processes.StartError(f"front door {door['metadata']['name']} did not take the key")
                time.sleep(0.1)

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("pods", "-n", namespace, "-l", selector)["items"]
        return items

    def live_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The pods not being deleted: a scale-down's pod drains for a while after the replicas say 0."""
        return [p for p in self.pods(namespace, selector) if not p["metadata"].get("deletionTimestamp")]

    def hearth_pods(self, component: str) -> list[dict[str, Any]]:
        """The pods of one of Hearth's Deployments (hearth-webhook, hearth-gateway, hearth-scaler)."""
        return self.pods(HEARTH_NAMESPACE, f"app.kubernetes.io/name={component}")

    @property
    def image(self) -> str:
        """The image Hearth runs from, as the overlay set it."""
        deployment = self.get_json("deploy", "hearth-webhook", "-n", HEARTH_NAMESPACE)
        return str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    def all_pids(self) -> set[int]:
        """Every process of the cluster: control plane, node daemons and shims, and every container."""
        pids = set(processes.marked(self.id))
        for node in self.node_runs():
            pids |= cgroup_pids(node.cgroup_root)
        return pids

    def container_pids(self, pod: dict[str, Any], container: str) -> list[int]:
        """The host PIDs of one container of a pod, from the node's cgroups (as `kill -9` on a node)."""
        status = next(c for c in pod["status"]["containerStatuses"] if c["name"] == container)
        container_id = status["containerID"].split("://", 1)[1]
        spec = next(s for s in self.node_specs if s.name == pod["spec"]["nodeName"])
        root = Path("/sys/fs/cgroup/pids") / f"hearth{self.layout.pod_net}-{spec.name}"
        for procs in root.rglob("cgroup.procs"):
            if procs.parent.name == container_id:
                return [int(p) for p in procs.read_text().split()]
        return []

    # --- down / status / env ------------------------------------------------------------------
    def down(self, quiet: bool = False) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        recorded = processes.load_pids(self.layout.pids)
        names: list[str] = []  # the nodes first (kube-proxy and the kubelet before containerd), then the control plane
        for suffix in NODE_PROCESSES:
            names += [name for name in recorded if name.endswith(f".{suffix}")]
        names += [name for name in CONTROL_PLANE if name in recorded]
        processes.stop_all(self.id, [(recorded[name], stop_grace(name)) for name in names])
        for node in self.node_runs():
            stop_node(node)
        host_down(self.layout.network)
        if self.layout.pids.exists():
            self.layout.pids.unlink()
        shutil.rmtree(self.layout.state / "etcd", ignore_errors=True)  # a fresh cluster each `up`
        shutil.rmtree(self.layout.state / "keys", ignore_errors=True)  # and its keys went with it
        if not quiet:
            print(f"Dev cluster in {self.layout.state} stopped; no process left.")

    def status(self) -> int:
        running = self.running()
        recorded = processes.load_pids(self.layout.pids)
        if not recorded:
            print(f"No dev cluster in {self.layout.state}. Start one with: hearth dev up")
            return 1
        for name, pid in recorded.items():
            state = "running" if name in running else "STOPPED"
            print(f"  {name:<28} {state:<8} pid {pid}")
        healthy = self.apiserver_ready()
        print(f"apiserver {self.layout.apiserver_url}: {'ready' if healthy else 'NOT ready'}")
        print(f"kubeconfig: {self.layout.kubeconfig}")
        return 0 if healthy and len(running) == len(recorded) else 1

    def env(self, namespace: str = DEMO_NAMESPACE) -> str:
        key = self.api_key(namespace, wait=False)
        return (
            f"export KUBECONFIG={self.layout.kubeconfig}\n"
            f"export OPENAI_BASE_URL={self.openai_base_url}\n"
            f"export OPENAI_API_KEY={key}  # the key of namespace {namespace} (Secret hearth-dev-key)\n"
        )
