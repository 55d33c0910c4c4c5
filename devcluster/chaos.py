"""Chaos for the local cluster: faults injected at random moments (seeded) while OpenAI SDK clients cycle
models 0 -> 1 -> N -> 0, and an account of every request. `bench/soak.py` runs it long; an end-to-end test
runs it short.

A request is *answered* when its text is exactly what the simulator says for its `max_tokens` (the
simulator's words are deterministic); *failed* when the SDK raised an OpenAI error (counted by status and
code; a connection error the SDK gave up on is `connection`); *lost* when it hung past its deadline, ended
without an error but cut short, or came back longer than asked (answered twice). The SDK keeps its default
two retries."""

from __future__ import annotations

import collections
import concurrent.futures
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletionMessageParam

from devcluster import processes
from devcluster.cluster import HEARTH_NAMESPACE, Cluster
from devcluster.simulator import said
from policies import is_ready

COMPONENTS = {  # Deployment or DaemonSet -> its container
    "hearth-webhook": "webhook",
    "hearth-gateway": "gateway",
    "hearth-scaler": "scaler",
    "hearth-node-agent": "agent",
}
MAX_SKIPS = 20  # times a kind is tried again when it has nothing to hit, in each-once mode
# How long a fault has to show (something unready) before it counts as unseen and the soak moves on: a killed
# or deleted pod shows within a second or two (the kubelet's next relist); a restart, a stop or a drain has
# already been and gone when its injection returns, and mostly leaves Hearth ready throughout.
SHOWS_WITHIN = 5.0
FAULTS = (
    "kill-webhook",
    "kill-gateway",
    "kill-scaler",
    "kill-agent",
    "delete-gateway",
    "delete-scaler",
    "delete-webhook",
    "kill-sidecar",
    "kill-runtime",
    "restart-apiserver",
    "restart-etcd",
    "apiserver-away",
    "drain-node",
    "upgrade",
)


@dataclass
class Tally:
    sent: int = 0
    answered: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    lost: collections.Counter[str] = field(default_factory=collections.Counter)
    spans: list[tuple[float, float, str]] = field(default_factory=list)  # (began, ended, outcome), monotonic
    examples: dict[str, str] = field(default_factory=dict)  # a failure's first message, by its detail
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, detail: str = "", *, began: float, message: str = "") -> None:
        with self.lock:
            self.sent += 1
            if message:
                self.examples.setdefault(detail, message[:300])
            self.spans.append((began, time.monotonic(), outcome))
            if outcome == "answered":
                self.answered += 1
            elif outcome == "failed":
                self.failed[detail] += 1
            else:
                self.lost[detail] += 1

    def open_at(self, moment: float) -> collections.Counter[str]:
        """How the requests open at `moment` (monotonic) ended: answered, failed or lost."""
        with self.lock:
            return collections.Counter(outcome for began, ended, outcome in self.spans if began <= moment < ended)


def one_request(client: openai.OpenAI, model: str, stream: bool, tokens: int, tally: Tally) -> None:
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "soak"}]
    began = time.monotonic()
    try:
        if stream:
            text = ""
            chunks = client.chat.completions.create(model=model, messages=messages, max_tokens=tokens, stream=True)
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    text += chunk.choices[0].delta.content
        else:
            answer = client.chat.completions.create(model=model, messages=messages, max_tokens=tokens)
            text = answer.choices[0].message.content or ""
    except openai.APITimeoutError:
        tally.add("lost", "hung", began=began)
        return
    except openai.APIStatusError as error:
        code = (error.body or {}).get("code") if isinstance(error.body, dict) else None
        tally.add("failed", f"{error.status_code} {code or ''}".strip(), began=began, message=error.message)
        return
    except openai.APIConnectionError:
        tally.add("failed", "connection", began=began)
        return
    except openai.APIError as error:  # an error event in a stream
        tally.add("failed", f"stream {error.code or error.message[:40]}", began=began, message=error.message)
        return
    want = said(tokens)
    if text == want:
        tally.add("answered", began=began)
    elif len(text) > len(want):
        tally.add("lost", "answered twice", began=began)
    else:
        tally.add("lost", "truncated", began=began)


