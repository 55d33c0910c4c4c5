"""The wake-up of a model with many held streaming clients: how soon after the model turns ready the first,
the median and the last client (in arrival order) get their first token, and how well arrival order is
kept. A front door in --upstream mode holds N streams on a simulator that is still loading; the Go load
generator sends them one every --gap and watches the simulator's /health every 2 ms.

    .venv/bin/python bench/wakeup.py [--clients 1000] [--rounds 3] [--tree OTHER_CHECKOUT]

--tree runs the front door from another checkout (an older commit, for a side-by-side run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway import Stack
from devcluster.gotools import loadgen

BODY = {"model": "qwen", "messages": [{"role": "user", "content": "hi"}], "stream": True, "max_tokens": 8}


def overtaken(firsts: list[int], slack_ns: int) -> float:
    """Share of clients whose first token came more than `slack_ns` after that of a client who arrived
    later (a tie within the slack is the same instant to a client)."""
    late = 0
    earliest_after = firsts[-1]
    for first in reversed(firsts):
        late += first > earliest_after + slack_ns
        earliest_after = min(earliest_after, first)
    return late / len(firsts)


def one_round(clients: int, gap_ms: float, tree: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hearth-wake-") as tmp:
        stack = Stack(Path(tmp))
        try:
            loading = clients * gap_ms / 1000 + 3.0  # every client is held before the model turns ready
            _, sim_url = stack.hearth(
                "sim",
                [
                    "dev",
                    "simulator",
                    "--port=PORT",
                    "--served-model-name=qwen",
                    f"--startup-duration={int((loading + 2) * 1000)}ms",  # counted from the simulator's own start
                    "--ttft=20ms",
                    "--itl=5ms",
                ],
                "/v1/models",
            )
            if tree is not None:  # the front door only: both run against the same simulator
                os.environ["PYTHONPATH"] = str(tree)
            _, door_url = stack.hearth(
                "door",
                [
                    "gateway",
                    "front-door",
                    "--host=127.0.0.1",
                    "--port=PORT",
                    f"--upstream=qwen={sim_url}",
                    f"--queue-size={clients}",
                    f"--max-held={clients}",
                    "--held-health-interval=5ms",  # readiness noticed at once: what follows is the release
                ],
                "/healthz",
            )
            body = Path(tmp) / "body.json"
            body.write_text(json.dumps(BODY))
            argv = [
                str(loadgen()),
                f"-wake={clients}",
                f"-gap={gap_ms}ms",
                f"-url={door_url}/v1/chat/completions",
                f"-body={body}",
                f"-health={sim_url}/health",
            ]
            result = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)
        finally:
            stack.stop()
            os.environ.pop("PYTHONPATH", None)
    ready, firsts = result["ready_ns"], result["first_ns"]
    if result["errors"] or not ready or not all(firsts):
        raise SystemExit(f"not every client got its answer: {result['errors']} errors ({result['first_error']})")
    after = [(f - ready) / 1e6 for f in firsts]
    return {
        "first_ms": after[0],
        "median_ms": statistics.median(after),
        "last_ms": max(after),
        "overtaken_10ms": overtaken(firsts, 10_000_000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--gap-ms", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, help="run the front door from this checkout instead")
    args = parser.parse_args()
    rounds = [one_round(args.clients, args.gap_ms, args.tree) for _ in range(args.rounds)]
    summary = {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]}
    print(json.dumps({"clients": args.clients, "rounds": rounds, "median": summary}, indent=1))


if __name__ == "__main__":
    main()
