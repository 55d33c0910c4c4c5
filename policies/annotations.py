"""The user's contract: the `hearth.dev/` annotations of a Deployment, parsed and validated.

Keys that change only the scale live on the Deployment's metadata (editing them never restarts a model);
keys that change the pod live on the pod template (editing them rolls the Deployment out).
"""

from __future__ import annotations

import difflib
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from policies.errors import Collector
from policies.modelsource import ModelSource, parse_model_uri
from policies.values import boolean, duration_seconds, is_dns_label, is_dns_subdomain, quantity, whole_number

PREFIX = "hearth.dev/"
ENABLED_LABEL = "hearth.dev/enabled"
RENDERED = "hearth.dev/rendered"  # written by the webhook on pods, never by users
STATUS = "hearth.dev/status"  # where older scalers wrote their status; now only removed (see policies.phases)
PHASE_LABEL = "hearth.dev/phase"  # written by the scaler: ScaledToZero, Activating, Ready, Scaling, Degraded
Scope = Literal["deployment", "template"]
DEPLOYMENT_WHERE = "metadata.annotations"
TEMPLATE_WHERE = "spec.template.metadata.annotations"


@dataclass(frozen=True)
class Key:
    name: str
    scope: Scope
    default: str
    doc: str


KEYS: tuple[Key, ...] = (
    Key("min-replicas", "deployment", "0", "Fewest replicas; 0 allows scale-to-zero."),
    Key("max-replicas", "deployment", "1", "Most replicas the scaler may ask for."),
    Key("target", "deployment", "10", "Queue depth (waiting + in flight) per replica that triggers scale-out."),
    Key("scale-down-delay", "deployment", "5m", "How long demand must stay lower before one step down or to zero."),
    Key(
        "cold-start",
        "deployment",
        "keepalive",
        "`keepalive` holds requests while the model starts; `reject` answers 503 at once.",
    ),
    Key(
        "heartbeat-interval", "deployment", "10s", "Interval of SSE comment heartbeats sent to held streaming clients."
    ),
    Key(
        "json-keepalive",
        "deployment",
        "false",
        "`true`: a held non-streaming request gets a 200 at once and a space every heartbeat interval, so "
        "proxies with idle timeouts keep it; errors then come as a 200 with an `error` body.",
    ),
    Key(
        "cold-start-progress",
        "deployment",
        "false",
        "`true`: a held streaming chat request is told how the start goes, as `reasoning_content` deltas that "
        "chat UIs show as the model's thinking (waiting for a node, fetching, loading, about how long), then "
        "the model's answer. Off by default: API clients see only SSE comments while held.",
    ),
    Key("activation-timeout", "deployment", "10m", "How long a request is held waiting for a ready pod."),
    Key(
        "prewarm",
        "deployment",
        "false",
        "`true`: fetch the model into the node cache of every node its runtime can run on, while it sits at "
        "zero; a number N: N such nodes (those already holding it count first). Needs an `hf://` or "
        "`modelscope://` model and a runtime with `spec.cache`.",
    ),
    Key("queue-size", "deployment", "100", "Requests held per model while it has no ready pod; beyond it: 429."),
    Key(
        "anticipate",
        "deployment",
        "false",
        "`true`: the scaler learns in which hours of the week the model is used and wakes it shortly before an "
        "hour in which its use usually begins (at most `--anticipations-per-day` times a day; back to zero "
        "after scale-down-delay when no request comes).",
    ),
    Key(
        "priority",
        "deployment",
        "0",
        "0 to 1000. When accelerators run out, a waking model may retire idle replicas of models of the same "
        "or lower priority, never of a higher one. Capped by the namespace's label `hearth.dev/max-priority` "
        "(a cluster admin's), else by the scaler's `--default-max-priority`.",
    ),
    Key(
        "model",
        "template",
        "(none: keep mode)",
        "Model URI: hf://, huggingface://, modelscope://, pvc://claim[/sub], s3://bucket/prefix; the model "
        "container is then rendered from a runtime. Without it, the containers run as written (keep mode).",
    ),
    Key(
        "port",
        "template",
        "(first containerPort, else 8000)",
        "Keep mode: the port the model container's server listens on, where the sidecar sends requests.",
    ),
    Key(
        "container",
        "template",
        "(see below)",
        "Which container is the model, when none is named `model` and the rule below cannot tell.",
    ),
    Key("vendors", "template", "(any)", "Accelerator vendors in order of preference, e.g. `nvidia,ascend`."),
    Key("runtime", "template", "(none)", "Pin one InferenceRuntime by name (instead of `vendors`)."),
    Key("accelerators", "template", "1", "Accelerators per pod (the runtime's resource, as a limit)."),
    Key("drain-timeout", "template", "(runtime's)", "Longest wait for open streams to finish when a pod goes away."),
    Key(
        "extra-args",
        "template",
        "(none)",
        "Extra runtime arguments, shell-quoted, appended to the runtime's; not the flags it owns "
        "(--port, --host, --uds, --served-model-name, --model).",
    ),
    Key(
        "cache-size",
        "template",
        "(unbounded)",
        "Size limit of the emptyDir that caches hub downloads (runtimes without a node cache, `spec.cache`).",
    ),
    Key("shm-size", "template", "2Gi", "Size of the in-memory /dev/shm."),
    Key(
        "served-name",
        "template",
        "(Deployment name)",
        "Model names clients may use, comma-separated; the first is the one the server serves (in render mode "
        "passed as --served-model-name; in keep mode the name your server reports in /v1/models).",
    ),
)
KEYS_BY_NAME = {PREFIX + key.name: key for key in KEYS}


