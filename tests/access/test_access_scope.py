"""Region scope through the apps and the API: a Tianhe operator reads and handles only Tianhe;
a Guangzhou operator handles an alert escalated from Tianhe; the province admin reads the
audit log of what these tests did."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.access.conftest import SCRIPT, csrf_of, login, token_for

pytestmark = pytest.mark.integration


ROUTER_OUTPUT = ".._pages_content.children..._pages_store.data.."


def _nav(client, pathname: str):
    """What Dash's client-side navigation sends: the pages router callback with the new path."""
    body = {"output": ROUTER_OUTPUT,
            "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
            "inputs": [{"id": "_pages_location", "property": "pathname", "value": pathname},
                       {"id": "_pages_location", "property": "search", "value": ""}],
            "changedPropIds": ["_pages_location.pathname"], "state": []}
    return client.post("/_dash-update-component", json=body)


def test_tianhe_operator_sees_and_handles_only_tianhe(access):
    engine, app, _ = access
    web = login(app, "tianhe-operator")
    # The apps: own county page yes; a neighbouring county, the city and the province no.
    assert web.get("/county/440106").status_code == 200
    for path in ("/county/440104", "/city/440100", "/province/440000", "/county/440304"):
        r = web.get(path)
        assert r.status_code == 403, path
        assert "不在您的权限范围内" in r.get_data(as_text=True)
    assert _nav(web, "/county/440104").status_code == 403
    assert _nav(web, "/city/440100").status_code == 403
    assert _nav(web, "/county/440106").status_code == 200

    # The API with the operator's token: the same scope.
    h = token_for(engine, "tianhe-operator")
    api = app.server.test_client()
    alerts = api.get("/api/v1/alerts", headers=h).get_json()
    assert {a["id"] for a in alerts["items"]} == {"A-TIANHE-1", "A-TIANHE-ESC", "A-TIANHE-2"}
    assert alerts["total"] == 3
    assert api.get("/api/v1/alerts/A-TIANHE-1", headers=h).status_code == 200
    for aid in ("A-YUEXIU-1", "A-FUTIAN-1"):
        r = api.get(f"/api/v1/alerts/{aid}", headers=h)
        assert r.status_code == 404 and r.get_json()["error"]["code"] == "not_found"
        r = api.post(f"/api/v1/alerts/{aid}/actions", headers=h, json={"action": "acknowledge"})
        assert r.status_code == 404
    for url in ("/api/v1/regions/440104", "/api/v1/regions/440100/children", "/api/v1/regions/440100/indicators",
                "/api/v1/regions/440000/quality", "/api/v1/alerts?region=440104"):
        r = api.get(url, headers=h)
        assert r.status_code == 403, url
        assert set(r.get_json()["error"]) == {"status", "code", "message"}
    assert api.get("/api/v1/regions/440106/indicators", headers=h).get_json()["total"] == 1
    assert api.get("/api/v1/records/reading/R-440104", headers=h).status_code == 404
    rec = api.get("/api/v1/records/reading/R-440106", headers=h).get_json()
    assert rec["provenance"]["topic"] == "city.iot.readings" and rec["provenance"]["offset"] == 100
    regions = api.get("/api/v1/regions?per_page=500", headers=h).get_json()
    assert [r["adcode"] for r in regions["items"]] == ["440106"]

    # Handling its own alert works; the history names the user.
    r = api.post("/api/v1/alerts/A-TIANHE-1/actions", headers=h, json={"action": "acknowledge", "note": "收到"})
    assert r.status_code == 200, r.get_json()
    out = r.get_json()
    assert out["status"] == "acknowledged"
    assert out["history"][-1]["actor"] == "tianhe-operator"


