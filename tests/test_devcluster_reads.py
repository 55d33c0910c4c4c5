"""devcluster.reads: the `kubectl get` forms the tests poll, as REST paths (the e2e tier compares the answers
with kubectl's own on the real cluster: tests/e2e/test_cluster.py)."""

from __future__ import annotations

from typing import Any

from devcluster.reads import as_kubectl_prints, parse_get


def test_a_named_object_and_a_filtered_list_become_their_paths() -> None:
    named = parse_get(("deploy", "qwen", "-n", "ai"))
    assert named is not None and named.paths() == ["/apis/apps/v1/namespaces/ai/deployments/qwen"]
    listed = parse_get(("pods", "-n", "ai", "-l", "app=qwen", "--field-selector", "status.phase=Running"))
    assert listed is not None and listed.paths() == ["/api/v1/namespaces/ai/pods"]
    assert listed.params == {"labelSelector": "app=qwen", "fieldSelector": "status.phase=Running"}


def test_cluster_scoped_kinds_every_namespace_and_the_default_one() -> None:
    assert parse_get(("nodes",)).paths() == ["/api/v1/nodes"]  # type: ignore[union-attr]
    assert parse_get(("irt", "sim-nvidia")).paths() == [  # type: ignore[union-attr]
        "/apis/serving.hearth.dev/v1alpha1/inferenceruntimes/sim-nvidia"
    ]
    assert parse_get(("events", "-A")).paths() == ["/api/v1/events"]  # type: ignore[union-attr]
    assert parse_get(("pods",)).paths() == ["/api/v1/namespaces/default/pods"]  # type: ignore[union-attr]
    both = parse_get(("deploy,daemonset", "-n", "hearth-system"))
    assert both is not None and both.paths() == [
        "/apis/apps/v1/namespaces/hearth-system/deployments",
        "/apis/apps/v1/namespaces/hearth-system/daemonsets",
    ]


def test_forms_it_does_not_know_are_left_to_kubectl() -> None:
    for args in (
        ("deploy", "-n", "ai", "--show-labels"),  # a flag it does not know
        ("widgets", "-n", "ai"),  # a kind it does not know
        ("deploy,ds", "qwen", "-n", "ai"),  # a name with two kinds
        ("deploy", "a", "b"),
        ("pods", "qwen", "-l", "app=qwen"),
    ):
        assert parse_get(args) is None, args


def test_a_list_prints_as_kubectl_prints_it() -> None:
    get = parse_get(("deploy,ds", "-n", "ai"))
    assert get is not None
    answers: list[dict[str, Any]] = [
        {"kind": "DeploymentList", "items": [{"metadata": {"name": "a", "managedFields": [{}]}}]},
        {"kind": "DaemonSetList", "items": None},
    ]
    printed = as_kubectl_prints(get, answers)
    assert printed["kind"] == "List"
    assert printed["items"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}}]
    named = parse_get(("deploy", "a", "-n", "ai"))
    assert named is not None
    assert as_kubectl_prints(named, [{"kind": "Deployment", "metadata": {"name": "a", "managedFields": []}}]) == {
        "kind": "Deployment",
        "metadata": {"name": "a"},
    }
