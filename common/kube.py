"""Where a service finds its cluster: the official client's configuration (kubeconfig or in-cluster), and
the namespace this pod runs in."""

from __future__ import annotations

from typing import Any


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
