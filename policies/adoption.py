"""Taking the Deployments users already have: which container is the model, what of the user's own model
container survives rendering, and what the runtime drops (said in a warning, with the fix). Pure.

The rules (the README's annotation reference says the same):
- the model container is the one `hearth.dev/container` names; else the one named `model`; else the only
  container that asks for an accelerator resource of any InferenceRuntime; else the only container;
- a user's mount at a path Hearth also mounts is merged into one: the user's wins for `/dev/shm` and for
  a hub cache (the user's volume, often a PVC, is kept and used), Hearth's wins for the runtime's host
  paths and the model's claim (the user's mount at that path is left out of the pod);
- the user's command and args are replaced by the runtime's; the warning quotes them and gives the
  `hearth.dev/extra-args` value that keeps the flags the runtime does not own."""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from policies.annotations import OWNED_FLAGS, PREFIX
from policies.errors import ContractError, Problem
from policies.runtime import InferenceRuntime

CONTAINER_KEY = PREFIX + "container"
SIDECAR_CONTAINER = "hearth-gateway"  # Hearth's own, added to every pod: never the model
MODEL_CONTAINER = "model"  # the first wave's contract: still chosen first
SHM = "/dev/shm"  # noqa: S108 - the in-memory shm mount, not a temporary file
# Where hub clients cache when the user's image runs as root and sets nothing (HF_HOME, MODELSCOPE_CACHE).
HUB_DEFAULTS = {"HF_HOME": "/root/.cache/huggingface", "MODELSCOPE_CACHE": "/root/.cache/modelscope"}
_SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "/usr/bin/env"}


def accelerator_resources(runtimes: Iterable[InferenceRuntime]) -> set[str]:
    """The accelerator resources of the runtimes: a container asking for one of them is a model's."""
    return {r.spec.accelerator.resource for r in runtimes}


def model_container(
    containers: Sequence[Mapping[str, Any]], named: str | None, accelerators: Iterable[str], where: str
) -> str:
    """The name of the container Hearth treats as the model (see the module's rules), or ContractError
    listing the containers and the fix."""
    containers = [c for c in containers if c.get("name") != SIDECAR_CONTAINER]
    if any(not isinstance(c.get("name"), str) or not c.get("name") for c in containers):
        # The apiserver refuses a nameless container too, but admission sees the object before it does.
        raise ContractError(
            [Problem("spec.containers[].name", None, "is missing: every container needs a name", "name it")]
        )
    names = [str(c.get("name")) for c in containers]
    listed = ", ".join(names) or "(none)"
    if named is not None:
        if named in names:
            return named
        raise ContractError(
            [Problem(f'{where}["{CONTAINER_KEY}"]', named, f"names no container; the containers are {listed}", "")]
        )
    if MODEL_CONTAINER in names:
        return MODEL_CONTAINER
    wanted = set(accelerators)
    asking = [str(c.get("name")) for c in containers if wanted & set(_resources(c))]
    if len(asking) == 1:
        return asking[0]
    if len(names) == 1:
        return names[0]
    why = (
        f"several containers ask for accelerators ({', '.join(asking)})"
        if asking
        else "no container asks for an accelerator"
    )
    raise ContractError(
        [
            Problem(
                "spec.template.spec.containers",
                listed,
                f"cannot tell which container is the model: {why}",
                f"add the pod-template annotation {CONTAINER_KEY}: NAME",
            )
        ]
    )


def _resources(container: Mapping[str, Any]) -> list[str]:
    resources = container.get("resources") or {}
    return [name for section in ("limits", "requests") for name in (resources.get(section) or {})]


def user_cache(container: Mapping[str, Any], variable: str) -> str | None:
    """The hub cache the user already mounts for `variable` (HF_HOME or MODELSCOPE_CACHE): the variable's
    own value when a mount covers it, else the client's default under a mounted `/root/.cache`; None when
    the user mounts none (Hearth then gives the pod an emptyDir)."""
    mounts = [clean_path(m.get("mountPath")) for m in container.get("volumeMounts") or []]
    env = {e.get("name"): e.get("value") for e in container.get("env") or []}
    candidates = [env[variable]] if isinstance(env.get(variable), str) else []
    candidates += [HUB_DEFAULTS[variable]]
    for path in candidates:
        if any(_covers(mount, path) for mount in mounts if mount):
            return str(path)
    return None


def clean_path(path: object) -> str:
    """A mount path without a trailing slash or `..` (empty when it is not a string)."""
    return posixpath.normpath(path) if isinstance(path, str) and path else ""


