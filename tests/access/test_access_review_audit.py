"""Issue 13 items 4 and 5: the region guard cannot be walked around (doubled slashes, the query
string, crafted callbacks), and every denial is in the audit log with its real outcome, as are
reads of alerts and records."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.access.conftest import login, token_for
from tests.access.test_access_scope import _nav

pytestmark = pytest.mark.integration


def _audit(engine, **where) -> list[dict]:
    sql = "SELECT actor, action, region, target, outcome, detail FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(f"{k} = :{k}" for k in where)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql + " ORDER BY id"), where).mappings()]


def _region(row) -> str | None:
    return (row["region"] or "").strip() or None


# --------------------------------------------------------------------------- item 4
@pytest.mark.parametrize("path", ["//county/440303", "///county/440303", "/county//440303",
                                  "/county/440106?adcode=440303", "/county/440106?adcode=440303&theme=flood"])
def test_item4_no_foreign_region_through_slashes_or_the_query(access, path):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    # PATH_INFO as a server receives it: a client library would read "//county" as a host name
    bare, _, query = path.partition("?")
    r = web.get("/", environ_overrides={"PATH_INFO": bare, "QUERY_STRING": query})
    assert r.status_code in (400, 403), (path, r.status_code)
    assert "440303" not in r.get_data(as_text=True).split("不在您的权限范围内")[-1] or r.status_code == 403
    denied = [a for a in _audit(engine, actor="tianhe-operator") if a["outcome"] == "denied"]
    assert denied and _region(denied[-1]) in ("440303", None)


def test_item4_dash_navigation_cannot_use_slashes_or_the_query(access):
    _, app, _ = access
    web = login(app, "tianhe-operator")
    assert _nav(web, "//county/440303").status_code == 403
    body = {"output": ".._pages_content.children..._pages_store.data..",
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/county/440106"},
                       {"id": "_pages_location", "property": "search", "value": "?adcode=440303"}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}
    assert web.post("/_dash-update-component", json=body).status_code in (400, 403)


def test_item4_a_crafted_live_callback_for_a_foreign_region_is_refused_and_audited(access):
    engine, app, _ = access
    web = login(app, "gz-operator")
    assert web.get("/city/440100").status_code == 200  # registers the page's callbacks
    key = next(k for k in app.callback_map if "city-shown.data" in k and "city-map.figure" in k)
    spec = app.callback_map[key]
    outputs = [{"id": o.split(".")[0], "property": o.split(".")[1]} for o in key.strip(".").split("...")]
    body = {"output": key, "outputs": outputs,
            "inputs": [{"id": "city-live", "property": "n_intervals", "value": 1}],
            "state": [{"id": "city-params", "property": "data",
                       "value": {"adcode": "440300", "theme": "all", "window": "24h", "lang": "zh", "screen": "desk"}},
                      {"id": "city-shown", "property": "data",
                       "value": {"kpis": {}, "codes": [], "levels": [], "since": None, "ticks": 0}},
                      {"id": "city-replaying", "property": "data", "value": 0}],
            "changedPropIds": ["city-live.n_intervals"]}
    assert spec  # the live callback exists
    r = web.post("/_dash-update-component", json=body)
    assert r.status_code == 403, r.get_data(as_text=True)[:300]
    assert any(_region(a) == "440300" and a["outcome"] == "denied" for a in _audit(engine, actor="gz-operator"))


# --------------------------------------------------------------------------- item 5
def test_item5_api_404s_and_csrf_refusals_are_audited_as_denied(access):
    engine, app, _ = access
    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/alerts/A-FUTIAN-1", headers=h).status_code == 404
    assert api.get("/api/v1/alerts/NO-SUCH", headers=h).status_code == 404
    web = login(app, "tianhe-operator")
    assert web.post("/_dash-update-component", json={"inputs": []},
                    headers={"Origin": "http://evil.example"}).status_code == 403
    denied = [a for a in _audit(engine, actor="tianhe-operator") if a["outcome"] == "denied"]
    targets = [a["target"] or "" for a in denied]
    assert any("A-FUTIAN-1" in t for t in targets) and any("NO-SUCH" in t for t in targets)
    assert any(a["detail"].get("status") == 403 and "_dash-update-component" in (a["target"] or "") for a in denied)


def test_item5_bulk_actions_on_foreign_ids_and_failed_actions_have_their_real_outcome(access):
    engine, _, _ = access
    from apps import alerts_view
    from apps.scope import Scope, scoped

    th = Scope(home="440106", roles=frozenset({"operator", "viewer"}), username="tianhe-operator")
    with scoped(th):
        out = alerts_view.bulk_action(engine, alert_ids=["A-FUTIAN-1", "A-TIANHE-1"], action="resolve",
                                      actor="x", note="n")
        again = alerts_view.bulk_action(engine, alert_ids=["A-TIANHE-1"], action="ack", actor="x")
    assert [o.ok for o in out] == [False, True] and not again[0].ok  # resolved: no acknowledging now
    rows = _audit(engine, actor="tianhe-operator")
    futian = [a for a in rows if a["target"] == "A-FUTIAN-1"]
    assert futian and futian[-1]["outcome"] == "denied"
    ack = [a for a in rows if a["target"] == "A-TIANHE-1" and a["action"] == "alert_acknowledge"]
    assert ack and ack[-1]["outcome"] == "failed"  # refused by the lifecycle: not recorded as ok
    resolve = [a for a in rows if a["target"] == "A-TIANHE-1" and a["action"] == "alert_resolve"]
    assert [a["outcome"] for a in resolve] == ["ok"]


def test_item5_reads_of_alerts_and_records_are_audited(access):
    engine, app, _ = access
    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/alerts", headers=h).status_code == 200
    assert api.get("/api/v1/alerts/A-TIANHE-1", headers=h).status_code == 200
    actions = [(a["action"], a["target"]) for a in _audit(engine, actor="tianhe-operator")]
    assert ("view_alerts", "/api/v1/alerts") in actions
    assert ("view_alert", "A-TIANHE-1") in actions
