"""The layout's rules, checked on the source with ``ast`` (no imports, no services):

- no import cycles between modules (imports inside functions count: a lazy import is still a
  dependency, and a cycle of them is the knot this check exists to prevent);
- no private name (``_x``) of one module used by another, neither imported nor reached as an
  attribute of an imported module;
- every package says in its docstring what it is for and lists its public surface in
  ``__all__``; ``analytics`` (detection) and ``analytics.alerting`` (alert handling) separately.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tongguan", "geo", "ingest", "analytics", "apps")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts:  # Alembic's scripts, loaded by file name
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(encoding="utf-8"), filename=str(path)) for name, path in MODULES.items()}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if _is_package(module) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(imported internal module, name imported from it or None, node) for every import."""
    for node in ast.walk(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    yield alias.name, None, node
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    yield sub, None, node
                elif target in MODULES:
                    yield target, alias.name, node


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t != m} for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules():
    assert _cycles(_graph()) == []


def _private(name: str | None) -> bool:
    return bool(name) and name.startswith("_") and not name.startswith("__")


def _private_uses(module: str) -> list[str]:
    found = []
    aliases: dict[str, str] = {}  # local name -> internal module it is bound to
    for target, name, node in _imports(module):
        if target == module:
            continue
        if _private(name):
            found.append(f"{module}:{node.lineno} imports {target}.{name}")
        if name is None:
            for alias in node.names:
                full = alias.name if isinstance(node, ast.Import) else f"{_resolve(module, node)}.{alias.name}"
                if full == target:
                    aliases[alias.asname or alias.name.split(".")[0]] = target
    for node in ast.walk(TREES[module]):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            found.append(f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return found


def test_no_private_names_used_across_modules():
    assert [use for m in MODULES for use in _private_uses(m)] == []


PUBLIC_PACKAGES = [m for m in MODULES if _is_package(m) and m.count(".") <= 2]


@pytest.mark.parametrize("package", PUBLIC_PACKAGES)
def test_each_package_says_what_it_is_for_and_lists_its_surface(package):
    tree = TREES[package]
    doc = ast.get_docstring(tree)
    assert doc and len(doc) > 40, f"{package}: the docstring should say what the package is for"
    listed = [n for n in tree.body
              if (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets))
              or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.target.id == "__all__")]
    assert listed, f"{package}: list the public surface in __all__"
    names = importlib.import_module(package).__all__
    assert list(names) == sorted(set(names)), f"{package}: __all__ sorted, no repeats"
    mod = importlib.import_module(package)
    for name in names:
        assert getattr(mod, name, None) is not None or name in getattr(mod, "_EXPORTS", {}), (package, name)


def test_analytics_lists_detection_and_alerting_separately():
    import analytics
    import analytics.alerting

    detection, alerting = set(analytics.__all__), set(analytics.alerting.__all__)
    assert not detection & alerting
    assert "Notifier" in alerting and "transition" in alerting and "DetectorCore" in detection
    assert len(detection) <= 40 and len(alerting) <= 40  # 62 names in one list before


# The views' queries trust the migrations: no module of apps guesses table or column names at
# run time (the knot issue 15 untied: apps/data.py read information_schema and tried candidate
# names), and apps/data.py does not come back, not even as a re-export.
INTROSPECTION = ("information_schema", "pg_catalog.pg_attribute", "ROLLUP_CANDIDATES")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "apps"))
def test_apps_do_not_introspect_the_schema_at_run_time(module):
    text = MODULES[module].read_text(encoding="utf-8")
    assert not [word for word in INTROSPECTION if word in text], (
        f"{module}: read the tables as the migrations define them")


def test_the_views_queries_live_in_apps_queries():
    assert "apps.data" not in MODULES
    imports_data = [f"{m}:{node.lineno}" for m in MODULES for node in ast.walk(TREES[m])
                    if (isinstance(node, ast.ImportFrom) and (node.module == "apps.data" or (
                        node.module == "apps" and "data" in [a.name for a in node.names])))
                    or (isinstance(node, ast.Import) and "apps.data" in [a.name for a in node.names])]
    assert imports_data == []
    assert {"apps.queries.regions", "apps.queries.alerts", "apps.queries.rollups", "apps.queries.summary",
            "apps.queries.county"} <= set(MODULES)


# The alert statuses are spelled once (analytics/statuses.py, and the migrations that froze them):
# a list of them written out elsewhere, in Python or in SQL, is a second vocabulary in the making.
STATUS_LIST = re.compile(r"""['"]open['"],\s*['"]acknowledged['"]|['"]resolved['"],\s*['"]closed['"]""")


def test_status_lists_come_from_analytics_statuses():
    assert STATUS_LIST.search("status IN ('open','acknowledged','dispatched')")  # the checker sees one
    found = [f"{m}:{i}" for m, path in MODULES.items() if m != "analytics.statuses"
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if STATUS_LIST.search(line)]
    assert found == []


def test_yaml_files_are_read_by_the_one_loader():
    """tongguan.yamlfile reads every configuration file (one-line errors, no repeated keys)."""
    readers = [f"{m}:{node.lineno}" for m in MODULES if m != "tongguan.yamlfile" for node in ast.walk(TREES[m])
               if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "yaml"
               and node.attr in ("load", "safe_load", "full_load", "unsafe_load", "load_all", "safe_load_all")]
    assert readers == []
