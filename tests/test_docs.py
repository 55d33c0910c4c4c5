"""The documentation's reference pages are generated from the code (docs/generate.py): each page on disk
is what the generator writes now, so a key, field, flag or metric added or removed in the code without
`python docs/generate.py` fails here. `make docs` builds the site strictly (links, anchors, the nav)."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import yaml
from pydantic import BaseModel

from tests.support import ROOT


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_reference_page_is_what_the_generator_writes() -> None:
    generator = _generator()
    for name, page in generator.PAGES.items():
        on_disk = (ROOT / "docs" / "reference" / name).read_text()
        assert on_disk == page(), f"docs/reference/{name} is stale: run `python docs/generate.py`"


def test_the_reference_names_every_metric_flag_and_key_the_code_has() -> None:
    """Spot checks that the generated pages carry what they are generated from (a generator that wrote
    nothing would pass the test above)."""
    from gateway.settings import FrontDoorSettings, SidecarSettings
    from nodecache.settings import AgentSettings
    from policies import KEYS
    from scaler.settings import ScalerSettings
    from tests.test_dashboard import exported_names
    from webhook.settings import WebhookSettings

    reference = ROOT / "docs" / "reference"
    metrics = (reference / "metrics.md").read_text()
    documented = set(re.findall(r"^\| `(hearth_[a-z_]+)`", metrics, re.M))
    assert documented and documented <= exported_names()
    assert {n for n in exported_names() if not n.endswith(("_bucket", "_sum", "_count"))} <= documented | {
        n.removesuffix("_total") for n in documented
    }
    annotations = (reference / "annotations.md").read_text()
    assert all(f"`hearth.dev/{key.name}`" in annotations for key in KEYS)
    commands = (reference / "commands.md").read_text()
    services: dict[str, type[BaseModel]] = {
        "hearth scaler": ScalerSettings,
        "hearth webhook": WebhookSettings,
        "hearth gateway front-door": FrontDoorSettings,
        "hearth gateway sidecar": SidecarSettings,
        "hearth cache agent": AgentSettings,
    }
    for command, settings in services.items():
        section = commands[commands.index(f"## `{command}`") :].split("\n## ", 1)[0]
        for name, field in settings.model_fields.items():
            extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
            if extra.get("flag") is not False:
                flag = "--" + str(extra.get("name") or name).replace("_", "-")
                assert flag in section, f"{command}: {flag} is not in docs/reference/commands.md"
    assert "accelerator.resource" in (reference / "inferenceruntime.md").read_text()


def test_the_readme_is_a_landing_page_that_links_into_the_site() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 150
    for target in re.findall(r"\]\((docs/[^)]+)\)", readme):
        assert (ROOT / target).is_file(), target


# Calls that carry an error code, and the position of the code among their arguments.
CODE_ARGUMENT = {"openai_error": 3, "sse_error": 2, "BadCall": 1, "Held": 1, "OverLimit": 0, "_refuse": 2}


def test_every_error_code_the_gateway_answers_with_is_in_the_table_and_no_other() -> None:
    """gateway/codes.py is the page's source: a code passed to an error anywhere in the gateway is in it,
    and every code in it is still somewhere in the gateway's source."""
    import ast

    from gateway.codes import ERROR_CODES

    sources = {p: p.read_text() for p in sorted((ROOT / "gateway").glob("*.py")) if p.name != "codes.py"}
    used = set()
    for path, text in sources.items():
        for node in ast.walk(ast.parse(text, str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            index = CODE_ARGUMENT.get(str(name))
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    used.add(argument.value)
                elif isinstance(argument, ast.JoinedStr):  # f"upstream_{status}"
                    used.add(
                        "".join(str(v.value) if isinstance(v, ast.Constant) else "<status>" for v in argument.values)
                    )
    assert used and used <= set(ERROR_CODES), used - set(ERROR_CODES)
    text = "".join(sources.values())
    gone = [code for code in ERROR_CODES if f'"{code}"' not in text and "<" not in code]
    assert gone == [], f"in gateway/codes.py but no longer answered: {gone}"
    routes = (ROOT / "docs" / "reference" / "routes.md").read_text()
    assert all(f"| `{code}` |" in routes for code in ERROR_CODES)
    assert "| `/v1/chat/completions` | POST |" in routes and "| `/validate/llmservices` | POST |" in routes


def test_every_benchmark_names_its_command_date_and_commit() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    sections = re.split(r"\n(?=\*\*[^*]+\*\*)", text)[1:]
    assert len(sections) >= 10
    for section in sections:
        title = section.split("**")[1]
        assert re.search(r"bench/[a-z_]+\.py", section), f"{title}: no command"
        assert re.search(r"\*Measured \d{4}-\d{2}-\d{2}, commit `[0-9a-f]{7}`\.\*", section), f"{title}: no date"


def code_blocks(language: str) -> list[tuple[str, str]]:
    """(page, text) of every fenced block of `language` in the README and the docs written by hand (the
    generated pages are the code's own words: docs/generate.py)."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = []
    for page in pages:
        text = page.read_text()
        if "Generated by docs/generate.py" in text:
            continue
        for block in re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S):
            found.append((str(page.relative_to(ROOT)), block))
    return found


def test_every_manifest_the_docs_show_is_one_hearth_accepts() -> None:
    """A manifest in the docs is the example the tests apply, or one the validators accept as it is."""
    from policies import api_key_of, runtime_from_object, validate_deployment, validate_llmservice
    from policies.runtime import NodeCache
    from tests.support import sample_runtimes

    examples = {
        "Deployment": yaml.safe_load((ROOT / "examples" / "qwen3-8b.yaml").read_text()),
        "LLMService": yaml.safe_load((ROOT / "examples" / "llmservice" / "qwen3-8b.yaml").read_text()),
    }
    blocks = code_blocks("yaml")
    assert len(blocks) >= 5
    for page, block in blocks:
        for obj in yaml.safe_load_all(block):
            kind = obj.get("kind")
            if kind in examples:
                assert obj == examples[kind], f"{page}: the {kind} differs from the example the tests apply"
                check = validate_deployment if kind == "Deployment" else validate_llmservice
                check(obj, sample_runtimes())
            elif kind == "InferenceRuntime":
                runtime_from_object(obj)
            elif set(obj) == {"spec"} and set(obj["spec"]) == {"cache"}:  # an InferenceRuntime's part
                NodeCache.model_validate(obj["spec"]["cache"])
            elif kind == "Secret":  # an API key: the docs elide the key itself ("3f9c...")
                assert str(obj["stringData"]["key"]).endswith("..."), f"{page}: a real-looking key in the docs"
                api_key_of({**obj, "stringData": {"key": "0" * 48}})
            else:
                raise AssertionError(f"{page}: a manifest no test checks: {str(obj)[:80]}")


def test_every_command_the_docs_show_names_what_exists() -> None:
    """`hearth` commands parse with the CLI's own parser; files and folders given to kubectl, helm and
    python exist; make targets exist."""
    import shlex

    from hearth.cli import build_parser

    makefile = (ROOT / "Makefile").read_text()
    lines = [
        (page, line.split("#")[0].strip().removeprefix("$ "))
        for language in ("sh", "console")
        for page, block in code_blocks(language)
        for line in block.splitlines()
    ]
    commands = [(page, line) for page, line in lines if line and not line.startswith(("NAME", "qwen3-8b "))]
    assert len(commands) >= 15
    for page, line in commands:
        words = shlex.split(line.replace('"$(', "").replace(')"', ""))
        if words[0] == "eval":
            words = words[1:]
        if words[0] in ("hearth", ".venv/bin/hearth"):
            try:
                build_parser().parse_args(words[1:])
            except SystemExit:
                raise AssertionError(f"{page}: `{line}` is not a command hearth takes") from None
        elif words[0] == "make":
            assert re.search(rf"^{words[1]}:", makefile, re.M), f"{page}: no make target {words[1]}"
        elif words[0] in ("kubectl", "helm"):
            files = [w for w, flag in zip(words[1:], words, strict=False) if flag in ("-f", "-k")]
            paths = [w.rsplit("=", 1)[-1] for w in words if w.startswith("--from-file")]
            paths += files + [w for w in words if w.startswith("charts/")]
            for path in paths:
                if not path.startswith("tls/"):  # tls/: made by `hearth certs` just before
                    assert (ROOT / path).exists(), f"{page}: `{line}` names {path}, which is not in the repository"
        else:
            raise AssertionError(f"{page}: a command no test checks: `{line}`")