def _covers(mount: str, path: str) -> bool:
    path = posixpath.normpath(path)
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def dropped_command(container: Mapping[str, Any]) -> str | None:
    """The warning for a model container whose command or args the runtime replaces, with the
    `hearth.dev/extra-args` value that keeps the flags the runtime does not own; None when it has neither."""
    command = [str(a) for a in container.get("command") or []]
    args = [str(a) for a in container.get("args") or []]
    if not command and not args:
        return None
    words = command_words(container)
    kept = extra_args(words)
    said = shlex.join(command + args)
    message = f'container "{container.get("name")}": the runtime replaces its command and args ({said[:300]})'
    if kept:
        return f'{message}; to keep the flags it does not set, add {PREFIX}extra-args: "{kept}"'
    return message


def command_words(container: Mapping[str, Any]) -> list[str]:
    """The server's command line: command and args, or the script's words when a shell runs it
    (`/bin/sh -c "vllm serve ..."`, as vLLM's own Kubernetes guide writes it)."""
    words = [str(a) for a in [*(container.get("command") or []), *(container.get("args") or [])]]
    if words and words[0] in _SHELLS and "-c" in words:
        at = words.index("-c") + 1
        script = words[at] if at < len(words) else ""
        try:
            return shlex.split(script)
        except ValueError:
            return script.split()
    return words


# The flags that name the model a server reports in /v1/models, most telling first: vLLM and SGLang's
# --served-model-name, llama.cpp's --alias (llama-cpp-python's --model_alias), then the model itself (vLLM's
# --model or `vllm serve MODEL`, SGLang's --model-path, TGI's --model-id).
_NAME_FLAGS = ("--served-model-name", "--alias", "--model-alias", "--model", "--model-path", "--model-id")


def reported_name(container: Mapping[str, Any]) -> str | None:
    """The model name the server in `container` most likely reports, read off its command line."""
    words = command_words(container)
    found: dict[str, str] = {}
    for index, word in enumerate(words):
        flag, _, value = word.partition("=")
        if flag.replace("_", "-") in _NAME_FLAGS:
            value = value or (words[index + 1] if index + 1 < len(words) else "")
            found.setdefault(flag.replace("_", "-"), value.split(",")[0])
        elif word == "serve" and index + 1 < len(words) and not words[index + 1].startswith("-"):
            found.setdefault("--model", words[index + 1])
    return next((found[f] for f in _NAME_FLAGS if found.get(f)), None)


def extra_args(words: Sequence[str]) -> str:
    """The flags of a server's command line that Hearth would pass on: from the first `--flag`, without the
    ones the runtime owns (and their values)."""
    out: list[str] = []
    skip_value = False
    flagging = False
    for word in words:
        if skip_value:
            skip_value = False
            if not word.startswith("-"):
                continue
        if word.startswith("--"):
            flagging = True
            name = word.split("=", 1)[0].replace("_", "-")
            if name in OWNED_FLAGS:
                skip_value = "=" not in word
                continue
        if flagging:
            out.append(word)
    return shlex.join(out)


def _flag_value(words: Sequence[str], flag: str) -> str | None:
    """The value of `--flag` (`--flag=v` or `--flag v`; underscores and dashes alike), None when absent."""
    for index, word in enumerate(words):
        name, sep, value = word.partition("=")
        if name.replace("_", "-") == flag:
            return value if sep else (words[index + 1] if index + 1 < len(words) else "")
    return None


def engine_warnings(container: Mapping[str, Any]) -> list[str]:
    """What an engine's own defaults break behind Hearth's sidecar, learned by running it (issue: a real
    engine in the dev cluster). llama-cpp-python's server serves one request at a time and, by default, ends
    the running stream as soon as any other request arrives (`--interrupt_requests`), a readiness check
    included; and its /v1/models waits for the running completion, so a probe there times out during a long
    answer."""
    words = command_words(container)
    if not any(w == "llama_cpp.server" or w.endswith("/llama_cpp/server") for w in words):
        return []
    warnings = []
    name = container.get("name")
    if (_flag_value(words, "--interrupt-requests") or "true").lower() not in ("false", "0", "no", "off"):
        warnings.append(
            f'container "{name}" runs llama-cpp-python\'s server, which ends the running stream when another '
            "request arrives (a readiness check too): add --interrupt_requests=false so requests wait their turn"
        )
    probe = _mapping_of(_mapping_of(container.get("readinessProbe")).get("httpGet")).get("path")
    if probe == "/v1/models":
        warnings.append(
            f'container "{name}": llama-cpp-python\'s /v1/models waits for the running completion, so a readiness '
            "probe there fails during a long answer; probe /openapi.json (served as soon as the model is loaded)"
        )
    return warnings


def _mapping_of(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}
