"""`hearth adopt` (hearth/adopt_cmd.py): only Hearth's lines are added to a manifest (comments, order,
quoting and flow maps kept), the result is a Deployment the webhook accepts, and adopting twice changes
nothing."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hearth.adopt_cmd import adopt_text
from policies import validate_deployment
from tests.support import GOLDEN, sample_runtimes

ORIGINALS = sorted((Path(__file__).parent / "adopt").glob("*.yaml"))
MODEL = {"hearth.dev/model": "hf://mistralai/Mistral-7B-Instruct-v0.3"}


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    removed = [d[1:] for d in diff if d.startswith("-") and not d.startswith("---")]
    added = [d[1:] for d in diff if d.startswith("+") and not d.startswith("+++")]
    return removed, added


@pytest.mark.parametrize("original", ORIGINALS, ids=[p.stem for p in ORIGINALS])
@pytest.mark.parametrize("keys", [{}, MODEL], ids=["keep", "render"])
def test_only_hearths_lines_are_added_and_the_result_is_accepted(original: Path, keys: dict[str, str]) -> None:
    before = original.read_text()
    after, _ = adopt_text(before, keys, sample_runtimes())
    removed, added = changed_lines(before, after)
    # Every added line is Hearth's (or the `annotations:` / `labels:` that holds it); a line is rewritten
    # only to extend a one-line flow map, and then keeps all it had.
    assert all("hearth.dev/" in line or line.strip() in ("annotations:", "labels:") for line in added), added
    for line in removed:
        assert any(new.startswith(line.rstrip("}").rstrip()) and "hearth.dev/enabled" in new for new in added), line
    for doc in yaml.safe_load_all(after):
        if doc["kind"] == "Deployment":
            validate_deployment(doc, sample_runtimes())  # raises on anything the webhook would refuse
    assert [d["kind"] for d in yaml.safe_load_all(after)] == [d["kind"] for d in yaml.safe_load_all(before)]
    again, _ = adopt_text(after, keys, sample_runtimes())
    assert again == after  # adopting twice changes nothing


def test_keep_mode_reads_the_served_name_off_the_command_line_and_comments_stay() -> None:
    before = (Path(__file__).parent / "adopt" / "tgi-commented.yaml").read_text()
    after, warnings = adopt_text(before, {}, sample_runtimes())
    assert 'hearth.dev/served-name: "HuggingFaceH4/zephyr-7b-beta,tgi"' in after
    assert '    team: search   # owned by search\n    hearth.dev/enabled: "true"\n' in after
    assert "        # scraped by the platform's Prometheus\n" in after
    assert not [w for w in warnings if "served-name" in w]  # the name it set is the one the server reports


def test_the_adopted_golden_cases_are_already_adopted() -> None:
    for case in sorted(GOLDEN.glob("adopt-*.yaml")) + sorted(GOLDEN.glob("keep-*.yaml")):
        text = case.read_text()
        annotations = yaml.safe_load(text)["spec"]["template"]["metadata"].get("annotations") or {}
        assert adopt_text(text, annotations, sample_runtimes())[0] == text, case.name


@pytest.mark.process  # real processes (tests/conftest.py: the tiers)
def test_the_command_line_prints_warnings_and_rewrites_in_place(tmp_path: Path) -> None:
    target = tmp_path / "vllm.yaml"
    target.write_text((Path(__file__).parent / "adopt" / "vllm-gpu.yaml").read_text())
    command = [sys.executable, "-m", "hearth", "adopt", "-f", str(target), "-i", "--model", MODEL["hearth.dev/model"]]
    result = subprocess.run([*command, "--runtimes", "manifests/runtimes"], capture_output=True, text=True, check=True)
    assert result.stdout == ""
    assert 'add hearth.dev/extra-args: "--trust-remote-code --enable-chunked-prefill' in result.stderr
    assert 'hearth.dev/model: "hf://mistralai/Mistral-7B-Instruct-v0.3"' in target.read_text()
    (tmp_path / "service.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    refused = subprocess.run(
        [sys.executable, "-m", "hearth", "adopt", "-f", str(tmp_path / "service.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode == 2 and "holds no Deployment" in refused.stderr


def without_hearth(text: str) -> str:
    """A golden case as its user had it before adopting: Hearth's lines taken out (and a flow map's
    Hearth entry, and an `annotations:` left empty)."""
    lines = [
        line.replace(', hearth.dev/enabled: "true"', "").replace('{hearth.dev/enabled: "true"}', "{}")
        for line in text.splitlines()
        if not line.strip().startswith("hearth.dev/")
    ]
    lines = [line for line in lines if line.strip() != "labels: {}"]
    kept = []
    for index, line in enumerate(lines):
        nxt = lines[index + 1] if index + 1 < len(lines) else ""
        indent = len(line) - len(line.lstrip())
        if line.strip() in ("annotations:", "labels:") and len(nxt) - len(nxt.lstrip()) <= indent:
            continue  # it held only Hearth's keys
        kept.append(line)
    return "\n".join(kept) + "\n"


CORPUS = sorted(GOLDEN.glob("adopt-*.yaml")) + sorted(GOLDEN.glob("keep-*.yaml"))


@pytest.mark.parametrize("case", CORPUS, ids=[c.stem for c in CORPUS])
def test_adopting_each_corpus_file_as_its_user_had_it_adds_only_hearths_lines(case: Path) -> None:
    golden = yaml.safe_load(case.read_text())
    keys = golden["spec"]["template"]["metadata"].get("annotations") or {}
    before = without_hearth(case.read_text())
    assert "hearth.dev/" not in yaml.safe_dump(yaml.safe_load(before))  # comments may name it
    after, _ = adopt_text(before, keys, sample_runtimes())
    removed, added = changed_lines(before, after)
    assert all("hearth.dev/" in line or line.strip() in ("annotations:", "labels:") for line in added), added
    assert all(any(new.startswith(line.rstrip("}").rstrip()) for new in added) for line in removed), removed
    assert yaml.safe_load(after) == golden  # the same Deployment the golden case holds