def test_row_level_security_scopes_queries_written_elsewhere(access):
    """The views' own query functions, asked for the whole city, return only Tianhe's rows when
    they run under a Tianhe user's scope: the database enforces it, not the callers."""
    from apps import queries
    from apps.identity import get_user, scope_of
    from apps.scope import Scope, scoped

    engine, _, _ = access
    scope = scope_of(get_user(engine, "tianhe-operator"))
    with scoped(scope):
        df = queries.alerts_list(engine, scope="440100", statuses=None)
        with engine.connect() as conn:
            n_readings = conn.execute(sa.text("SELECT count(*) FROM readings")).scalar_one()
            n_rollups = conn.execute(sa.text("SELECT count(DISTINCT adcode) FROM reading_rollups_hour")).scalar_one()
            n_users = None
            try:
                conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
            except sa.exc.ProgrammingError:
                n_users = "denied"
    with scoped(scope), engine.connect() as conn:  # a rollback half-way does not drop back to the owner
        conn.rollback()
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() == "tongguan_scoped"
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 3
    assert set(df["id"]) == {"A-TIANHE-1", "A-TIANHE-ESC", "A-TIANHE-2"}
    assert n_readings == 1 and n_rollups == 1
    assert n_users == "denied"  # password hashes are never readable under a user's scope
    with engine.connect() as conn:  # outside a request: the owner (workers, CLI) sees all
        assert conn.execute(sa.text("SELECT current_user")).scalar_one() != "tongguan_scoped"
        assert conn.execute(sa.text("SELECT current_setting('tongguan.scope', true)")).scalar() in (None, "")
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 5
    with scoped(Scope.nobody()), engine.connect() as conn:  # anonymous: nothing (fail closed)
        assert conn.execute(sa.text("SELECT count(*) FROM alerts")).scalar_one() == 0


def test_guangzhou_operator_acts_on_alert_escalated_from_tianhe(access):
    engine, app, _ = access
    api = app.server.test_client()
    gz, th = token_for(engine, "gz-operator"), token_for(engine, "tianhe-operator")
    # The city sees all its counties' alerts.
    assert api.get("/api/v1/alerts", headers=gz).get_json()["total"] == 4
    # Escalated to the city: the Guangzhou operator acknowledges it (taking it over).
    r = api.post("/api/v1/alerts/A-TIANHE-ESC/actions", headers=gz, json={"action": "acknowledge"})
    assert r.status_code == 200, r.get_json()
    a = r.get_json()
    assert a["status"] == "acknowledged" and a["handling_region"] == "440100"
    assert [h["action"] for h in a["history"]][-2:] == ["taken_over", "acknowledged"]
    assert a["history"][-1]["actor"] == "gz-operator"
    # Now the city handles it: Tianhe can read it but no longer act on it.
    assert api.get("/api/v1/alerts/A-TIANHE-ESC", headers=th).status_code == 200
    r = api.post("/api/v1/alerts/A-TIANHE-ESC/actions", headers=th, json={"action": "resolve", "note": "x"})
    assert r.status_code == 403
    # Not escalated: the city must take it over explicitly before handling it.
    r = api.post("/api/v1/alerts/A-TIANHE-2/actions", headers=gz, json={"action": "acknowledge"})
    assert r.status_code == 403
    r = api.post("/api/v1/alerts/A-TIANHE-2/actions", headers=gz, json={"action": "take_over"})
    assert r.status_code == 200 and r.get_json()["handling_region"] == "440100"
    r = api.post("/api/v1/alerts/A-TIANHE-2/actions", headers=gz, json={"action": "resolve", "note": "排水完成"})
    assert r.status_code == 200 and r.get_json()["status"] == "resolved"
    # A refused transition is a 409 with the lifecycle's reason.
    r = api.post("/api/v1/alerts/A-TIANHE-2/actions", headers=gz, json={"action": "acknowledge"})
    assert r.status_code == 409 and "resolved" in r.get_json()["error"]["message"]
    # Shenzhen is not Guangzhou's.
    assert api.post("/api/v1/alerts/A-FUTIAN-1/actions", headers=gz,
                    json={"action": "take_over"}).status_code == 404


def test_city_dispatches_what_it_took_over_county_resolves_city_closes(access):
    """Issue 14: after the city dispatches down, it still handles the case; the county it was
    dispatched to reports it resolved; only the city verifies and closes it."""
    engine, app, _ = access
    api = app.server.test_client()
    gz, th = token_for(engine, "gz-operator"), token_for(engine, "tianhe-operator")
    url = "/api/v1/alerts/A-TIANHE-ESC/actions"
    assert api.post(url, headers=gz, json={"action": "take_over"}).status_code == 200
    r = api.post(url, headers=gz, json={"action": "dispatch", "assignee": "天河区排水所"})
    assert r.status_code == 409 and "due" in r.get_json()["error"]["message"]
    r = api.post(url, headers=gz, json={"action": "dispatch", "assignee": "天河区排水所", "due": "tomorrow"})
    assert r.status_code == 422
    due = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = api.post(url, headers=gz, json={"action": "dispatch", "assignee": "天河区排水所", "due": due})
    assert r.status_code == 200, r.get_json()
    a = r.get_json()
    assert (a["status"], a["handling_region"], a["assigned_region"], a["assigned_unit"]) == \
        ("dispatched", "440100", "440106", "天河区排水所")
    assert api.post(url, headers=th, json={"action": "close"}).status_code == 403
    r = api.post(url, headers=th, json={"action": "resolve", "note": "泵车排水完成"})
    assert r.status_code == 200 and r.get_json()["status"] == "resolved"
    assert api.post(url, headers=th, json={"action": "close"}).status_code == 403
    r = api.post(url, headers=gz, json={"action": "close", "note": "现场核查"})
    assert r.status_code == 200 and r.get_json()["status"] == "closed"
    assert [h["actor"] for h in r.get_json()["history"]][-4:] == ["gz-operator", "gz-operator", "tianhe-operator",
                                                                  "gz-operator"]


