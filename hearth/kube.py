"""Kubernetes helpers shared by the gateway and the scaler: list-then-watch in a thread."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger("hearth.kube")


class Informer:
    """List, then watch, one kind of object in a thread; `on_change(objects)` gets the full current set."""

    def __init__(
        self,
        list_fn: Callable[..., Any],
        on_change: Callable[[dict[str, dict[str, Any]]], None],
        label_selector: str,
        stop: threading.Event,
        **list_kwargs: Any,
    ) -> None:
        self.list_fn = list_fn
        self.on_change = on_change
        self.selector = label_selector
        self.stop = stop
        self.kwargs = list_kwargs
        self.objects: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            try:
                raw = self.list_fn(label_selector=self.selector, _preload_content=False, **self.kwargs)
                listed = json.loads(raw.data)
                self.objects = {object_key(o): o for o in listed.get("items", [])}
                self.on_change(dict(self.objects))
                stream = watch.Watch().stream(
                    self.list_fn,
                    label_selector=self.selector,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=240,
                    **self.kwargs,
                )
                for event in stream:
                    if self.stop.is_set():
                        return
                    obj = event.get("raw_object")
                    if event["type"] == "ERROR" or not isinstance(obj, dict):
                        break  # e.g. 410 Gone: list again
                    if event["type"] == "DELETED":
                        self.objects.pop(object_key(obj), None)
                    else:
                        self.objects[object_key(obj)] = obj
                    self.on_change(dict(self.objects))
            except Exception as exc:
                log.warning("watch interrupted (%s); listing again", exc)
                self.stop.wait(1.0)


def object_key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def api_client(kubeconfig: str | None = None, in_cluster: bool | None = None) -> Any:
    """A Kubernetes API client: in-cluster (the pod's ServiceAccount token) when asked, or when no kubeconfig
    is given and the process runs in a pod; else the kubeconfig ($KUBECONFIG or ~/.kube/config by default)."""
    import os

    from kubernetes import client, config

    if in_cluster or (in_cluster is None and kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ):
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(kubeconfig)


SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace(default: str = "hearth-system") -> str:
    """The namespace this pod runs in (from its ServiceAccount mount), else `default`."""
    try:
        with open(SERVICE_ACCOUNT_NAMESPACE) as handle:
            return handle.read().strip() or default
    except OSError:
        return default


class PeerPods:
    """The pods of another Hearth component (by label selector, in one namespace), as base URLs.

    Hearth's components find each other through the Kubernetes API rather than a Service: the scaler must
    read every front door (demand is their sum), and a front door must reach the leading scaler, which a
    Service would hide behind one random replica. It needs no cluster DNS either.
    """

    def __init__(self, api_client: Any, namespace: str, selector: str, port: int, stop: threading.Event) -> None:
        from kubernetes import client

        self.port = port
        self._pods: dict[str, dict[str, Any]] = {}
        core = client.CoreV1Api(api_client)
        self._informer = Informer(core.list_namespaced_pod, self._set, selector, stop, namespace=namespace)

    def _set(self, pods: dict[str, dict[str, Any]]) -> None:
        self._pods = pods

    def start(self) -> None:
        threading.Thread(target=self._informer.run, name="hearth-peers", daemon=True).start()

    def urls(self) -> list[str]:
        return peer_urls(self._pods.values(), self.port)


def peers(
    api_client: Any, fixed: list[str], selector: str | None, namespace: str | None, port: int, stop: threading.Event
) -> Callable[[], list[str]]:
    """The base URLs of a peer component at each call: the fixed ones, plus, with a selector, the pods it
    selects in `namespace` (default: this pod's), watched from now on."""
    if not selector:
        return lambda: list(fixed)
    pods = PeerPods(api_client, namespace or own_namespace(), selector, port, stop)
    pods.start()
    return lambda: [*fixed, *pods.urls()]


def peer_urls(pods: Iterable[Mapping[str, Any]], port: int) -> list[str]:
    """Base URLs of the running pods with an address that are not being deleted, sorted (a stable order)."""
    found = []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        found.append(f"http://{status['podIP']}:{port}")
    return sorted(found)
