"""The one YAML loader of the product's configuration files: one-line errors in the owning
package's error type, and a key given twice is an error (not "last one wins")."""

from pathlib import Path

import pytest

from tongguan.yamlfile import parse_yaml, read_yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = sorted(p for pkg in ("tongguan", "geo", "ingest", "analytics", "apps")
                  for p in (ROOT / pkg).rglob("*.yaml"))


@pytest.mark.parametrize("path", PACKAGED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_packaged_yaml_file_reads_without_repeated_keys(path):
    assert read_yaml(path, "packaged file") is not None


@pytest.mark.parametrize("text, message", [
    ("rules:\n  - id: a\n    id: b\n", "line 3, column 5: 'id' is given twice in one mapping"),
    ("a: [1, 2\nb: 3\n", "line 2, column 2:"),
    ("a: 1\n  b: 2\n", "line 2, column 4: mapping values are not allowed here"),
])
def test_a_broken_file_is_one_line_naming_where(text, message):
    with pytest.raises(ValueError) as err:
        parse_yaml(text, "x.yaml", "test file")
    assert str(err.value).startswith("cannot read test file x.yaml: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def _loaders():
    from analytics import AnalyticsError
    from analytics.alerting import AlertingError, load_alerting
    from analytics.policy import load_policy
    from analytics.rules import load_rules
    from ingest import IngestError, load_catalogue

    return [(load_rules, AnalyticsError, "rules file"), (load_policy, AnalyticsError, "policy file"),
            (load_alerting, AlertingError, "alerting configuration"),
            (load_catalogue, IngestError, "the ingest catalogue")]


@pytest.mark.parametrize("index", range(4))
def test_each_loader_says_it_in_its_packages_error_type(tmp_path, index):
    load, error, what = _loaders()[index]
    bad = tmp_path / "twice.yaml"
    bad.write_text("a: 1\na: 2\n", encoding="utf-8")
    with pytest.raises(error, match=f"cannot read {what} .*twice.yaml: line 2, column 1: 'a' is given twice"):
        load(str(bad))
    with pytest.raises(error, match=f"cannot read {what} .*missing.yaml: No such file"):
        load(str(tmp_path / "missing.yaml"))
