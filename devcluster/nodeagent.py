"""A stand-in for the kubelet on simulated accelerator nodes. Honest about what it is: it registers Node
objects that advertise accelerators, keeps them Ready (status and Lease heartbeats), runs each bound pod's
containers as local processes on the pod's own loopback address, reports podIP, container statuses and
readiness (from the pod's own readiness probes), and on deletion runs preStop, sends SIGTERM, waits the
pod's grace period, then SIGKILL, and removes the pod, as a kubelet does. It mounts no volumes and pulls
no images."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.containers import command_for, probe_url

log = logging.getLogger("hearth.nodeagent")
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str]
    accelerators: dict[str, str]
    taints: list[dict[str, str]] = field(default_factory=list)


DEFAULT_NODES = (
    NodeSpec(
        "gpu-node-0",
        {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "Simulated-A100"},
        {"nvidia.com/gpu": "4"},
        [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    ),
    NodeSpec("ascend-node-0", {"accelerator": "huawei-Ascend910"}, {"huawei.com/Ascend910": "8"}),
    NodeSpec("ascend310p-node-0", {"accelerator": "huawei-Ascend310P"}, {"huawei.com/Ascend310P": "4"}),
)


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AddressPool:
    def __init__(self, pod_net: int) -> None:
        self._free = [f"127.{pod_net}.0.{n}" for n in range(10, 250)]
        self._lock = threading.Lock()

    def take(self) -> str:
        with self._lock:
            return self._free.pop(0)

    def give(self, address: str) -> None:
        with self._lock:
            self._free.append(address)


class PodRunner:
    """One pod's processes, probes and status."""

    def __init__(self, agent: NodeAgent, pod: dict[str, Any]) -> None:
        self.agent = agent
        self.namespace = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.pod = pod
        self.ip = agent.addresses.take()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.restarts: dict[str, int] = {}
        self.started_at: dict[str, str] = {}
        self.terminating = threading.Event()
        self.stopped = threading.Event()
        self._last_status: Any = None

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod["spec"].get("containers") or [])

    def start(self) -> None:
        for container in self.containers:
            self._spawn(container)
        threading.Thread(target=self._probe_loop, name=f"probe-{self.name}", daemon=True).start()

    def _spawn(self, container: dict[str, Any]) -> None:
        argv = command_for(container, self.ip)
        env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "value" in e}
        logfile = self.agent.log_dir / f"{self.namespace}_{self.name}_{container['name']}.log"
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, **env},
            )
        self.procs[container["name"]] = proc
        self.started_at[container["name"]] = now()
        log.info(
            "pod %s/%s container %s started as pid %d on %s",
            self.namespace,
            self.name,
            container["name"],
            proc.pid,
            self.ip,
        )

    def _ready(self, container: dict[str, Any]) -> bool:
        proc = self.procs.get(container["name"])
        if proc is None or proc.poll() is not None:
            return False
        probe = container.get("readinessProbe")
        url = probe_url(self._resolve_port(probe, container), self.ip)
        if url is None:
            return True
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - the pod's own probe URL
                return 200 <= int(response.status) < 400
        except (urllib.error.URLError, OSError, ValueError):
            return False

    @staticmethod
    def _resolve_port(probe: dict[str, Any] | None, container: dict[str, Any]) -> dict[str, Any] | None:
        http = (probe or {}).get("httpGet")
        if not isinstance(http, dict) or not isinstance(http.get("port"), str) or str(http["port"]).isdigit():
            return probe
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        return {**(probe or {}), "httpGet": {**http, "port": ports.get(http["port"], http["port"])}}

    def _probe_loop(self) -> None:
        while not self.stopped.is_set():
            self._restart_exited()
            self._report()
            self.stopped.wait(0.5)

    def _restart_exited(self) -> None:
        if self.terminating.is_set():
            return
        for container in self.containers:
            proc = self.procs.get(container["name"])
            if proc is not None and proc.poll() is not None:
                self.restarts[container["name"]] = self.restarts.get(container["name"], 0) + 1
                log.warning(
                    "container %s of %s exited with %s; restarting", container["name"], self.name, proc.returncode
                )
                self._spawn(container)

    def _report(self) -> None:
        statuses = []
        for container in self.containers:
            name = container["name"]
            proc = self.procs.get(name)
            running = proc is not None and proc.poll() is None
            ready = not self.terminating.is_set() and self._ready(container)
            state: dict[str, Any] = (
                {"running": {"startedAt": self.started_at[name]}}
                if running
                else {"terminated": {"exitCode": proc.returncode if proc else 0, "reason": "Completed"}}
            )
            statuses.append(
                {
                    "name": name,
                    "ready": ready,
                    "started": running,
                    "restartCount": self.restarts.get(name, 0),
                    "image": container.get("image", ""),
                    "imageID": "",
                    "state": state,
                    "containerID": f"hearth://{proc.pid if proc else 0}",
                }
            )
        all_ready = all(s["ready"] for s in statuses)
        key = (all_ready, tuple((s["name"], s["ready"], s["started"], s["restartCount"]) for s in statuses))
        if key == self._last_status:
            return
        condition = "True" if all_ready else "False"
        status = {
            "phase": "Running",
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "startTime": self.started_at.get(self.containers[0]["name"], now()),
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now()},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now()},
                {"type": "ContainersReady", "status": condition, "lastTransitionTime": now()},
                {"type": "Ready", "status": condition, "lastTransitionTime": now()},
            ],
            "containerStatuses": statuses,
        }
        if self.agent.patch_pod_status(self.namespace, self.name, status):
            self._last_status = key

    def terminate(self, grace: float) -> None:
        """preStop hooks, SIGTERM, the grace period, SIGKILL: each container in parallel, as a kubelet does."""
        if self.terminating.is_set():
            return
        self.terminating.set()
        deadline = time.monotonic() + grace
        threads = [
            threading.Thread(target=self._stop_container, args=(c, deadline), daemon=True) for c in self.containers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.stopped.set()
        self.agent.addresses.give(self.ip)
        log.info("pod %s/%s stopped", self.namespace, self.name)

    def _stop_container(self, container: dict[str, Any], deadline: float) -> None:
        proc = self.procs.get(container["name"])
        if proc is None or proc.poll() is not None:
            return
        pre_stop = probe_url(((container.get("lifecycle") or {}).get("preStop")), self.ip)
        if pre_stop is not None:
            try:
                with urllib.request.urlopen(pre_stop, timeout=max(0.1, deadline - time.monotonic())):  # noqa: S310
                    pass
            except (urllib.error.URLError, OSError, ValueError) as exc:
                log.info("preStop of %s/%s: %s", self.name, container["name"], exc)
        _kill_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s/%s outlived its grace period; SIGKILL", self.name, container["name"])
            _kill_group(proc, signal.SIGKILL)
            proc.wait()


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, sig)


