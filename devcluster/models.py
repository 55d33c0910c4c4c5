"""Annotated Deployments of simulator-backed models, as the tests, benchmarks and demo apply them."""

from __future__ import annotations

from typing import Any


def simulated_model(
    namespace: str,
    name: str,
    *,
    max_replicas: int = 3,
    target: int = 2,
    delay: str = "3s",
    startup: str = "1s",
    itl: str = "20ms",
    heartbeat: str = "1s",
) -> dict[str, Any]:
    """A scale-to-zero Deployment pinned to the `sim-nvidia` runtime; `extra-args` tune the simulator's
    load time and inter-token latency (the last flag wins, as with vLLM)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"hearth.dev/enabled": "true"},
            "annotations": {
                "hearth.dev/min-replicas": "0",
                "hearth.dev/max-replicas": str(max_replicas),
                "hearth.dev/target": str(target),
                "hearth.dev/scale-down-delay": delay,
                "hearth.dev/heartbeat-interval": heartbeat,
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "hearth.dev/enabled": "true"},
                    "annotations": {
                        "hearth.dev/model": "hf://Qwen/Qwen3-8B",
                        "hearth.dev/runtime": "sim-nvidia",
                        "hearth.dev/extra-args": f"--startup-duration={startup} --itl={itl}",
                    },
                },
                "spec": {"containers": [{"name": "model"}]},
            },
        },
    }
