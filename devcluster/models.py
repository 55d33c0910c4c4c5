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
    model: str = "hf://Qwen/Qwen3-8B",
    annotations: dict[str, str] | None = None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A scale-to-zero Deployment pinned to the `sim-nvidia` runtime; `extra-args` tune the simulator's
    load time and inter-token latency (the last flag wins, as with vLLM). `model` is served by the dev
    cluster's hub (devcluster.cluster.HUB_MODELS); `annotations` add Deployment keys; `env` goes to the model
    container (and to the node cache's fetcher, for HF_* settings)."""
    container: dict[str, Any] = {"name": "model", **({"env": env} if env else {})}
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
                **(annotations or {}),
            },
        },
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, "hearth.dev/enabled": "true"},
                    "annotations": {
                        "hearth.dev/model": model,
                        "hearth.dev/runtime": "sim-nvidia",
                        "hearth.dev/extra-args": f"--startup-duration={startup} --itl={itl}",
                    },
                },
                "spec": {"containers": [container]},
            },
        },
    }


ENGINE_RUNTIME = "llamacpp-nvidia"  # devcluster/runtime-llamacpp.yaml


def engine_model(
    namespace: str,
    name: str,
    *,
    model: str = "hf://hearth-dev/llama-tiny-gguf",
    delay: str = "3s",
    max_replicas: int = 1,
) -> dict[str, Any]:
    """A scale-to-zero Deployment pinned to the real engine's runtime (`llamacpp-nvidia`, the dev cluster
    started with the engine): a GGUF repository of the dev hub, fetched into the node's cache."""
    deployment = simulated_model(namespace, name, model=model, delay=delay, max_replicas=max_replicas, target=1)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    annotations["hearth.dev/runtime"] = ENGINE_RUNTIME
    del annotations["hearth.dev/extra-args"]  # the simulator's flags
    return deployment
