"""The Helm chart's objects, as `helm template` renders them with default and other values, accepted by the
real apiserver (server-side dry runs: schemas, CEL rules, admission, the installed objects as they are)."""

from __future__ import annotations

import pytest
import yaml

from devcluster.cluster import Cluster
from tests.test_chart import CHART, helm

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("namespace", "values"),
    [
        ("hearth-system", []),
        ("ai-platform", ["--set", "apiKeys.enabled=false,gateway.replicas=3,networkPolicies.enabled=false"]),
    ],
)
def test_every_rendered_set_is_accepted_by_the_apiserver(cluster: Cluster, namespace: str, values: list[str]) -> None:
    cluster.kubectl("create", "namespace", namespace, check=False)
    try:
        text = helm("template", "hearth", str(CHART), "-n", namespace, "--include-crds", *values)
        applied = cluster.kubectl("apply", "--dry-run=server", "-f", "-", stdin=text, check=False)
        assert applied.returncode == 0, applied.stderr
        objects = [d for d in yaml.safe_load_all(text) if d]
        assert len(objects) > 30 and applied.stdout.count("(server dry run)") == len(objects), applied.stdout
    finally:
        if namespace != "hearth-system":
            cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