def test_province_admin_reads_everything_handles_nothing_and_audits(access):
    engine, app, _ = access
    api = app.server.test_client()
    adm = token_for(engine, "gd-admin")
    th = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/alerts", headers=adm).get_json()["total"] == 5
    r = api.post("/api/v1/alerts/A-TIANHE-1/actions", headers=adm, json={"action": "acknowledge"})
    assert r.status_code == 403  # an admin without the operator role does not handle alerts
    # Actions that the audit must show.
    web = login(app, "tianhe-operator")
    assert web.get("/county/440104").status_code == 403
    api.post("/api/v1/alerts/A-TIANHE-1/actions", headers=th, json={"action": "acknowledge"})
    bad = app.server.test_client()
    page = bad.get("/login")
    bad.post("/login", data={"username": "tianhe-operator", "password": "wrong-password!",
                             "csrf_token": csrf_of(page.get_data(as_text=True))})
    entries = api.get("/api/v1/audit?per_page=200", headers=adm).get_json()["items"]
    seen = {(e["actor"], e["action"], e["region"], e["outcome"]) for e in entries}
    assert ("tianhe-operator", "login", "440106", "ok") in seen
    assert ("tianhe-operator", "login_failed", "440106", "failed") in seen
    assert ("tianhe-operator", "view_region", "440104", "denied") in seen
    assert ("tianhe-operator", "alert_acknowledge", "440106", "ok") in seen
    assert ("gd-admin", "alert_acknowledge", "440106", "denied") in seen
    api.get("/api/v1/regions/440104", headers=th)
    entries = api.get("/api/v1/audit?action=denied", headers=adm).get_json()["items"]
    assert [(e["actor"], e["region"], e["channel"]) for e in entries][:1] == [("tianhe-operator", "440104", "api")]
    # Operators are not admins: no audit log for them; the audit page says so.
    assert api.get("/api/v1/audit", headers=th).status_code == 403
    assert web.get("/audit").status_code == 403
    html = login(app, "gd-admin").get("/audit?actor=tianhe-operator").get_data(as_text=True)
    assert "alert_acknowledge" in html and "view_region" in html
    # Append-only, even for the owner.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM audit_log"))