PREWARM_ALL = 1_000_000  # hearth.dev/prewarm: "true"


@dataclass(frozen=True)
class ScaleSpec:
    """What the scaler and gateway read from a Deployment's metadata."""

    min_replicas: int = 0
    max_replicas: int = 1
    target: int = 10
    scale_down_delay: float = 300.0
    cold_start: Literal["keepalive", "reject"] = "keepalive"
    heartbeat_interval: float = 10.0
    json_keepalive: bool = False
    cold_start_progress: bool = False
    anticipate: bool = False
    activation_timeout: float = 600.0
    queue_size: int = 100
    prewarm: int = 0  # nodes to hold the model in their cache (PREWARM_ALL: every node that could run it)
    priority: int = 0  # who yields accelerators to whom (scaler.packing)


@dataclass(frozen=True)
class PodSpec:
    """What the webhook reads from a pod template to render the runtime pod."""

    model: ModelSource | None  # None: keep mode, the containers run as written
    vendors: tuple[str, ...] = ()
    runtime: str | None = None
    accelerators: int = 1
    drain_timeout: float | None = None
    extra_args: tuple[str, ...] = ()
    cache_size: str | None = None
    shm_size: str = "2Gi"
    served_names: tuple[str, ...] = ()
    container: str | None = None  # the model container's name (policies.adoption)
    port: int | None = None  # keep mode: the server's port

    @property
    def served_name(self) -> str | None:
        """The name the server serves (the first of `served_names`), None for the Deployment's name."""
        return self.served_names[0] if self.served_names else None


# Keys that shape the rendered model container: meaningless in keep mode, where the containers run as written.
RENDER_ONLY = ("vendors", "runtime", "accelerators", "extra-args", "cache-size", "shm-size")


def _where(scope_where: str, key: str) -> str:
    return f'{scope_where}["{key}"]'


def _check_keys(errors: Collector, annotations: Mapping[str, str], scope: Scope, where: str) -> dict[str, str]:
    """Unknown keys are errors (a typo must not pass silently); a key in the wrong place names its home."""
    ours: dict[str, str] = {}
    for full, value in annotations.items():
        if not full.startswith(PREFIX):
            continue
        key = KEYS_BY_NAME.get(full)
        if full == RENDERED and scope == "template":
            errors.add(_where(where, full), value, "is written by the webhook on pods", "remove it from the template")
        elif full == RENDERED or (full == STATUS and scope == "deployment"):
            continue  # Hearth's own bookkeeping
        elif key is None:
            names = [k.name for k in KEYS if k.scope == scope]
            close = difflib.get_close_matches(full.removeprefix(PREFIX), [k.name for k in KEYS], n=1)
            fix = f"did you mean {PREFIX}{close[0]}? fix the spelling" if close else "fix the spelling or remove it"
            errors.add(_where(where, full), value, "is not a Hearth key; known here: " + ", ".join(names), fix)
        elif key.scope != scope:
            home = DEPLOYMENT_WHERE if key.scope == "deployment" else TEMPLATE_WHERE
            why = (
                "so that changing it never restarts the model"
                if key.scope == "deployment"
                else "because it changes the pod"
            )
            errors.add(_where(where, full), value, f"belongs on the Deployment's {home}, {why}", f"move it to {home}")
        else:
            ours[key.name] = value
    return ours


