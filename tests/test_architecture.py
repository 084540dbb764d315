"""The house rules, checked against the code: packages import only downward, every module
imports on its own, and Cypher lives only in ``queries.py`` modules run by repositories.

The layers are documented in README.md ("Architecture"); ``LAYERS`` below is that list."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "cmdb"

# Lowest first. A package may import packages of lower layers only; packages of one layer
# are independent of each other.
LAYERS: list[set[str]] = [
    {"settings", "logs", "core"},
    {"observability"},
    {"db", "localdb"},
    {"rollup"},
    {"identity"},
    {"org"},
    {"items"},
    {"health", "vdi", "alarms", "chargeback"},
    {"changes", "catalog", "discovery", "bulk"},
    {"services"},
    {"demo"},
    {"schema"},
    {"resolvers"},
    {"compiler"},
    {"api"},
    {"app"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# Inside a domain package: models, then queries, then the repository, then the use cases
# (every other module), then the REST routes. A module imports its own package's modules of
# an earlier kind only.
KINDS = {"models": 0, "queries": 1, "repository": 2, "http": 4}
USE_CASE = 3


@dataclass(frozen=True)
class Module:
    name: str  # cmdb.items.models
    path: Path

    @property
    def package(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""

    @property
    def kind(self) -> int:
        return KINDS.get(self.name.rsplit(".", 1)[-1], USE_CASE)


def modules() -> list[Module]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append(Module(".".join(parts), path))
    return found


MODULES = modules()
NAMES = {m.name for m in MODULES}


def _resolve(name: str) -> str | None:
    while name and name not in NAMES:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: Module) -> list[tuple[int, str]]:
    """(line, module of this project) for every import, also those under TYPE_CHECKING."""
    tree = ast.parse(module.path.read_text())
    is_package = module.path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.name.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for target in targets:
            if target == "cmdb" or target.startswith("cmdb."):
                resolved = _resolve(target)
                if resolved and resolved != module.name:
                    found.append((node.lineno, resolved))
    return sorted(set(found))


def layers_drawn(drawing: str) -> list[set[str]]:
    """The layers of a drawing like README's: one line a layer, highest first, package names
    joined by ``·`` and followed, after two spaces or more, by what the layer does."""
    rows = [re.split(r"\s{2,}", line.strip())[0] for line in drawing.splitlines() if line.strip()]
    return [{name.strip() for name in row.split("·")} for row in reversed(rows)]


def readme_drawing() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Architecture"):]
    return section.split("```text\n", 1)[1].split("```", 1)[0]


def test_the_readme_drawing_is_the_layers_the_code_keeps():
    assert layers_drawn(readme_drawing()) == LAYERS[:-1]  # all but __main__


def test_every_package_has_a_layer():
    packages = {m.package for m in MODULES if m.package}
    assert sorted(packages - set(RANK)) == []


def test_imports_run_down_the_layers():
    wrong = []
    for module in MODULES:
        if not module.package:
            continue
        for line, target in imports_of(module):
            other = Module(target, Path())
            if other.package in ("", module.package):
                continue
            if RANK[other.package] >= RANK[module.package]:
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == []


def test_inside_a_package_imports_follow_models_queries_repository_use_cases():
    wrong = []
    for module in MODULES:
        for line, target in imports_of(module):
            other = next(m for m in MODULES if m.name == target)
            if other.package != module.package or not module.package:
                continue
            if "." not in target.removeprefix(f"cmdb.{module.package}"):
                continue  # the package's own face
            if other.kind > module.kind or (other.kind == module.kind < USE_CASE):
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == []


def _import_alone(name: str) -> tuple[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=120)
    return name, done.stderr.strip().splitlines()[-1] if done.returncode else ""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = [m.name for m in MODULES if m.name != "cmdb.__main__"]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failed = {name: err for name, err in pool.map(_import_alone, names) if err}
    assert failed == {}


# ---------------------------------------------------------------------- Cypher placement

# Where Cypher text may stand: a domain's queries.py, the shared fragments and the list
# statement builder, and the schema migrations.
CYPHER_HOMES = {"cmdb/core/cypher.py", "cmdb/db/migrations.py"}
CYPHER = re.compile(
    r"\b(?:OPTIONAL\s+)?MATCH\s*\(|\bMERGE\s*\(|\bUNWIND\s+\S+\s+AS\b|\bDETACH\s+DELETE\b"
    r"|\bCALL\s*(?:\(\s*\w*\s*\))?\s*\{|\bRETURN\s+[\w(*$]|\bCREATE\s+(?:INDEX|CONSTRAINT)\b"
    r"|\bSHOW\s+(?:INDEXES|CONSTRAINTS)\b")


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def cypher_outside_queries(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    skip = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        text = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        else:
            continue
        if text and CYPHER.search(text):
            found.append((node.lineno, text.strip().splitlines()[0][:60]))
    return found


@pytest.mark.parametrize("source, found", [
    ('Q = "MATCH (n:CI) RETURN n"', True),
    ('q = f"UNWIND $rows AS row MERGE (n:{label} {{id: row.id}})"', True),
    ('Q = "CALL () { MATCH (n) RETURN count(n) AS c }"', True),
    ('def f():\n    """MATCH (n) in a docstring is prose."""', False),
    ('message = "return to the list and match the name"', False),
])
def test_the_cypher_detector_finds_statements_not_prose(source, found):
    assert bool(cypher_outside_queries(source)) is found


def test_cypher_lives_only_in_queries_modules():
    wrong = []
    for module in MODULES:
        rel = str(module.path.relative_to(ROOT))
        if module.path.name == "queries.py" or rel in CYPHER_HOMES:
            continue
        for line, text in cypher_outside_queries(module.path.read_text()):
            wrong.append(f"{rel}:{line} {text}")
    assert wrong == []


def test_only_repositories_run_statements():
    """A statement reaches Neo4j through a repository: no other module imports a queries
    module (a queries module may reuse another's fragments; the database package and the
    migrations hold their own)."""
    wrong = []
    for module in MODULES:
        if module.kind in (KINDS["queries"], KINDS["repository"]) or module.package == "db":
            continue
        for line, target in imports_of(module):
            if target.endswith(".queries") or (target == "cmdb.core.cypher" and
                    _builds_statements(module)):
                wrong.append(f"{module.path.relative_to(ROOT)}:{line} imports {target}")
    assert wrong == []


def _builds_statements(module: Module) -> bool:
    """Whether a module takes a statement builder (not only shared names) from core.cypher."""
    tree = ast.parse(module.path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "cmdb.core.cypher":
            return any(a.name in {"build_list_query", "trusted"} for a in node.names)
    return False
