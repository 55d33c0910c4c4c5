"""Admission throughput and latency over TLS with keep-alive, at concurrency 1, 16 and 64, against a
minimal TLS echo endpoint on the same stack in the same run (the floor).

    .venv/bin/python bench/admission.py [--seconds 5]

Prints a Markdown table (paste it into the README) and the raw figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import peak_rss_mib, python, run_load, start
from certs import issue
from devcluster.gotools import loadgen
from hearth.render_cmd import pod_from_deployment

ROOT = Path(__file__).resolve().parent.parent


def review_body() -> bytes:
    deployment = yaml.safe_load((ROOT / "examples" / "qwen3-8b.yaml").read_text())
    pod = pod_from_deployment(deployment)
    pod["metadata"]["namespace"] = "ai"
    pod["spec"]["containers"][0].update(
        image="hearth.dev/placeholder:filled-by-runtime",
        imagePullPolicy="IfNotPresent",
        terminationMessagePath="/dev/termination-log",
        terminationMessagePolicy="File",
    )
    pod["spec"].update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "ai",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": None,
            "dryRun": False,
        },
    }
    return json.dumps(review).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per run (after 1 s warm-up)")
    args = parser.parse_args()
    binary = loadgen()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        issue(tmp / "tls", ["127.0.0.1"])
        body = tmp / "review.json"
        body.write_bytes(review_body())
        ca = tmp / "tls" / "ca.crt"
        verify = ssl.create_default_context(cafile=str(ca))
        hook = start(
            [
                python(),
                "-m",
                "hearth",
                "--log-level=warning",
                "webhook",
                f"--cert-dir={tmp / 'tls'}",
                "--host=127.0.0.1",
                "--port=18601",
                f"--runtimes={ROOT / 'manifests' / 'runtimes'}",
            ],
            "https://127.0.0.1:18601/healthz",
            verify,
            tmp / "webhook.log",
        )
        rows: list[dict[str, Any]] = []
        try:  # the webhook is stopped however the rest fails (the echo server not starting included)
            echo = start(
                [python(), str(ROOT / "bench" / "echo_server.py"), "--port=18602", f"--cert-dir={tmp / 'tls'}"],
                "https://127.0.0.1:18602/healthz",
                verify,
                tmp / "echo.log",
            )
            try:
                for concurrency in (1, 16, 64):
                    floor = run_load(
                        binary, "https://127.0.0.1:18602/echo", body, ca, concurrency, args.seconds, echo.pid
                    )
                    mutate = run_load(
                        binary, "https://127.0.0.1:18601/mutate/pods", body, ca, concurrency, args.seconds, hook.pid
                    )
                    rows.append({"concurrency": concurrency, "webhook": mutate, "echo": floor})
                rss = {"webhook": peak_rss_mib(hook.pid), "echo": peak_rss_mib(echo.pid)}
            finally:
                echo.terminate()
        finally:
            hook.terminate()
    print(
        f"Request body: {body.stat().st_size if body.exists() else len(review_body())} bytes (a rendered-to-be Pod "
        "AdmissionReview); load generator: bench/loadgen (Go), keep-alive TLS.\n"
    )
    print(
        "| concurrency | mutations/s | p50 ms | p99 ms | CPU-ms/admission | echo req/s | echo p99 ms | ratio to echo |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        w, e = row["webhook"], row["echo"]
        ratio = w["rps"] / e["rps"] if e["rps"] else 0
        print(
            f"| {row['concurrency']} | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | "
            f"{w['cpu_ms_per_request']:.2f} | {e['rps']:.0f} | {e['p99_ms']:.2f} | {ratio:.2f} |"
        )
    print(
        f"\nPeak RSS: webhook {rss['webhook']:.0f} MiB, echo {rss['echo']:.0f} MiB; errors: "
        f"{sum(r['webhook']['errors'] + r['echo']['errors'] for r in rows)}"
    )
    print(json.dumps({"rows": rows, "peak_rss_mib": rss}))


if __name__ == "__main__":
    main()