# Flags the rendered pod depends on, so the runtime sets them and extra-args may not: the sidecar reaches
# the runtime at the port Hearth renders, the front door asks for the served name, the model is the URI's.
OWNED_FLAGS = {
    "--port": "the sidecar reaches the runtime at the port the InferenceRuntime sets",
    "--host": "the sidecar reaches the runtime at the address the InferenceRuntime sets",
    "--uds": "the sidecar reaches the runtime over TCP at the port the InferenceRuntime sets",
    "--served-model-name": "the front door asks for the name set by hearth.dev/served-name (use that key)",
    "--model": "the model is the one hearth.dev/model names (change that key)",
}


def _refuse_owned_flags(errors: Collector, where: str, raw: str, args: tuple[str, ...]) -> None:
    for arg in args:
        flag = arg.split("=", 1)[0].replace("_", "-")
        if flag in OWNED_FLAGS:
            errors.add(where, raw, f"must not set {flag}: {OWNED_FLAGS[flag]}", f"remove {flag} from extra-args")
            return


def parse_scale(annotations: Mapping[str, str] | None, errors: Collector) -> ScaleSpec:
    """Parse the Deployment-metadata keys; problems go to `errors`, defaults fill the gaps."""
    raw = _check_keys(errors, annotations or {}, "deployment", DEPLOYMENT_WHERE)
    spec = ScaleSpec()
    at: Callable[[str], str] = lambda name: _where(DEPLOYMENT_WHERE, PREFIX + name)  # noqa: E731
    values: dict[str, object] = {}
    if "min-replicas" in raw:
        values["min_replicas"] = whole_number(errors, at("min-replicas"), raw["min-replicas"], 0, 1000, 0)
    if "max-replicas" in raw:
        values["max_replicas"] = whole_number(errors, at("max-replicas"), raw["max-replicas"], 1, 1000, 3)
    if "target" in raw:
        values["target"] = whole_number(errors, at("target"), raw["target"], 1, 100_000, 10)
    if "scale-down-delay" in raw:
        values["scale_down_delay"] = duration_seconds(
            errors, at("scale-down-delay"), raw["scale-down-delay"], 0, 7 * 86400, "5m"
        )
    if "cold-start" in raw:
        mode = raw["cold-start"].strip()
        if mode in ("keepalive", "reject"):
            values["cold_start"] = mode
        else:
            errors.add(
                at("cold-start"),
                raw["cold-start"],
                "must be keepalive or reject",
                'write "keepalive" (the default) or "reject"',
            )
    if "heartbeat-interval" in raw:
        values["heartbeat_interval"] = duration_seconds(
            errors, at("heartbeat-interval"), raw["heartbeat-interval"], 1, 300, "10s"
        )
    for key in ("json-keepalive", "anticipate", "cold-start-progress"):
        if key in raw:
            values[key.replace("-", "_")] = boolean(errors, at(key), raw[key])
    if "activation-timeout" in raw:
        values["activation_timeout"] = duration_seconds(
            errors, at("activation-timeout"), raw["activation-timeout"], 1, 7200, "10m"
        )
    if "queue-size" in raw:
        values["queue_size"] = whole_number(errors, at("queue-size"), raw["queue-size"], 0, 100_000, 100)
    if "priority" in raw:
        values["priority"] = whole_number(errors, at("priority"), raw["priority"], 0, 1000, 100)
    if "prewarm" in raw:
        flag = raw["prewarm"].strip()
        if flag in ("true", "false"):
            values["prewarm"] = PREWARM_ALL if flag == "true" else 0
        else:
            values["prewarm"] = whole_number(errors, at("prewarm"), flag, 0, 1000, 2)
    clean = {k: v for k, v in values.items() if v is not None}
    spec = ScaleSpec(**clean)  # type: ignore[arg-type]
    if spec.max_replicas < spec.min_replicas:
        errors.add(
            at("max-replicas"),
            str(spec.max_replicas),
            f"must be at least min-replicas ({spec.min_replicas})",
            f'raise max-replicas to "{spec.min_replicas}" or more, or lower min-replicas',
        )
    return spec


