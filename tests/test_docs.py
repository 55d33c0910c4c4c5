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
