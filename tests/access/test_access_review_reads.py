"""Issue 13, second pass: reads of single alerts, incidents and records are audited with the
object's id and their real outcome on every path (the Dash pages as well as the API), and the
alert list filters by the caller's region in its own query, refusing (403, audited) a foreign
region asked for in the address, a navigation or a crafted callback."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.access.conftest import login, token_for
from tests.access.test_access_review_audit import _audit, _region
from tests.access.test_access_scope import ROUTER_OUTPUT

pytestmark = pytest.mark.integration


def _nav(client, pathname: str, search: str = ""):
    """Dash's client-side navigation: the pages router callback with a path and a query string."""
    body = {"output": ROUTER_OUTPUT,
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                       {"id": "_pages_location", "property": "search", "value": search}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}
    return client.post("/_dash-update-component", json=body)


def _incident_of(engine, alert_id: str) -> int:
    from analytics.alerting.incidents import incident_of

    inc = incident_of(engine, alert_id)
    assert inc is not None, "the seeded alert belongs to an incident"
    return inc


# --------------------------------------------------------------------------- a: reads audited
def test_the_alert_page_audits_reads_and_foreign_ids_as_denied(access):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    assert _nav(web, "/alert/A-TIANHE-1").status_code == 200
    r = _nav(web, "/alert/A-FUTIAN-1")  # a Shenzhen alert: the page says not found ...
    assert r.status_code == 200 and "A-FUTIAN-1" in r.get_data(as_text=True)
    assert "积水 A-FUTIAN-1" not in r.get_data(as_text=True)  # ... and shows nothing of it
    reads = [a for a in _audit(engine, actor="tianhe-operator") if a["action"] == "view_alert"]
    assert [(a["target"], a["outcome"], _region(a)) for a in reads] == [
        ("A-TIANHE-1", "ok", "440106"), ("A-FUTIAN-1", "denied", None)]
    assert reads[-1]["detail"]["status"] == 404


def test_the_incident_page_audits_reads_and_foreign_ids_as_denied(access):
    engine, app, _ = access
    own, foreign = _incident_of(engine, "A-TIANHE-1"), _incident_of(engine, "A-FUTIAN-1")
    web = login(app, "tianhe-operator")
    assert _nav(web, f"/incident/{own}").status_code == 200
    assert _nav(web, f"/incident/{foreign}").status_code == 200  # "not found"
    assert _nav(web, "/incident/99999999999999999999").status_code == 200  # beyond a bigint: not found, no 500
    reads = [a for a in _audit(engine, actor="tianhe-operator") if a["action"] == "view_incident"]
    assert [(a["target"], a["outcome"]) for a in reads] == [
        (str(own), "ok"), (str(foreign), "denied"), ("99999999999999999999", "denied")]
    assert _region(reads[0]) == "440106"


def test_api_record_reads_and_foreign_records_are_audited(access):
    engine, app, _ = access
    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/records/reading/R-440106", headers=h).status_code == 200
    assert api.get("/api/v1/records/video_event/V-440104", headers=h).status_code == 404  # Yuexiu
    rows = _audit(engine, actor="tianhe-operator")
    assert ("view_record", "reading:R-440106", "ok") in [(a["action"], a["target"], a["outcome"]) for a in rows]
    denied = [a for a in rows if a["outcome"] == "denied"]
    assert any("V-440104" in (a["target"] or "") and a["detail"]["status"] == 404 for a in denied)


def test_the_alert_list_page_audits_its_reads(access):
    engine, app, _ = access
    web = login(app, "gz-operator")
    assert _nav(web, "/alerts", "?region=440106").status_code == 200
    reads = [a for a in _audit(engine, actor="gz-operator") if a["action"] == "view_alerts"]
    assert len(reads) == 1 and _region(reads[0]) == "440106" and reads[0]["outcome"] == "ok"
    assert reads[0]["detail"]["rows"] == 3  # the three Tianhe alerts (all open)


