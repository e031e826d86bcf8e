"""Issue 14: the alert list's CSV export (/alerts) holds only the caller's region, as the list
does, and is in the audit log; a crafted region filter is refused and audited."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from tests.access.conftest import login

pytestmark = pytest.mark.integration


def _export(web, region):
    body = {"output": "alerts-download.data", "outputs": {"id": "alerts-download", "property": "data"},
            "inputs": [{"id": "alerts-export", "property": "n_clicks", "value": 1}],
            "state": [{"id": "alerts-region", "property": "value", "value": region},
                      {"id": "alerts-theme", "property": "value", "value": "all"},
                      {"id": "alerts-levels", "property": "value", "value": []},
                      {"id": "alerts-statuses", "property": "value", "value": []},
                      {"id": "alerts-params", "property": "data", "value": {"lang": "zh"}}],
            "changedPropIds": ["alerts-export.n_clicks"]}
    return web.post("/_dash-update-component", json=body)


def _audit(engine, actor):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT action, region, outcome, detail FROM audit_log WHERE actor = :a ORDER BY id"), {"a": actor}
        ).mappings()]


def test_the_csv_export_holds_the_callers_region_only_and_is_audited(access):
    engine, app, _ = access
    web = login(app, "gz-operator")
    assert web.get("/alerts").status_code == 200  # registers the page's callbacks
    r = _export(web, None)
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    download = r.get_json()["response"]["alerts-download"]["data"]
    assert download["filename"].startswith("alerts-440100-") and download["filename"].endswith(".csv")
    rows = list(csv.reader(io.StringIO(download["content"].lstrip("\ufeff"))))
    assert rows[0][:3] == ["id", "等级", "区域"]
    ids = {row[0] for row in rows[1:]}
    assert {"A-TIANHE-1", "A-YUEXIU-1"} <= ids and "A-FUTIAN-1" not in ids
    exported = [a for a in _audit(engine, "gz-operator") if a["action"] == "export_alerts"]
    assert exported and exported[-1]["outcome"] == "ok" and exported[-1]["region"].strip() == "440100"
    assert exported[-1]["detail"]["rows"] == len(rows) - 1

    assert _export(web, "440300").status_code == 403  # Shenzhen: not the operator's region
    assert any(a["outcome"] == "denied" and (a["region"] or "").strip() == "440300"
               for a in _audit(engine, "gz-operator"))
