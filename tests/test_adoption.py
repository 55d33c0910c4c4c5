"""Taking the Deployments users already have (the adopt-* golden cases, written from each project's own
docs): what survives rendering, what the runtime drops (with a warning that says how to keep it), and
that no rendered pod has two volumes of one name, two mounts at one path or two env vars of one name."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from policies import ContractError, RenderSettings, model_container, render_for_pod, validate_deployment
from tests.support import GOLDEN, apiserver_pod, load_case

CASES = sorted(GOLDEN.glob("*.yaml"))
ADOPTED = [c for c in CASES if c.stem.startswith("adopt-")]


def rendered(case: Path) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    deployment, runtimes = load_case(case)
    verdict = validate_deployment(deployment, runtimes)
    pod = apiserver_pod(deployment)
    del pod["metadata"]["managedFields"]
    return deployment, render_for_pod(pod, runtimes, RenderSettings()), verdict.warnings


def containers(pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = pod["spec"]
    return {c["name"]: c for kind in ("initContainers", "containers") for c in spec.get(kind) or []}


def model_of(pod: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if "preStop" in (c.get("lifecycle") or {}))


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_one_volume_per_name_one_mount_per_path_one_variable_per_name(case: Path) -> None:
    _, pod, _ = rendered(case)
    assert not [n for n, k in Counter(v["name"] for v in pod["spec"].get("volumes") or []).items() if k > 1]
    for container in containers(pod).values():
        paths = Counter(m["mountPath"] for m in container.get("volumeMounts") or [])
        assert not [p for p, k in paths.items() if k > 1], container["name"]
        names = Counter(e["name"] for e in container.get("env") or [])
        assert not [n for n, k in names.items() if k > 1], container["name"]


@pytest.mark.parametrize("case", ADOPTED, ids=[c.stem for c in ADOPTED])
def test_what_the_user_wrote_survives_but_the_model_containers_command(case: Path) -> None:
    deployment, pod, _ = rendered(case)
    template = deployment["spec"]["template"]["spec"]
    model = model_of(pod)
    theirs = next(c for c in template["containers"] if c["name"] == model["name"])
    for variable in theirs.get("env") or []:  # every variable, Secret references included, as written
        assert variable in model["env"], variable
    assert model.get("envFrom") == theirs.get("envFrom")
    for section in ("limits", "requests"):
        for name, value in (theirs.get("resources") or {}).get(section, {}).items():
            assert model["resources"][section][name] == value
    if "securityContext" in theirs:
        assert model["securityContext"] == theirs["securityContext"]
    assert pod["spec"].get("securityContext") == template.get("securityContext")
    others = {c["name"]: c for c in [*template.get("initContainers", []), *template["containers"]]}
    del others[model["name"]]
    rendered_others = containers(pod)
    for name, container in others.items():  # unchanged but for the defaults the apiserver filled in
        assert {k: rendered_others[name][k] for k in container} == container


def test_the_vllm_guides_deployment_keeps_its_cache_and_shm_and_is_told_which_flags_to_keep() -> None:
    _, pod, warnings = rendered(GOLDEN / "adopt-vllm-gpu.yaml")
    model = model_of(pod)
    assert model["name"] == "mistral-7b"  # found by its GPU: no renaming
    mounts = {m["mountPath"]: m["name"] for m in model["volumeMounts"]}
    assert mounts == {"/root/.cache/huggingface": "cache-volume", "/dev/shm": "shm"}  # the user's, not Hearth's
    assert {"name": "HF_HOME", "value": "/root/.cache/huggingface"} in model["env"]  # the PVC is the hub cache
    assert not {"hearth-shm", "hearth-cache"} & {v["name"] for v in pod["spec"]["volumes"]}
    (dropped,) = [w for w in warnings if "replaces its command and args" in w]
    assert 'hearth.dev/extra-args: "--trust-remote-code --enable-chunked-prefill --max_num_batched_tokens 1024"' in (
        dropped
    )


def test_an_args_style_deployment_keeps_its_flags_but_those_the_runtime_owns() -> None:
    _, pod, warnings = rendered(GOLDEN / "adopt-vllm-args.yaml")
    (dropped,) = [w for w in warnings if "replaces its command and args" in w]
    assert dropped.endswith('hearth.dev/extra-args: "--max-model-len 8192 --gpu-memory-utilization 0.90"')
    model = model_of(pod)
    assert {"name": "HF_HOME", "value": "/root/.cache/huggingface"} in model["env"]  # under the mounted /root/.cache


def test_the_runtimes_host_paths_win_over_the_users_and_say_so() -> None:
    _, pod, warnings = rendered(GOLDEN / "adopt-vllm-ascend.yaml")
    model = model_of(pod)
    mounts = {m["mountPath"]: m for m in model["volumeMounts"]}
    assert mounts["/usr/local/Ascend/driver"]["name"].startswith("hearth-host-")
    assert mounts["/usr/local/Ascend/driver"]["readOnly"] is True
    assert mounts["/dev/shm"]["name"] == "shm"  # the user's 16Gi
    left_out = [w for w in warnings if "is left out" in w]
    assert len(left_out) == 4 and "volume driver at /usr/local/Ascend/driver" in left_out[0]
    # The ascend runtime has a node cache: the modelscope:// model is loaded from it, fetched by hearth-fetch.
    assert model["args"][0].startswith("/var/lib/hearth/models/modelscope/modelscope.cn-")
    assert mounts["/var/lib/hearth/models"]["readOnly"] is True


KEPT = [c for c in CASES if c.stem.startswith("keep-")]


@pytest.mark.parametrize("case", KEPT, ids=[c.stem for c in KEPT])
def test_keep_mode_runs_the_users_containers_as_written_with_the_sidecar_in_front(case: Path) -> None:
    deployment, pod, _ = rendered(case)
    template = deployment["spec"]["template"]["spec"]
    drained = {c["name"] for c in pod["spec"]["containers"] if "httpGet" in c.get("lifecycle", {}).get("preStop", {})}
    after = containers(pod)
    sidecar = after.pop("hearth-gateway")
    for theirs in [*template.get("initContainers", []), *template["containers"]]:
        got = dict(after[theirs["name"]])
        if theirs["name"] in drained:
            assert got.pop("lifecycle")["preStop"]["httpGet"]["path"] == "/drained"  # the one thing added
        assert {k: got[k] for k in theirs} == theirs  # image, command, args, env, probes, mounts: as written
        assert set(got) - set(theirs) <= {"imagePullPolicy", "terminationMessagePath", "terminationMessagePolicy"}
    assert pod["spec"].get("volumes") == template.get("volumes")  # no volume of Hearth's
    upstream = next(a for a in sidecar["args"] if a.startswith("--upstream="))
    ports = [p["containerPort"] for c in template["containers"] for p in c.get("ports") or []]
    assert int(upstream.rsplit(":", 1)[1]) in ports
    assert pod["spec"]["terminationGracePeriodSeconds"] >= 330  # the drain (300 s) and a shutdown


def test_keep_mode_follows_the_servers_own_readiness_path_and_keeps_its_prestop() -> None:
    _, pod, warnings = rendered(GOLDEN / "keep-ollama.yaml")
    sidecar = containers(pod)["hearth-gateway"]
    assert "--health-path=/" in sidecar["args"] and "--upstream=http://127.0.0.1:11434" in sidecar["args"]
    assert containers(pod)["ollama"]["lifecycle"]["preStop"] == {"exec": {"command": ["sh", "-c", "sleep 5"]}}
    assert any("preStop hook of its own, which is kept" in w for w in warnings)
    assert pod["spec"]["terminationGracePeriodSeconds"] == 600  # the user's, longer than the drain


def test_keep_mode_says_which_name_the_server_reports_when_none_is_given() -> None:
    deployment, _ = load_case(GOLDEN / "keep-vllm-cpu.yaml")
    del deployment["spec"]["template"]["metadata"]["annotations"]["hearth.dev/served-name"]
    warnings = validate_deployment(deployment).warnings
    assert any('add hearth.dev/served-name: "meta-llama/Llama-3.2-1B-Instruct"' in w for w in warnings), warnings


def test_keep_mode_refuses_a_server_on_the_sidecars_port() -> None:
    deployment, runtimes = load_case(GOLDEN / "keep-tgi.yaml")
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 8090}]
    pod = apiserver_pod(deployment)
    with pytest.raises(ContractError, match="is the port of Hearth's gateway sidecar"):
        render_for_pod(pod, runtimes, RenderSettings())


def test_a_nameless_container_is_refused_not_a_crash() -> None:
    """Admission sees a pod before the apiserver validates it: a container without a name must be a clear
    refusal (hypothesis once found a nameless one ending in an uncaught StopIteration, a 500)."""
    with pytest.raises(ContractError, match="every container needs a name"):
        model_container([{}], None, ["nvidia.com/gpu"], "metadata.annotations")
    with pytest.raises(ContractError, match="every container needs a name"):
        model_container([{"name": "model"}, {"image": "x"}], None, [], "metadata.annotations")
