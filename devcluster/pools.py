"""Accelerator pools of their own, for the tests and benchmarks of making room (scaler.packing): an
extended resource advertised on one node for one test alone (a PATCH of the node's status, as the
Kubernetes docs advertise extended resources), and an InferenceRuntime (a copy of a dev runtime) that asks
for it. The other tests' models neither fill such a pool nor yield to it."""

from __future__ import annotations

import time
from typing import Any

import yaml

from devcluster.cluster import Cluster
from devcluster.models import simulated_model


class AcceleratorPool:
    """`size` of `packing.test.hearth.dev/<tag>` on `node`, and the runtime `pack-<tag>` of `vendor`
    (default: the base runtime's) asking for it; removed again on exit."""

    def __init__(
        self,
        cluster: Cluster,
        tag: str,
        size: int,
        node: str = "gpu-node-0",
        base: str = "sim-nvidia",
        vendor: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.resource = f"packing.test.hearth.dev/{tag}"
        self.runtime = f"pack-{tag}"
        self.size = size
        self.node = node
        self.base = base
        self.vendor = vendor

    def _node_patch(self, op: str) -> None:
        escaped = self.resource.replace("/", "~1")
        ops = [{"op": op, "path": f"/status/{field}/{escaped}"} for field in ("capacity", "allocatable")]
        if op == "add":
            ops = [o | {"value": str(self.size)} for o in ops]
        patch = yaml.safe_dump(ops)
        self.cluster.kubectl("patch", "node", self.node, "--subresource=status", "--type=json", "-p", patch)

    def __enter__(self) -> AcceleratorPool:
        self._node_patch("add")
        docs = list(yaml.safe_load_all(self.cluster.dev_runtimes(self.cluster.image)))
        runtime = next(d for d in docs if d and d["metadata"]["name"] == self.base)
        runtime["metadata"]["name"] = self.runtime
        runtime["spec"]["accelerator"]["resource"] = self.resource
        runtime["spec"]["vendor"] = self.vendor or runtime["spec"]["vendor"]
        self.cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(runtime))
        deadline = time.monotonic() + 60
        while not all(self.runtime in known for known in self.cluster.webhook_runtimes()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the webhooks did not learn the runtime {self.runtime} within 60s")
            time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cluster.kubectl("delete", "inferenceruntime", self.runtime, "--wait=false", check=False)
        self._node_patch("remove")

    def model(self, namespace: str, name: str, **options: Any) -> dict[str, Any]:
        """A simulated model on this pool (see `resident_model`)."""
        return resident_model(namespace, name, runtime=self.runtime, **options)


def resident_model(
    namespace: str,
    name: str,
    runtime: str | None = None,
    vendors: str | None = None,
    delay: str = "10m",
    **options: Any,
) -> dict[str, Any]:
    """A simulated model, pinned to `runtime` or listing `vendors`, that stays up `delay` once woken (it
    yields its accelerator before that only to make room)."""
    deployment: dict[str, Any] = simulated_model(namespace, name, delay=delay, startup="1s", **options)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    del annotations["hearth.dev/runtime"]
    annotations.update({"hearth.dev/runtime": runtime} if runtime else {"hearth.dev/vendors": str(vendors)})
    return deployment
