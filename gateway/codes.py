"""Every `error.code` Hearth's gateway answers with, its HTTP status and what it means: the one table the
reference page (docs/reference/routes.md) is generated from; tests/test_docs.py checks that every code the
gateway's source passes to an error is here, and that nothing here is gone from the source.

A status of `200 (SSE)` means the code arrives as an error event of a stream already begun (a held
stream, or the model's own stream broken off): the OpenAI SDKs raise it as an APIError.
"""

from __future__ import annotations

# code: (status, who answers, meaning and what to do)
ERROR_CODES: dict[str, tuple[str, str, str]] = {
    "invalid_json": ("400", "front door", "The body is not JSON. Send a JSON object."),
    "missing_model": ("400", "front door", "The body (or form) has no `model`. Name the model."),
    "invalid_type": ("400", "front door", "`stream` is not a boolean (OpenAI answers the same)."),
    "invalid_form": ("400", "front door", "A multipart form without a boundary, not UTF-8, or cut short."),
    "invalid_api_key": ("401", "front door", "No key, an unknown key, or two credentials in one request."),
    "not_allowed": ("401/403", "front door", "`/demand` asked by someone other than Hearth's scaler (a token review)."),
    "model_not_found": (
        "404",
        "front door",
        "No model answers to that name for this key (another namespace's model is not revealed). The message "
        "lists the names that do.",
    ),
    "unknown_url": ("404", "front door", "A path the front door does not serve."),
    "method_not_allowed": ("405", "front door", "A method the path does not take."),
    "body_timeout": ("408", "front door, sidecar", "The body did not arrive within `--body-timeout`."),
    "body_too_large": ("413", "front door, sidecar", "The body is larger than `--max-body-bytes`."),
    "rate_limit_exceeded": (
        "429",
        "front door",
        "The key is over its requests per minute; `Retry-After` says when one is free.",
    ),
    "concurrency_limit_exceeded": ("429", "front door", "The key has as many requests open as it may."),
    "queue_full": (
        "429",
        "front door",
        "Too many requests are held for the model (`hearth.dev/queue-size`) or in total (`--max-held`); "
        "`Retry-After` is the model's predicted start when the scaler has measured one.",
    ),
    "internal_error": ("500", "front door", "A bug: the front door failed on the request (its log says more)."),
    "upstream_bad_header": ("502", "front door", "The model answered with a header the front door cannot relay."),
    "upstream_<status>": (
        "200 (SSE)",
        "front door",
        "The model answered a held stream with this HTTP status; its own error message is passed on.",
    ),
    "stream_broken": ("200 (SSE)", "front door", "The model's stream broke off, or ended without `data: [DONE]`."),
    "stream_malformed": ("200 (SSE)", "front door", "The model's stream is not OpenAI-shaped SSE."),
    "model_starting": (
        "503",
        "front door",
        "`hearth.dev/cold-start: reject`: the model is at zero and now starting; `Retry-After` is its "
        "predicted start (30 s before one is measured).",
    ),
    "model_start_failed": (
        "503 (or SSE)",
        "front door",
        "The model cannot start (its Deployment is Degraded: the scaler's message says why); not retried "
        "(`x-should-retry: false`).",
    ),
    "draining": ("503", "sidecar", "The pod is going away; the front door retries another pod."),
    "runtime_down": (
        "503",
        "sidecar",
        "The pod's runtime refused the connection (killed, or restarting): the front door retries another pod, "
        "or holds the request until one is ready.",
    ),
    "upstream_unreachable": (
        "502",
        "front door, sidecar",
        "The model's ready pods failed before answering, three times; or the runtime broke the connection "
        "before answering the sidecar.",
    ),
    "activation_timeout": (
        "504 (or SSE)",
        "front door",
        "No pod became ready within `hearth.dev/activation-timeout`.",
    ),
}
