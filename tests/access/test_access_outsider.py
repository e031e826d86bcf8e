"""Issue 14, as an outsider: the Tianhe operator, signed in, crafting requests for another
county's alert, sensor, export and actions (the ids in URLs and in the stores a browser sends
back) is refused, and every refusal is in the audit log as refused."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from tests.access.conftest import login
from tests.access.test_access_export import _export

pytestmark = pytest.mark.integration

FOREIGN = "A-YUEXIU-1"  # Yuexiu, 440104: Guangzhou, not Tianhe


def _dash(client, outputs: list, inputs: list, state: list, changed: str):
    output = ".." + "...".join(f"{o['id']}.{o['property']}" for o in outputs) + ".."  # Dash's multi-output key
    return client.post("/_dash-update-component", json={"output": output, "outputs": outputs, "inputs": inputs,
                                                         "state": state, "changedPropIds": [changed]})


def _pattern(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


def _audit(engine, actor, since_id):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(
            "SELECT action, target, region, outcome FROM audit_log WHERE actor = :a AND id > :i ORDER BY id"),
            {"a": actor, "i": since_id}).mappings()]


def _last_id(engine):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar()


def _status(engine, aid):
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT status FROM alerts WHERE id = :i"), {"i": aid}).scalar()


def test_the_alert_page_of_another_county_is_refused_and_audited(access):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    mark = _last_id(engine)
    r = _dash(web, [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
              [{"id": "_pages_location", "property": "pathname", "value": f"/alert/{FOREIGN}"},
               {"id": "_pages_location", "property": "search", "value": ""}], [], "_pages_location.pathname")
    page = r.get_data(as_text=True)
    assert f"积水 {FOREIGN}" not in page and "alert-forms" not in page
    assert {"action": "view_alert", "target": FOREIGN, "region": None, "outcome": "denied"} in _audit(
        engine, "tianhe-operator", mark)


@pytest.mark.parametrize("action", ["ack", "take_over", "resolve", "close", "reopen", "dispatch"])
def test_the_alert_page_form_on_another_countys_alert_is_refused_and_audited(access, action):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/alert/A-TIANHE-1").status_code == 200  # registers the page's callbacks
    before, mark = _status(engine, FOREIGN), _last_id(engine)
    names = ("result", "content", "quick", "dispatch-buttons", "note-buttons")
    outputs = [{"id": f"alert-{n}", "property": "children"} for n in names] + [
        {"id": "alert-dispatch-form", "property": "style"}, {"id": "alert-note-form", "property": "style"},
        {"id": "alert-unit", "property": "value"}, {"id": "alert-note", "property": "value"},
        {"id": "alert-due", "property": "value"}]
    button = {"type": "alert-do", "action": action}
    r = _dash(web, outputs, [[{"id": button, "property": "n_clicks", "value": 1}]],
              [{"id": "alert-note", "property": "value", "value": "越权"},
               {"id": "alert-unit", "property": "value", "value": "越秀区排水所"},
               {"id": "alert-due", "property": "value", "value": "2030-01-01 08:00"},
               {"id": "alert-params", "property": "data", "value": {"alert_id": FOREIGN, "lang": "zh"}}],
              f"{_pattern(button)}.n_clicks")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    result = json.dumps(r.get_json()["response"]["alert-result"], ensure_ascii=False)
    assert "alert-error" in result and "alert-ok" not in result
    assert _status(engine, FOREIGN) == before
    refused = [a for a in _audit(engine, "tianhe-operator", mark) if a["target"] == FOREIGN]
    assert refused and all(a["outcome"] == "denied" for a in refused), refused


def test_the_county_buttons_on_another_countys_alert_are_refused_and_audited(access):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/county/440106").status_code == 200
    before, mark = _status(engine, FOREIGN), _last_id(engine)
    button = {"type": "county-action", "action": "resolve", "alert": FOREIGN}
    params = {"adcode": "440106", "theme": "all", "window": "24h", "lang": "zh", "screen": "desk", "alert": None}
    r = _dash(web, [{"id": "county-action-result", "property": "children"},
                    {"id": "county-alerts", "property": "children"}],
              [[{"id": button, "property": "n_clicks", "value": 1}]],
              [{"id": "county-note", "property": "value", "value": "越权"},
               {"id": "county-params", "property": "data", "value": params}], f"{_pattern(button)}.n_clicks")
    assert r.status_code == 200, r.get_data(as_text=True)[:300]
    assert "county-action-error" in json.dumps(r.get_json()["response"], ensure_ascii=False)
    assert _status(engine, FOREIGN) == before
    assert {"action": "alert_resolve", "target": FOREIGN, "region": None, "outcome": "denied"} in _audit(
        engine, "tianhe-operator", mark)


def test_another_countys_sensor_is_not_shown_in_the_own_county(access):
    _, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/county/440106").status_code == 200
    params = {"adcode": "440106", "theme": "all", "window": "24h", "lang": "zh", "screen": "desk", "alert": None}
    r = _dash(web, [{"id": "county-series", "property": "children"}, {"id": "county-sensor-url", "property": "search"}],
              [{"id": "county-map", "property": "clickData",
                "value": {"points": [{"customdata": ["sensor", "S-440104"]}]}}],
              [{"id": "county-params", "property": "data", "value": params},
               {"id": "county-sensor-url", "property": "search", "value": ""}], "county-map.clickData")
    assert r.status_code == 200
    assert "county-series-graph" not in r.get_data(as_text=True)  # no series: row-level security hides it
    r = _dash(web, [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
              [{"id": "_pages_location", "property": "pathname", "value": "/county/440106"},
               {"id": "_pages_location", "property": "search", "value": "?sensor=S-440104"}],
              [], "_pages_location.pathname")
    assert r.status_code == 200 and "county-series-graph" not in r.get_data(as_text=True)


@pytest.mark.parametrize("region", ["440104", "440100", "440000", "440304"])
def test_the_csv_export_of_another_region_is_refused_and_audited(access, region):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/alerts").status_code == 200
    mark = _last_id(engine)
    r = _export(web, region)
    assert r.status_code == 403 and "A-YUEXIU-1" not in r.get_data(as_text=True)
    assert any(a["outcome"] == "denied" and (a["region"] or "").strip() == region
               for a in _audit(engine, "tianhe-operator", mark))


def test_the_api_refusals_of_another_countys_alert_are_audited(access):
    from tests.access.conftest import token_for

    engine, app, _ = access
    h = token_for(engine, "tianhe-operator")
    api = app.server.test_client()
    mark = _last_id(engine)
    assert api.get(f"/api/v1/alerts/{FOREIGN}", headers=h).status_code == 404
    assert api.post(f"/api/v1/alerts/{FOREIGN}/actions", headers=h, json={"action": "resolve"}).status_code == 404
    got = _audit(engine, "tianhe-operator", mark)
    assert any(a["target"] == FOREIGN and a["action"] == "alert_resolve" and a["outcome"] == "denied" for a in got)
