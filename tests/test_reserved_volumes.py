"""Hearth's volumes are mounted only where and as Hearth renders them: the runtime's host paths
(`hearth-host-N`) read-only in the model container. A second mount of one, or a mount in another
container, used to get it writable."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies import ContractError, RenderSettings, render_for_pod, validate_deployment
from tests.support import ROOT, apiserver_pod, load_case

DEPLOYMENT, RUNTIMES = load_case(ROOT / "tests" / "golden" / "ascend-910b.yaml")


def containers(obj: dict[str, Any], kind: str = "containers") -> list[dict[str, Any]]:
    spec = obj["spec"]["template"]["spec"] if obj.get("kind") == "Deployment" else obj["spec"]
    listed: list[dict[str, Any]] = spec.setdefault(kind, [])
    return listed


def model_of(obj: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in containers(obj) if c["name"] == "model")


def rendered() -> dict[str, Any]:
    return render_for_pod(apiserver_pod(DEPLOYMENT), RUNTIMES, RenderSettings())


def test_the_runtime_host_paths_are_mounted_read_only_once() -> None:
    mounts = [m for m in model_of(rendered())["volumeMounts"] if m["name"].startswith("hearth-host-")]
    assert mounts and all(m["readOnly"] is True for m in mounts)
    assert len({m["name"] for m in mounts}) == len(mounts)


WRITABLE_MOUNT = {"name": "hearth-host-0", "mountPath": "/mnt/driver"}


def pod_with(kind: str, container: str) -> dict[str, Any]:
    pod = apiserver_pod(DEPLOYMENT)
    if container == "model":
        # The first mount of it is replaced by Hearth's read-only one; a second stays the user's.
        second = {**WRITABLE_MOUNT, "mountPath": "/mnt/again"}
        model_of(pod).setdefault("volumeMounts", []).extend([WRITABLE_MOUNT, {"name": "x", "mountPath": "/x"}, second])
    else:
        containers(pod, kind).append({"name": container, "image": "busybox", "volumeMounts": [WRITABLE_MOUNT]})
    return pod


@pytest.mark.parametrize(
    ("kind", "container"),
    [("containers", "model"), ("containers", "helper"), ("initContainers", "setup")],
)
def test_another_mount_of_a_hearth_volume_is_refused_at_render(kind: str, container: str) -> None:
    pod = pod_with(kind, container)
    if container == "model":
        pod["spec"].setdefault("volumes", []).append({"name": "x", "emptyDir": {}})
    with pytest.raises(ContractError) as caught:
        render_for_pod(pod, RUNTIMES, RenderSettings())
    message = caught.value.message
    assert f'spec.{kind}["{container}"].volumeMounts' in message and '"hearth-host-0"' in message
    assert "mounted only by Hearth" in message and "fix: remove the mount" in message


@pytest.mark.parametrize(
    ("kind", "container"),
    [("containers", "model"), ("containers", "helper"), ("initContainers", "setup")],
)
def test_a_template_that_mounts_a_hearth_volume_is_refused_at_apply(kind: str, container: str) -> None:
    deployment = copy.deepcopy(DEPLOYMENT)
    if container == "model":
        model_of(deployment).setdefault("volumeMounts", []).append(WRITABLE_MOUNT)
    else:
        containers(deployment, kind).append({"name": container, "image": "busybox", "volumeMounts": [WRITABLE_MOUNT]})
    with pytest.raises(ContractError) as caught:
        validate_deployment(deployment, RUNTIMES)
    message = caught.value.message
    assert f'spec.template.spec.{kind}["{container}"].volumeMounts[' in message and '"hearth-host-0"' in message


def test_a_template_volume_with_hearths_prefix_is_refused_at_apply() -> None:
    deployment = copy.deepcopy(DEPLOYMENT)
    deployment["spec"]["template"]["spec"]["volumes"] = [{"name": "hearth-host-0", "hostPath": {"path": "/"}}]
    with pytest.raises(ContractError) as caught:
        validate_deployment(deployment, RUNTIMES)
    assert 'spec.template.spec.volumes[0].name is "hearth-host-0"' in caught.value.message


def test_a_pod_rendered_again_keeps_its_own_mounts() -> None:
    """Hearth's own mounts are not foreign: rendering a rendered pod (stamp stripped) is allowed."""
    again = render_for_pod(rendered(), RUNTIMES, RenderSettings())
    assert again == rendered()
