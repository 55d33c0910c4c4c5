"""The end-to-end tier: a real cluster (control plane and nodes built from Go modules, cached; Hearth's
image built here and installed from manifests/), started once per session in a private state folder, on
its own ports and address ranges, so it never touches a developer's `hearth dev up` cluster."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import yaml

from devcluster import processes
from devcluster.build import ensure_binaries
from devcluster.cluster import Cluster
from devcluster.engine import ensure_engine_image
from devcluster.image import ensure_image, ensure_pause_image
from devcluster.layout import Layout, default_cache_dir
from devcluster.simulator import said  # what the simulator answers, one word per token, round and round

T = TypeVar("T")


@contextlib.contextmanager
def one_at_a_time(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` across processes: one worker builds what the clusters share (the cached
    binaries and images), never two at a time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def worker_index() -> int:
    """0 without pytest-xdist; N for its worker gwN (`make e2e` runs two, each with a cluster of its own)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0


# Every file, longest first (about their tests' summed seconds here, `--durations=0`), so that the two
# workers of `make e2e` (--dist loadfile --no-loadscope-reorder: a worker takes the next file when it has
# two tests or fewer left) finish together: the files handed out last are the shortest, and neither worker
# runs a long one alone at the end. A file not listed runs after these.
HERE = Path(__file__).parent
LONGEST_FIRST = (
    "test_chaos.py",  # 240 (with its upgrade and rollback under traffic)
    "test_cluster.py",  # 220
    "test_scaling.py",  # 200
    "test_model_cache.py",  # 115
    "test_packing.py",  # 95
    "test_node.py",  # 70
    "test_llmservice.py",  # 70
    "test_tenants.py",  # 65
    "test_engine.py",  # 50
    "test_wakeup_live.py",  # 47
    "test_steady.py",  # 45
    "test_model_cache_claim.py",  # 40
    "test_argocd_health.py",  # 35
    "test_auth_live.py",  # 28
    "test_chart_live.py",  # 20
    "test_coldstart.py",  # 18
    "test_tenant_boundary.py",  # 13
    "test_informer.py",  # 4
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    unranked = sorted({item.path.name for item in items if item.path.parent == HERE} - set(rank))
    if unranked:  # every tier collects this folder: a new file is caught by `make check`, before the e2e tier
        raise pytest.UsageError(f"tests/e2e/conftest.py: add {', '.join(unranked)} to LONGEST_FIRST, by duration")
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests stay together


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # No skip when Go or the build is missing: ensure_binaries raises and the tier fails loudly.
    index = worker_index()
    state = tmp_path_factory.mktemp("devcluster")
    cache = default_cache_dir()
    with one_at_a_time(cache / "e2e-build.lock"):  # built once, by the first worker; the others find them
        binaries = ensure_binaries(cache)
        ensure_image(cache)
        ensure_pause_image(cache, binaries["hearth-pause"])
        ensure_engine_image(cache)  # llama.cpp (tests/e2e/test_engine.py): compiled once per machine
    layout = Layout(state=state, port_base=26400 + 1000 * index, pod_net=20 + index)
    dev = Cluster(layout, binaries, engine=True)
    try:
        dev.up()  # inside: a start that fails half-way is stopped too, leaving nothing running
        yield dev
    finally:
        dev.down()
    assert processes.marked(dev.id) == [], "hearth dev down left processes behind"
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert dev.layout.network.bridge + ":" not in links, "hearth dev down left the bridge behind"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    return cluster.get_json(*args)


MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def expected(tokens: int) -> str:
    return said(tokens)


def apply(cluster: Cluster, obj: dict[str, Any], *flags: str, check: bool = True) -> Any:
    return cluster.kubectl("apply", *flags, "-f", "-", stdin=yaml.safe_dump(obj), check=check)


def replicas(cluster: Cluster, namespace: str, name: str) -> int:
    return int(get_json(cluster, "deploy", name, "-n", namespace)["spec"].get("replicas") or 0)


def phase(cluster: Cluster, namespace: str, name: str) -> str | None:
    labels = get_json(cluster, "deploy", name, "-n", namespace)["metadata"].get("labels") or {}
    return labels.get("hearth.dev/phase")


def ready_pods(cluster: Cluster, namespace: str, app: str) -> list[dict[str, Any]] | None:
    pods = cluster.pods(namespace, f"app={app}")
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))
    ]
    return ready or None


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    # Named after the test, with a digest of its whole id: parametrized cases get namespaces of their own.
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:6]
    name = "e2e-" + request.node.originalname.replace("_", "-").lower()[:40].rstrip("-") + "-" + digest
    cluster.create_namespace(name)
    yield name
    with contextlib.suppress(processes.StartError):  # left behind, it disturbs no other test
        cluster.delete_namespace(name)


def sdk(cluster: Cluster, namespace: str, retries: int = 0, timeout: float = 120) -> openai.OpenAI:
    """The OpenAI SDK with the API key of `namespace` (whose models it calls)."""
    key = cluster.api_key(namespace)
    return openai.OpenAI(base_url=cluster.openai_base_url, api_key=key, max_retries=retries, timeout=timeout)


def auth(cluster: Cluster, namespace: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.api_key(namespace)}"}


def write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def webhook_runtimes(cluster: Cluster) -> list[str]:
    """What each webhook replica knows (they watch independently): one answer per pod."""
    return cluster.webhook_runtimes()


def label_phase(obj: dict[str, Any]) -> str | None:
    return ((obj["metadata"].get("labels") or {}).get("hearth.dev/phase")) or None


class Snapshots:
    """An object as it was when each of its phases was first seen (polled every 0.2 s): a Deployment's
    phase label by default, or what `phase_of` reads (an LLMService's status.phase)."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        name: str,
        kind: str = "deploy",
        phase_of: Callable[[dict[str, Any]], str | None] = label_phase,
    ) -> None:
        self.by_phase: dict[str, dict[str, Any]] = {}
        self._args = (kind, name, "-n", namespace)
        self._cluster, self._phase_of = cluster, phase_of
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                obj = self._cluster.get_json(*self._args)
            except processes.StartError:
                continue  # not made yet
            now = self._phase_of(obj)
            if now and now not in self.by_phase:
                self.by_phase[now] = obj

    def __enter__(self) -> Snapshots:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