# --------------------------------------------------------------------------- b: list scoped twice
def test_the_alert_list_query_carries_the_region_even_with_row_level_security_widened(access):
    """Defence in depth: run the page's query on a connection that row-level security does not
    narrow (the owner's, unscoped): it still returns only the asked region's subtree."""
    engine, _, _ = access
    from apps import alerts_view
    from apps.scope import unscoped

    with unscoped():
        with engine.connect() as conn:  # the connection really is wide open
            assert conn.execute(sa.text("SELECT count(DISTINCT city) FROM alerts")).scalar() == 2
        tianhe = alerts_view.filter_alerts(engine, home="440106", region=None, statuses=None)
        gz = alerts_view.filter_alerts(engine, home="440100", region="440104", statuses=None)
    assert set(tianhe["adcode"]) == {"440106"} and len(tianhe) == 3
    assert set(gz["adcode"]) == {"440104"}
    with pytest.raises(Exception, match="outside your region"):
        alerts_view.filter_alerts(engine, home="440106", region="440304")


@pytest.mark.parametrize("how", ["get", "navigation", "navigation-href"])
def test_a_foreign_region_filter_on_the_alert_list_is_refused_and_audited(access, how):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    if how == "get":
        r = web.get("/alerts?region=440304")
    elif how == "navigation":
        r = _nav(web, "/alerts", "?region=440304")
    else:
        body = {"output": ROUTER_OUTPUT,
                "outputs": [{"id": "_pages_content", "property": "children"},
                            {"id": "_pages_store", "property": "data"}],
                "inputs": [{"id": "_pages_location", "property": "href",
                            "value": "http://127.0.0.1/alerts?region=440304"}],
                "changedPropIds": ["_pages_location.href"], "state": []}
        r = web.post("/_dash-update-component", json=body)
    assert r.status_code == 403, r.get_data(as_text=True)[:300]
    assert "积水 A-FUTIAN-1" not in r.get_data(as_text=True)
    denied = [a for a in _audit(engine, actor="tianhe-operator") if a["outcome"] == "denied"]
    assert denied and _region(denied[-1]) == "440304"
    # its own county as a filter is fine
    assert web.get("/alerts?region=440106").status_code == 200


def test_a_crafted_alert_list_callback_with_a_foreign_region_is_refused_and_audited(access):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/alerts").status_code == 200
    assert _nav(web, "/alerts").status_code == 200  # registers the page's callbacks
    key = next(k for k in app.callback_map if k.startswith("..alerts-table.data"))
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in key.strip(".").split("...")]
    inputs = [{"id": "alerts-region", "property": "value", "value": "440304"},
              {"id": "alerts-theme", "property": "value", "value": "all"},
              {"id": "alerts-levels", "property": "value", "value": []},
              {"id": "alerts-statuses", "property": "value", "value": ["open"]},
              []]
    state = [{"id": "alerts-table", "property": p, "value": v} for p, v in
             (("derived_virtual_data", []), ("selected_rows", []), ("data", []))]
    state += [{"id": "alerts-note", "property": "value", "value": ""},
              {"id": "alerts-params", "property": "data", "value": {"lang": "zh"}}]
    body = {"output": key, "outputs": outputs, "inputs": inputs, "state": state,
            "changedPropIds": ["alerts-region.value"]}
    r = web.post("/_dash-update-component", json=body)
    assert r.status_code == 403, r.get_data(as_text=True)[:300]
    assert "A-FUTIAN-1" not in r.get_data(as_text=True)
    denied = [a for a in _audit(engine, actor="tianhe-operator") if a["outcome"] == "denied"]
    assert denied and _region(denied[-1]) == "440304"


def test_an_unknown_api_path_is_a_json_404_not_the_dash_page(access):
    engine, app, _ = access
    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    for path in ("/api/v1/sensors/S-440104/readings", "/api/v1/alerts/A-TIANHE-1/nothing", "/api/v1/x"):
        r = api.get(path, headers=h)
        assert r.status_code == 404 and r.is_json and r.get_json()["error"]["code"] == "not_found", path
    assert api.get("/api/v1/x").status_code == 401  # anonymous: not even told what exists
    assert api.get("/api/v1/alerts/A-TIANHE-1", headers=h).status_code == 200  # real routes still win