class Soak:
    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        models: list[str],
        seed: int,
        every: float,
        faults: list[str],
        *,
        each_once: bool = False,
        away: tuple[float, float] = (30.0, 60.0),
        verbose: bool = False,
    ) -> None:
        """`each_once`: every kind in `faults` once, in that order (at random moments), the traffic going on
        until the last has been injected; otherwise kinds drawn at random until the cycles are done. `away`:
        how long the apiserver stays unreachable and a drained node cordoned (seconds, drawn between the two)."""
        self.cluster = cluster
        self.namespace = namespace
        self.seed = seed
        self.rng = random.Random(seed)  # noqa: S311 - a replayable schedule of faults, not a secret
        self.models = models
        self.every = every
        self.faults = faults
        self.pending: list[str] | None = list(faults) if each_once else None
        self.away = away
        self.verbose = verbose  # a line per cycle (the long run's progress)
        self.tally = Tally()
        self.stop = threading.Event()
        self.cycles: collections.Counter[str] = collections.Counter()
        self.schedule: list[tuple[float, str, str]] = []  # (seconds from the start, kind, target)
        self.upgrades = 0
        self.recoveries: dict[str, list[float]] = collections.defaultdict(list)
        self.unseen: collections.Counter[str] = collections.Counter()  # faults that never made anything unready
        self.unrecovered: collections.Counter[str] = collections.Counter()  # not healthy 300 s after the fault
        self.rss: dict[str, float] = collections.defaultdict(float)
        self.started = time.monotonic()
        key = cluster.api_key(namespace)
        self.client = openai.OpenAI(base_url=cluster.openai_base_url, api_key=key, timeout=180)

    # --- traffic ---------------------------------------------------------------------------------
    def run(self, cycles: int) -> None:
        """`cycles` cycles in all (shared out over the models), faults throughout; then waits for Hearth to
        recover (on the image the cluster was built with, rolled back to after an upgrade) and every model to
        be back at zero."""
        per_model = -(-cycles // len(self.models))
        for name in self.models:
            self.idle_to_zero(name)
        threads = [
            threading.Thread(target=self.chaos, daemon=True),
            threading.Thread(target=self.sample_memory, daemon=True),
        ]
        for thread in threads:
            thread.start()
        with concurrent.futures.ThreadPoolExecutor(len(self.models)) as pool:
            try:
                list(pool.map(lambda m: self.traffic(m[1], self.seed + 1 + m[0], per_model), enumerate(self.models)))
            except BaseException:  # Ctrl-C or SIGTERM: the loops end once their requests in flight have
                self.stop.set()
                raise
        self.stop.set()
        self._said("traffic over")
        for thread in threads:
            thread.join(timeout=180)
        self.recovered()
        if self.upgrades:  # back to the image the cluster was built with, as a rollback would
            self.cluster.upgrade_hearth()
            self.recovered(shows_within=SHOWS_WITHIN)
            self._said("rolled back")
        for name in self.models:
            self.idle_to_zero(name)
        self._said("every model at zero")

    def _said(self, what: str) -> None:
        print(f"  {time.monotonic() - self.started:7.1f}s {what}", flush=True)

    def traffic(self, model: str, seed: int, cycles: int) -> None:
        """Cycles of this model: a burst (or a steady trickle) of requests from zero, then idle to zero."""
        rng = random.Random(seed)  # noqa: S311 - replayable traffic
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            while not self.stop.is_set() and (self.cycles[model] < cycles or self.pending):
                burst = rng.random() < 0.5
                count = rng.randint(4, 12)
                futures = []
                for _ in range(count):
                    stream, tokens = rng.random() < 0.6, rng.choice((5, 40, 200))
                    futures.append(
                        pool.submit(one_request, self.client, f"{self.namespace}/{model}", stream, tokens, self.tally)
                    )
                    if not burst:
                        time.sleep(rng.uniform(0.1, 1.0))
                concurrent.futures.wait(futures)
                self.idle_to_zero(model)
                self.cycles[model] += 1
                if self.verbose:
                    tally = self.tally
                    print(
                        f"  {time.monotonic() - self.started:7.1f}s {model} cycle {self.cycles[model]}: "
                        f"so far {tally.sent} sent, {tally.answered} answered, {sum(tally.lost.values())} lost",
                        flush=True,
                    )

    def idle_to_zero(self, model: str) -> None:
        deadline = time.monotonic() + 300
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                if not self.cluster.live_pods(self.namespace, f"app={model}") and self._replicas(model) == 0:
                    return
            except processes.StartError:
                pass  # the apiserver is away: ask again
            time.sleep(1)

    def model_pods(self) -> list[dict[str, Any]]:
        """The live pods of every model of the soak, in one read."""
        return self.cluster.live_pods(self.namespace, f"app in ({','.join(self.models)})")

    def _replicas(self, model: str) -> int:
        spec = self.cluster.get_json("deploy", model, "-n", self.namespace)["spec"]
        return int(spec.get("replicas") or 0)

    # --- chaos -----------------------------------------------------------------------------------
    def chaos(self) -> None:
        skips: collections.Counter[str] = collections.Counter()
        while not self.stop.wait(self.rng.expovariate(1 / self.every)):
            if self.pending == []:
                continue  # each kind once: all done
            # Each kind once: taken off the list only once recovered from, so traffic runs through it.
            kind = self.pending[0] if self.pending is not None else self.rng.choice(self.faults)
            at = time.monotonic() - self.started
            try:
                target = self.inject(kind)
            except (processes.StartError, StopIteration, KeyError, IndexError) as why:
                target = f"skipped ({type(why).__name__}: {str(why)[:60]})"
            self.schedule.append((at, kind, target))
            print(f"  {at:7.1f}s {kind:<18} {target}", flush=True)
            if not target.startswith("skipped"):
                began = time.monotonic()  # after the injection: a drain or an apiserver away has ended
                try:
                    if self.recovered(shows_within=SHOWS_WITHIN):
                        self.recoveries[kind].append(time.monotonic() - began)
                        outcome = f"recovered in {self.recoveries[kind][-1]:.1f}s"
                    else:
                        self.unseen[kind] += 1
                        outcome = "never showed"
                    self._said(f"{kind:<18} {outcome}")
                except TimeoutError as why:  # a finding, reported; the faults go on
                    self.unrecovered[kind] += 1
                    self._said(f"NOT RECOVERED from {kind}: {why}")
            skips[kind] += target.startswith("skipped")
            if self.pending and (not target.startswith("skipped") or skips[kind] >= MAX_SKIPS):
                self.pending.pop(0)  # a kind with nothing to hit now (no model pod running) is tried again

    def inject(self, kind: str) -> str:
        action, _, what = kind.partition("-")
        component = "hearth-node-agent" if what == "agent" else f"hearth-{what}"
        if action in ("kill", "delete") and component in COMPONENTS:
            pod = self.rng.choice(self.cluster.hearth_pods(component))
            name = str(pod["metadata"]["name"])
            if action == "delete":
                self.cluster.kubectl("delete", "pod", name, "-n", HEARTH_NAMESPACE, "--wait=false")
            else:
                self._kill(pod, COMPONENTS[component])
            return name
        if kind in ("kill-sidecar", "kill-runtime"):
            pods = self.model_pods()
            running = [p for p in pods if p.get("status", {}).get("containerStatuses")]
            pod = self.rng.choice(running)
            self._kill(pod, "hearth-gateway" if kind == "kill-sidecar" else "model")
            return str(pod["metadata"]["name"])
        if kind == "restart-apiserver":
            self.cluster.restart("kube-apiserver")
            return "kube-apiserver"
        if kind == "restart-etcd":
            self.cluster.restart("etcd")
            return "etcd"
        if kind == "apiserver-away":
            away = self.rng.uniform(*self.away)
            pid = processes.load_pids(self.cluster.layout.pids)["kube-apiserver"]
            os.kill(pid, signal.SIGSTOP)  # connections hang, as when a network path to it is lost
            self.stop.wait(away)
            os.kill(pid, signal.SIGCONT)
            return f"kube-apiserver stopped {away:.0f}s"
        if kind == "drain-node":
            # The node of a running model pod: the dev cluster's other node is the only one Hearth's own pods
            # may run on (the accelerator node is tainted), and draining that is an outage an operator made.
            pods = self.model_pods()
            node = str(self.rng.choice([p["spec"]["nodeName"] for p in pods if p["spec"].get("nodeName")]))
            self.cluster.kubectl(
                "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--force", "--timeout=120s", check=False
            )
            self.stop.wait(self.rng.uniform(*self.away))  # cordoned as long as the apiserver would be away
            self.cluster.kubectl("uncordon", node)
            return node
        if kind == "upgrade":
            self.upgrades += 1
            built = self.cluster.image.rsplit(":", 1)[1].split("-")[0]  # the build's tag, before any -upN
            return self.cluster.upgrade_hearth(f"{built}-up{self.upgrades}")
        raise KeyError(kind)

    def open_at_faults(self) -> dict[str, collections.Counter[str]]:
        """Per fault kind, how the requests that were open when it struck ended (summed over its injections):
        an upgrade's row is the streams it found open, which must all be answered."""
        ended: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for at, kind, target in self.schedule:
            if not target.startswith("skipped"):
                ended[kind] += self.tally.open_at(self.started + at)
        return dict(ended)

    def _kill(self, pod: dict[str, Any], container: str) -> None:
        for pid in self.cluster.container_pids(pod, container):
            os.kill(pid, signal.SIGKILL)

    def healthy(self) -> bool:
        """The apiserver answers, every Hearth Deployment and DaemonSet is fully available, and every model
        pod placed on a node is ready. A model pod not placed waits for an accelerator (more replicas asked
        for than the pool holds, which the soak does on purpose): that is sharing, not a fault's effect."""
        if not self.cluster.apiserver_ready():
            return False
        try:
            items = self.cluster.get_json("deploy,daemonset", "-n", HEARTH_NAMESPACE)["items"]
            pods = self.model_pods()
        except processes.StartError:
            return False
        for item in items:
            status, want = item.get("status", {}), item["spec"].get("replicas", 0)
            if item["kind"] == "DaemonSet":
                if status.get("numberAvailable", 0) < status.get("desiredNumberScheduled", 1):
                    return False
            elif status.get("updatedReplicas", 0) < want or status.get("readyReplicas", 0) < want:
                return False
        return all(is_ready(pod) for pod in pods if pod["spec"].get("nodeName"))

    def recovered(self, timeout: float = 300, shows_within: float = 0.0) -> bool:
        """Waits until healthy; with `shows_within`, first (that long at most) for the fault to show (a
        killed container is noticed by its kubelet a moment later). False if it never showed."""
        showed = False
        until = time.monotonic() + shows_within
        while time.monotonic() < until and not showed:
            showed = not self.healthy()
            time.sleep(0.2)
        deadline = time.monotonic() + timeout
        while not self.healthy():
            showed = True
            if time.monotonic() > deadline:
                raise TimeoutError(f"Hearth did not recover within {timeout:g}s")
            time.sleep(0.5)
        return showed

    # --- memory ----------------------------------------------------------------------------------
    def sample_memory(self) -> None:
        while not self.stop.wait(5):
            try:
                pods = {c: self.cluster.hearth_pods(c) for c in COMPONENTS}
            except processes.StartError:
                continue
            for component, listed in pods.items():
                for pod in listed:
                    try:
                        mib = processes.rss_mib(self.cluster.container_pids(pod, COMPONENTS[component]))
                    except (KeyError, StopIteration):
                        continue
                    self.rss[component] = max(self.rss[component], mib)


def gauges(cluster: Cluster) -> dict[str, float]:
    """hearth_gateway_in_flight and _held summed over every front door, from their metrics ports."""
    totals = {"hearth_gateway_in_flight": 0.0, "hearth_gateway_held": 0.0}
    for pod in cluster.hearth_pods("hearth-gateway"):
        ip = pod["status"].get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp") or not is_ready(pod):
            continue  # a front door that is not ready has not begun to take requests (or was just restarted)
        for line in httpx.get(f"http://{ip}:9090/metrics", timeout=5).text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals:
                totals[name] += float(line.rsplit(" ", 1)[1])
    return totals
