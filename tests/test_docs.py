"""The documentation's reference pages are generated from the code (docs/generate.py): each page on disk
is what the generator writes now, so a key, field, flag or metric added or removed in the code without
`python docs/generate.py` fails here. `make docs` builds the site strictly (links, anchors, the nav)."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

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