def test_lockout_csrf_and_sessions(access):
    from apps.identity import MAX_FAILURES, reset_password

    engine, app, _ = access
    client = app.server.test_client()
    token = csrf_of(client.get("/login").get_data(as_text=True))
    # No CSRF token: refused before the password is even looked at.
    assert client.post("/login", data={"username": "gz-operator", "password": "x" * 12}).status_code == 400
    for _ in range(MAX_FAILURES):
        r = client.post("/login", data={"username": "gz-operator", "password": "wrong-password!", "csrf_token": token})
        assert r.status_code == 401
    from tests.access.conftest import DEMO_PASSWORD

    r = client.post("/login", data={"username": "gz-operator", "password": DEMO_PASSWORD, "csrf_token": token})
    # issue 13 item 12: a locked (user, address) gets the wrong-password answer (no 423 to tell names)
    assert r.status_code == 401 and "用户名或密码错误" in r.get_data(as_text=True)
    reset_password(engine, "gz-operator", DEMO_PASSWORD)
    web = login(app, "gz-operator")
    assert web.get("/city/440100").status_code == 200
    # Dash callbacks from another origin are refused; anonymous callbacks are 401.
    r = web.post("/_dash-update-component", json={"inputs": []}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    assert app.server.test_client().post("/_dash-update-component", json={"inputs": []}).status_code == 401
    assert app.server.test_client().get("/city/440100").status_code == 302  # to /login
    # A password reset ends existing sessions.
    reset_password(engine, "gz-operator", DEMO_PASSWORD + "x")
    assert web.get("/city/440100").status_code == 302
    # Open redirects after log-in are refused.
    from apps.access_pages import safe_next

    assert safe_next("//evil.example/x") is None and safe_next("/county/440106") == "/county/440106"


def test_tokens_are_revocable_and_scoped(access):
    from apps.identity import create_token, revoke_token, set_active

    engine, app, _ = access
    api = app.server.test_client()
    t = create_token(engine, "tianhe-operator", "12345-hotline")
    h = {"Authorization": f"Bearer {t['token']}"}
    assert api.get("/api/v1/me", headers=h).get_json()["home"] == "440106"
    revoke_token(engine, t["id"])
    r = api.get("/api/v1/me", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
    t2 = create_token(engine, "tianhe-operator", "again")
    set_active(engine, "tianhe-operator", False)
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {t2['token']}"}).status_code == 401
    assert api.get("/api/v1/me").status_code == 401
    assert api.get("/api/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_script_payloads_stay_text(access):
    """A <script> in a video event's attributes (and in an alert's title) reaches the clients as
    text: JSON strings in the API (never HTML), React text in the views."""
    engine, app, _ = access
    api = app.server.test_client()
    adm, th = token_for(engine, "gd-admin"), token_for(engine, "tianhe-operator")
    r = api.get("/api/v1/records/video_event/V-440106", headers=adm)
    assert r.mimetype == "application/json" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.get_json()["attributes"]["note"] == SCRIPT
    # Sensitive fields are removed for roles without the clearance.
    rec = api.get("/api/v1/records/video_event/V-440106", headers=th).get_json()
    assert "attributes" not in rec and "attributes" in rec["hidden_fields"]
    assert api.get("/api/v1/alerts/A-TIANHE-1", headers=th).get_json()["title"].endswith(SCRIPT)
    # The county view through Dash: the payload is a string child, never raw HTML.
    web = login(app, "tianhe-operator")
    r = _nav(web, "/county/440106")
    assert r.status_code == 200
    holders = []

    def walk(node):
        if isinstance(node, dict):
            props = node.get("props") if isinstance(node.get("props"), dict) else {}
            if isinstance(props.get("children"), str) and SCRIPT in props["children"]:
                holders.append((node.get("type"), props))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(r.get_json())
    assert holders, "the alert title reaches the county view"
    for kind, props in holders:  # plain text children of HTML elements, never Markdown/raw HTML
        assert kind in ("Td", "Span", "Div", "P", "Li", "A", "Strong", "Small", "B"), kind
        assert not props.get("dangerously_allow_html")
    assert "srcDoc" not in r.get_data(as_text=True)
    # The server-rendered pages escape it.
    from apps import audit

    audit.record(engine, actor="tianhe-operator", action="view_region", region="440106", target=SCRIPT)
    html = login(app, "gd-admin").get("/audit").get_data(as_text=True)
    assert SCRIPT not in html and "&lt;script&gt;" in html


def test_catalogue_and_quality(access):
    engine, app, _ = access
    api = app.server.test_client()
    th = token_for(engine, "tianhe-operator")
    cat = api.get("/api/v1/catalogue", headers=th).get_json()["items"]
    ids = {d["id"] for d in cat if "id" in d}
    assert "readings:water_level" in ids and "video_events:road_ponding" in ids
    wl = next(d for d in cat if d.get("id") == "readings:water_level")
    assert wl["owner"]["zh"] and wl["classification"] in ("public", "internal", "sensitive") and wl["update"]
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO worker_heartbeats (worker, role, started_at, last_seen, stats) VALUES "
            "('store:h:1', 'store', now(), now(), CAST(:s AS jsonb))"),
            {"s": json.dumps({"consumed": 100, "readings_valid": 90, "dead_lettered": 10,
                              "reasons": {"out_of_range": 6, "bad_json": 4}})})
    q = api.get("/api/v1/regions/440106/quality?hours=2", headers=th).get_json()
    assert q["timeliness"]["readings"] == 1 and q["out_of_range"]["stored"] == 0
    assert q["timeliness"]["lag_p50_s"] == 0.0  # the seeded reading was stored at its own timestamp
    assert q["dead_letters"]["rate"] == pytest.approx(0.1)
    assert q["dead_letters"]["by_reason"]["out_of_range"]["rate"] == pytest.approx(0.06)
    assert q["out_of_range"]["dead_lettered"] == 6
    assert login(app, "tianhe-operator").get("/quality/440104").status_code == 403
    # issue 13 item 11: the catalogue page is for admins (README); the API's catalogue stays for all
    assert login(app, "tianhe-operator").get("/catalogue").status_code == 403
    assert "数据目录" in login(app, "gd-admin").get("/catalogue").get_data(as_text=True)


def test_openapi_document_is_served_and_valid(access):
    _, app, _ = access
    doc = app.server.test_client().get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/api/v1/alerts/{alert_id}/actions" in doc["paths"]
    json.dumps(doc)


def test_view_buttons_are_checked_like_the_api(access):
    """The county view's handling buttons (apps.handling) go through the same rule: inside a
    signed-in request only the handling region's operator acts, under their own name."""
    from apps import handling
    from apps.errors import AccessError
    from apps.handling import check_action
    from apps.identity import get_user, scope_of
    from apps.scope import scoped

    engine, _, _ = access
    th = scope_of(get_user(engine, "tianhe-operator"))
    adm = scope_of(get_user(engine, "gd-admin"))
    with scoped(th):
        assert check_action(engine, alert_id="A-TIANHE-1", action="acknowledge", actor="county:440106") \
            == "tianhe-operator"
        with pytest.raises(AccessError) as e:
            check_action(engine, alert_id="A-YUEXIU-1", action="acknowledge", actor="county:440104")
        assert e.value.status == 404
    with scoped(adm), pytest.raises(AccessError) as e:
        check_action(engine, alert_id="A-TIANHE-1", action="acknowledge", actor="x")
    assert e.value.status == 403
    with scoped(th), pytest.raises(AccessError):
        handling.handle(engine, alert_id="A-YUEXIU-1", action="ack", actor="county:440104")


def test_view_actions_of_the_city_on_an_escalated_alert(access):
    """Issue 14 items 1 and 3 in the views: the Guangzhou operator's 确认 on an alert escalated from
    Tianhe takes it over (it answered "take the alert over first"); an explicit take-over works on
    one not escalated; a dispatch stores its own unit and due time, never the note."""
    import sqlalchemy as sa

    from apps import handling
    from apps.errors import AccessError
    from apps.identity import get_user, scope_of
    from apps.scope import scoped

    engine, _, _ = access
    gz = scope_of(get_user(engine, "gz-operator"))
    due = datetime.now(UTC) + timedelta(hours=3)
    with scoped(gz):
        assert handling.handle(engine, alert_id="A-TIANHE-ESC", action="ack", actor="x") == "acknowledged"
        with pytest.raises(AccessError):  # not escalated: no implicit take-over
            handling.handle(engine, alert_id="A-TIANHE-2", action="ack", actor="x")
        assert handling.handle(engine, alert_id="A-TIANHE-2", action="take_over", actor="x") == "open"
        assert handling.handle(engine, alert_id="A-TIANHE-2", action="dispatch", actor="x",
                               note="值班员已确认, 请尽快处置", to_unit="白云区水务局", due_at=due) == "dispatched"
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT owner_region, assigned_unit, due_at FROM alert_handling "
                                   "WHERE alert_id = 'A-TIANHE-2'")).one()
        hist = conn.execute(sa.text("SELECT action, actor FROM alert_history WHERE alert_id = 'A-TIANHE-ESC' "
                                    "ORDER BY ts, id")).all()
    assert tuple(row) == ("440100", "白云区水务局", due)
    assert [tuple(h) for h in hist][-2:] == [("taken_over", "gz-operator"), ("acknowledged", "gz-operator")]