class NodeAgent:
    def __init__(self, api_client: Any, nodes: tuple[NodeSpec, ...], pod_net: int, log_dir: Path) -> None:
        from kubernetes import client

        self.core: Any = client.CoreV1Api(api_client)
        self.coordination: Any = client.CoordinationV1Api(api_client)
        self.nodes = nodes
        self.node_names = {n.name for n in nodes}
        self.addresses = AddressPool(pod_net)
        self.log_dir = log_dir
        self.runners: dict[str, PodRunner] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()

    # --- nodes -------------------------------------------------------------------------------
    def register(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for node in self.nodes:
            body = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node.name,
                    "labels": {
                        "kubernetes.io/hostname": node.name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "hearth.dev/simulated": "true",
                        **node.labels,
                    },
                },
                "spec": {"taints": node.taints} if node.taints else {},
            }
            try:
                self.core.create_node(body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                self.core.patch_node(node.name, {"metadata": body["metadata"], "spec": body["spec"]})
        self.heartbeat()

    def heartbeat(self) -> None:
        from kubernetes.client.exceptions import ApiException

        for node in self.nodes:
            capacity = {"cpu": "32", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti", **node.accelerators}
            status = {
                "capacity": capacity,
                "allocatable": capacity,
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": node.name},
                ],
                "conditions": [
                    {
                        "type": t,
                        "status": "False",
                        "reason": f"No{t}",
                        "message": "simulated node",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                    for t in ("MemoryPressure", "DiskPressure", "PIDPressure")
                ]
                + [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "HearthNodeAgentReady",
                        "message": "hearth node agent is posting ready status",
                        "lastHeartbeatTime": now(),
                        "lastTransitionTime": now(),
                    }
                ],
                "nodeInfo": {
                    "kubeletVersion": "v1.36.3-hearth-agent",
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                    "containerRuntimeVersion": "hearth-process://0.1",
                    "kernelVersion": "",
                    "osImage": "hearth simulated node",
                    "machineID": "",
                    "systemUUID": "",
                    "bootID": "",
                },
            }
            self.core.patch_node_status(node.name, {"status": status})
            lease = {
                "metadata": {"name": node.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now_micro()},
            }
            try:
                self.coordination.patch_namespaced_lease(node.name, "kube-node-lease", {"spec": lease["spec"]})
            except ApiException as exc:
                if exc.status != 404:
                    raise
                self.coordination.create_namespaced_lease("kube-node-lease", lease)

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    # --- pods --------------------------------------------------------------------------------
    def patch_pod_status(self, namespace: str, name: str, status: dict[str, Any]) -> bool:
        try:
            self.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        except Exception as exc:
            log.debug("status of %s/%s not written: %s", namespace, name, exc)
            return False
        return True

    def on_pod(self, event_type: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if pod.get("spec", {}).get("nodeName") not in self.node_names:
            return
        uid = meta["uid"]
        with self.lock:
            runner = self.runners.get(uid)
            if event_type == "DELETED":
                if runner is not None:
                    threading.Thread(target=runner.terminate, args=(0,), daemon=True).start()
                    self.runners.pop(uid, None)
                return
            if runner is None and meta.get("deletionTimestamp"):
                # Nothing of it runs here (say, the agent restarted): finish the deletion at once.
                threading.Thread(target=self._remove, args=(meta["namespace"], meta["name"], uid), daemon=True).start()
                return
            if runner is None:
                runner = PodRunner(self, pod)
                self.runners[uid] = runner
                runner.start()
        if runner is not None and meta.get("deletionTimestamp"):
            grace = float(
                meta.get("deletionGracePeriodSeconds") or pod["spec"].get("terminationGracePeriodSeconds") or 30
            )
            threading.Thread(target=self._delete, args=(runner, grace), daemon=True).start()

    def _delete(self, runner: PodRunner, grace: float) -> None:
        if runner.terminating.is_set():
            return
        runner.terminate(grace)
        self._remove(runner.namespace, runner.name, runner.uid)
        with self.lock:
            self.runners.pop(runner.uid, None)

    def _remove(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's last word on a pod whose containers have stopped: delete it with no grace left."""
        try:
            # The body, when there is one, replaces the query parameters: the grace period goes in it.
            options = {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
            self.core.delete_namespaced_pod(name, namespace, body=options)
        except Exception as exc:
            log.debug("final delete of %s/%s: %s", namespace, name, exc)

    def watch_pods(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                listed = self.core.list_pod_for_all_namespaces(_preload_content=False)
                data = json.loads(listed.data)
                for item in data.get("items", []):
                    self.on_pod("ADDED", item)
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    resource_version=data["metadata"]["resourceVersion"],
                    timeout_seconds=300,
                )
                for event in stream:
                    if self.stop.is_set():
                        return
                    obj = event.get("raw_object") or {}
                    if isinstance(obj, dict) and obj.get("kind") == "Pod":
                        self.on_pod(str(event["type"]), obj)
            except Exception as exc:
                log.warning("pod watch interrupted (%s); re-listing", exc)
                self.stop.wait(1)

    def run(self) -> None:
        self.register()
        threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True).start()
        watcher = threading.Thread(target=self.watch_pods, name="pod-watch", daemon=True)
        watcher.start()
        self.stop.wait()
        with self.lock:
            runners = list(self.runners.values())
        threads = [threading.Thread(target=r.terminate, args=(5,)) for r in runners]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def main(kubeconfig: str, pod_net: int, log_dir: Path) -> int:
    from kubernetes import config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    api_client = config.new_client_from_config(kubeconfig)
    log_dir.mkdir(parents=True, exist_ok=True)
    agent = NodeAgent(api_client, DEFAULT_NODES, pod_net, log_dir)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop.set())
    signal.signal(signal.SIGINT, lambda *_: agent.stop.set())
    agent.run()
    return 0
