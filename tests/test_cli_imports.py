"""What a pod's process loads to start: `hearth` builds the parser of the command it runs alone, `policies`
imports its names on first use, the sidecar has no second HTTP client and the simulator no FastAPI. Every
model pod starts these (docs/contributing/tests.md, "Lighter processes"): a module that creeps back in
costs each cold start its import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.process  # a fresh interpreter each (tests/conftest.py: the tiers)

# Parses a command line as `hearth` does, imports the module that serves it, prints every module then loaded.
PROBE = """
import json, sys
from hearth.cli import build_parser
server, words = sys.argv[1], sys.argv[2:]
build_parser(words[0]).parse_args(words)
__import__(server)
print(json.dumps(sorted(sys.modules)))
"""


def loaded(server: str, *words: str) -> set[str]:
    argv = [sys.executable, "-c", PROBE, server, *words]
    return set(json.loads(subprocess.run(argv, capture_output=True, text=True, check=True).stdout))


def under(modules: set[str], *packages: str) -> set[str]:
    return {m for m in modules if m.split(".")[0] in packages}


def test_the_sidecar_starts_without_the_other_commands_or_their_libraries() -> None:
    modules = loaded("gateway.sidecar", "gateway", "sidecar", "--upstream=http://127.0.0.1:8000")
    assert "gateway.sidecar" in modules
    assert under(modules, "scaler", "webhook", "nodecache", "devcluster", "fastapi", "httpx", "kubernetes") == set()
    assert "policies.runtime" not in modules  # the InferenceRuntime model: about 85 ms to build


def test_the_simulator_starts_without_fastapi_or_the_services() -> None:
    modules = loaded("devcluster.simulator", "dev", "simulator", "--served-model-name=m")
    assert "devcluster.simulator" in modules
    assert under(modules, "gateway", "scaler", "webhook", "fastapi", "kubernetes") == set()


def test_a_command_line_naming_no_command_still_gets_every_command_in_its_error() -> None:
    result = subprocess.run([sys.executable, "-m", "hearth", "gatway"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "invalid choice: 'gatway'" in result.stderr
    for command in ("render", "status", "cache", "dev", "webhook", "gateway", "scaler"):
        assert f"'{command}'" in result.stderr
