"""The layering rules that import-linter cannot express: outside a package, callers use its public names
(`from policies import X`), never its private modules (`from policies.render import X`). The contracts
that import-linter does hold (no service imports another, a pure core) run in `make lint`."""

from __future__ import annotations

import ast
from pathlib import Path

import policies
from tests.support import ROOT

PACKAGES_WITH_A_PUBLIC_FACE = ("policies", "webhook", "gateway", "scaler")
CODE = ("common", "certs", "hearth", "devcluster", "bench", "nodecache", *PACKAGES_WITH_A_PUBLIC_FACE)


def private_imports(path: Path) -> list[str]:
    own = path.relative_to(ROOT).parts[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            package, _, rest = name.partition(".")
            if rest and package in PACKAGES_WITH_A_PUBLIC_FACE and package != own:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return found


def test_outside_a_package_only_its_public_names_are_used() -> None:
    files = [p for folder in CODE for p in sorted((ROOT / folder).rglob("*.py"))]
    assert len(files) > 50
    assert [line for path in files for line in private_imports(path)] == []


def test_the_checker_sees_a_private_import() -> None:
    offender = ROOT / "hearth" / "_layers_probe.py"
    offender.write_text("from policies.render import render_pod\n")
    try:
        assert private_imports(offender) == ["hearth/_layers_probe.py:1 imports policies.render"]
    finally:
        offender.unlink()


def test_the_public_names_are_all_there() -> None:
    assert all(hasattr(policies, name) for name in policies.__all__)


def test_the_cores_lazy_table_matches_its_imports_and_all() -> None:
    """policies/__init__ imports its names for mypy only and resolves them at run time from a table
    (PEP 562): the table, the imports and __all__ must name the same things, each from the same module."""
    tree = ast.parse((ROOT / "policies" / "__init__.py").read_text())
    imported = {
        alias.asname or alias.name: (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("policies.")
        for alias in node.names
    }
    assert len(imported) > 100
    assert imported == policies._EXPORTS
    assert sorted(policies.__all__) == sorted(imported)


def test_no_public_name_of_the_core_is_also_one_of_its_modules() -> None:
    """Importing `policies.x` sets the package's attribute `x` to that module; a public name `x` would
    then read as the module, not as what the table names (why the modules are `phases`, `capacities`)."""
    modules = {path.stem for path in (ROOT / "policies").glob("*.py")}
    assert modules & set(policies.__all__) == set()