def test_subscriptions_are_scoped_and_audited(access):
    engine, app, _ = access
    api = app.server.test_client()
    th, gz, adm = (token_for(engine, u) for u in ("tianhe-operator", "gz-operator", "gd-admin"))
    r = api.post("/api/v1/subscriptions", headers=th, json={"name": "天河积水", "adcode": "440106",
                                                            "channels": ["inbox"], "themes": ["flood"]})
    assert r.status_code == 201, r.get_json()
    mine = r.get_json()["id"]
    assert api.post("/api/v1/subscriptions", headers=th, json={"name": "x", "adcode": "440100",
                                                               "channels": ["inbox"]}).status_code == 403
    r = api.post("/api/v1/subscriptions", headers=gz, json={"name": "广州", "adcode": "440100", "channels": ["inbox"]})
    theirs = r.get_json()["id"]
    assert {s["id"] for s in api.get("/api/v1/subscriptions", headers=th).get_json()["items"]} == {mine}
    assert {s["id"] for s in api.get("/api/v1/subscriptions", headers=gz).get_json()["items"]} == {mine, theirs}
    assert api.delete(f"/api/v1/subscriptions/{theirs}", headers=th).status_code == 404
    assert api.delete(f"/api/v1/subscriptions/{mine}", headers=gz).status_code == 403
    assert api.delete(f"/api/v1/subscriptions/{mine}", headers=th).status_code == 200
    entries = api.get("/api/v1/audit?action=subscription_*", headers=adm).get_json()["items"]
    assert {(e["actor"], e["action"], e["outcome"]) for e in entries} >= {
        ("tianhe-operator", "subscription_create", "ok"), ("gz-operator", "subscription_remove", "denied"),
        ("tianhe-operator", "subscription_remove", "ok")}


