"""Every docstring example (``>>>``) of every module runs, so the documentation cannot go stale.
The modules are found by their text, so a new example is collected without editing this file."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("tongguan", "geo", "ingest", "analytics", "apps")


def _with_examples() -> list[str]:
    out = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            if "migrations" in rel.parts or ">>>" not in path.read_text(encoding="utf-8"):
                continue
            out.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return out


@pytest.fixture(scope="module")
def dash_app():
    # Pages register themselves with the Dash app (dash.register_page), so one must exist first.
    from apps import AppConfig, create_app

    return create_app(AppConfig(database_url="postgresql://nobody@127.0.0.1:9/none", kafka_bootstrap="127.0.0.1:9"))


@pytest.mark.parametrize("module", _with_examples())
def test_docstring_examples_run(module, dash_app):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, f"{module}: {result.failed} of {result.attempted} failed"
