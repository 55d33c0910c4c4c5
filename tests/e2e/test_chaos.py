"""A short chaos soak (devcluster.chaos) on the end-to-end cluster: two models cycling from zero under
OpenAI SDK clients while every kind of fault is injected once, in a fixed order at seeded moments. No
request may be lost (hung, cut short without an error, or answered twice), and every in-flight and held
count must be back at zero. The long run is a benchmark (bench/soak.py)."""

from __future__ import annotations

import pytest

from devcluster.chaos import FAULTS, Soak, gauges
from devcluster.cluster import Cluster
from devcluster.models import simulated_model
from tests.e2e.conftest import apply

pytestmark = pytest.mark.e2e
SEED = 20261206


@pytest.mark.timeout(900)  # fourteen faults, each recovered from before the next
def test_every_fault_once_under_traffic_loses_no_request(cluster: Cluster, namespace: str) -> None:
    models = ["chaos-a", "chaos-b"]
    for name in models:
        apply(cluster, simulated_model(namespace, name, max_replicas=2, target=2, delay="3s", startup="1s", itl="10ms"))
    built = cluster.image
    soak = Soak(cluster, namespace, models, SEED, every=1.5, faults=list(FAULTS), each_once=True, away=(5.0, 8.0))
    soak.run(cycles=4)
    assert soak.upgrades == 1 and cluster.image == built  # upgraded to a new tag, then rolled back
    assert not soak.unrecovered, soak.schedule
    injected = [kind for _, kind, target in soak.schedule if not target.startswith("skipped")]
    assert sorted(set(injected)) == sorted(FAULTS), soak.schedule
    tally = soak.tally
    assert tally.answered > 0 and sum(soak.cycles.values()) >= 4
    assert not tally.lost, f"lost {dict(tally.lost)}; failed {dict(tally.failed)}; schedule {soak.schedule}"
    assert gauges(cluster) == {"hearth_gateway_in_flight": 0.0, "hearth_gateway_held": 0.0}