def test_admins_manage_users_of_their_subtree_and_users_their_tokens(access):
    from apps.identity import add_user

    engine, app, _ = access
    api = app.server.test_client()
    adm, gz = token_for(engine, "gd-admin"), token_for(engine, "gz-operator")
    add_user(engine, "gz-admin", "gz-admin-password", home="440100", roles=["admin"])
    gza = token_for(engine, "gz-admin")
    assert {u["username"] for u in api.get("/api/v1/users", headers=adm).get_json()["items"]} >= {
        "gd-admin", "gz-operator", "tianhe-operator", "gz-admin"}
    assert "gd-admin" not in {u["username"] for u in api.get("/api/v1/users", headers=gza).get_json()["items"]}
    assert api.get("/api/v1/users", headers=gz).status_code == 403
    new = {"username": "th-viewer", "password": "th-viewer-password", "home": "440106", "roles": ["viewer"]}
    r = api.post("/api/v1/users", headers=gza, json=new)
    assert r.status_code == 201 and "password_hash" not in r.get_json()
    assert api.post("/api/v1/users", headers=gza, json={**new, "username": "sz", "home": "440304"}).status_code == 403
    assert api.post("/api/v1/users", headers=gz, json={**new, "username": "x1"}).status_code == 403
    assert api.post("/api/v1/users", headers=gza, json=new).status_code == 409
    # A city admin disables a county user of the city; not one above it; not themselves.
    th = token_for(engine, "tianhe-operator")
    assert api.post("/api/v1/users/tianhe-operator/disable", headers=gza).status_code == 200
    assert api.get("/api/v1/me", headers=th).status_code == 401
    assert api.post("/api/v1/users/gd-admin/disable", headers=gza).status_code == 404
    assert api.post("/api/v1/users/gz-admin/disable", headers=gza).status_code == 422
    assert api.post("/api/v1/users/tianhe-operator/enable", headers=gza).status_code == 200
    # Every user creates and revokes their own tokens (here with the web session).
    web = login(app, "gz-operator")
    r = web.post("/api/v1/tokens", json={"name": "城市平台", "days": 30})
    assert r.status_code == 201
    t = r.get_json()
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {t['token']}"}).get_json()["home"] == "440100"
    assert web.delete(f"/api/v1/tokens/{t['id']}").status_code == 200
    assert api.get("/api/v1/me", headers={"Authorization": f"Bearer {t['token']}"}).status_code == 401
    gz_token_id = next(x["id"] for x in api.get("/api/v1/tokens", headers=gz).get_json()["items"])
    # issue 13 item 16: re-enabling tianhe-operator did not revive the token made before the disable
    assert api.get("/api/v1/me", headers=th).status_code == 401
    th = token_for(engine, "tianhe-operator")
    assert api.delete(f"/api/v1/tokens/{gz_token_id}", headers=th).status_code == 404  # not theirs
    assert api.get("/api/v1/me", headers=gz).status_code == 200
    actions = {(e["actor"], e["action"]) for e in api.get("/api/v1/audit?per_page=500", headers=adm).get_json()["items"]}
    assert {("gz-admin", "user_add"), ("gz-admin", "user_disable"), ("gz-operator", "token_create"),
            ("gz-operator", "token_revoke")} <= actions