def parse_pod(annotations: Mapping[str, str] | None, errors: Collector, where: str = TEMPLATE_WHERE) -> PodSpec | None:
    """Parse the pod-template keys; returns None when the model URI is broken. Without `hearth.dev/model`
    the spec is keep mode (`model` None)."""
    raw = _check_keys(errors, annotations or {}, "template", where)
    at: Callable[[str], str] = lambda name: _where(where, PREFIX + name)  # noqa: E731
    values: dict[str, object] = {}
    model: ModelSource | None = None
    if "model" in raw:
        model = parse_model_uri(errors, at("model"), raw["model"])
        if "port" in raw:
            errors.add(at("port"), raw["port"], "is for keep mode; here the runtime sets the port", "remove it")
    else:
        for key in RENDER_ONLY:
            if key in raw:
                errors.add(
                    at(key),
                    raw[key],
                    f"renders the model container from a runtime, which needs {PREFIX}model (without it, the "
                    "containers run as written: keep mode)",
                    f"add {PREFIX}model, or remove {PREFIX}{key}",
                )
        if "port" in raw:
            values["port"] = whole_number(errors, at("port"), raw["port"], 1, 65535, 8000)
    if "vendors" in raw:
        vendors = tuple(v.strip() for v in raw["vendors"].split(",") if v.strip())
        bad = [v for v in vendors if not is_dns_label(v)]
        if not vendors or bad or len(set(vendors)) != len(vendors):
            errors.add(
                at("vendors"),
                raw["vendors"],
                "must be a comma-separated list of distinct vendor names such as nvidia,ascend",
                'write e.g. "nvidia,ascend"',
            )
        else:
            values["vendors"] = vendors
    if "runtime" in raw:
        name = raw["runtime"].strip()
        if not is_dns_subdomain(name):
            errors.add(
                at("runtime"),
                raw["runtime"],
                "must be an InferenceRuntime name (lower-case DNS name)",
                'write e.g. "vllm-nvidia"',
            )
        elif "vendors" in raw:
            errors.add(
                at("runtime"),
                raw["runtime"],
                "pins one runtime, so hearth.dev/vendors cannot be set beside it",
                "keep hearth.dev/runtime or hearth.dev/vendors, not both",
            )
        else:
            values["runtime"] = name
    if "accelerators" in raw:
        values["accelerators"] = whole_number(errors, at("accelerators"), raw["accelerators"], 1, 64, 1)
    if "drain-timeout" in raw:
        values["drain_timeout"] = duration_seconds(errors, at("drain-timeout"), raw["drain-timeout"], 0, 3600, "5m")
    if "extra-args" in raw:
        try:
            extra = tuple(shlex.split(raw["extra-args"]))
        except ValueError as exc:
            errors.add(
                at("extra-args"), raw["extra-args"], f"must be shell-quoted arguments ({exc})", "close every quote"
            )
        else:
            values["extra_args"] = extra
            _refuse_owned_flags(errors, at("extra-args"), raw["extra-args"], extra)
    if "cache-size" in raw:
        values["cache_size"] = quantity(errors, at("cache-size"), raw["cache-size"], "100Gi")
    if "shm-size" in raw:
        values["shm_size"] = quantity(errors, at("shm-size"), raw["shm-size"], "2Gi")
    if "container" in raw:
        name = raw["container"].strip()
        if is_dns_label(name):
            values["container"] = name
        else:
            errors.add(at("container"), raw["container"], "must be a container name", 'write e.g. "vllm"')
    if "served-name" in raw:
        names = tuple(n.strip() for n in raw["served-name"].split(","))
        if not all(n and len(n) <= 253 and not any(c.isspace() or c in "\"'" for c in n) for n in names):
            errors.add(
                at("served-name"),
                raw["served-name"],
                "must be model names without spaces or quotes, separated by commas",
                'write e.g. "qwen3-8b" or "Qwen/Qwen3-8B,qwen3"',
            )
        else:
            values["served_names"] = tuple(dict.fromkeys(names))
    if "model" in raw and model is None:  # a broken URI (recorded): nothing to render from
        return None
    clean = {k: v for k, v in values.items() if v is not None}
    return PodSpec(model=model, **clean)  # type: ignore[arg-type]
