"""Issue 13 items 3 and 6-17: what the security review got through, each tried again against the
running app (real PostgreSQL, the Flask test client of the Dash server, the demo users)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tests.access.conftest import DEMO_PASSWORD, csrf_of, login, token_for

pytestmark = pytest.mark.integration


def _login_post(client, username, password, **extra):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(page.get_data(as_text=True)), **extra})


# --------------------------------------------------------------------------- item 3
def test_item3_subscription_owner_must_exist_and_hold_the_region(access):
    engine, app, _ = access
    from apps.identity import add_user

    add_user(engine, "fj-viewer", DEMO_PASSWORD, home="350000", roles=("viewer",))
    api = app.server.test_client()
    h = token_for(engine, "gd-admin")
    base = {"name": "x", "adcode": "440106", "channels": ["inbox"]}
    r = api.post("/api/v1/subscriptions", json={**base, "owner": "fj-viewer"}, headers=h)
    assert r.status_code == 422 and "fj-viewer" in r.get_json()["error"]["message"]
    r = api.post("/api/v1/subscriptions", json={**base, "owner": "nobody-such"}, headers=h)
    assert r.status_code == 422
    r = api.post("/api/v1/subscriptions", json={**base, "owner": "tianhe-operator"}, headers=h)
    assert r.status_code == 201
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT array_agg(owner) FROM subscriptions")).scalar() == ["tianhe-operator"]


# --------------------------------------------------------------------------- item 6
def test_item6_logout_ends_the_session_for_a_saved_cookie(access):
    _, app, _ = access
    web = login(app, "tianhe-operator")
    assert web.get("/county/440106").status_code == 200
    saved = web.get_cookie("session").value
    page = web.get("/logout")
    assert web.post("/logout", data={"csrf_token": csrf_of(page.get_data(as_text=True))}).status_code == 302
    replay = app.server.test_client()
    replay.set_cookie("session", saved)
    r = replay.get("/county/440106")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert replay.get("/api/v1/me").status_code == 401


# --------------------------------------------------------------------------- item 7
def test_item7_serve_refuses_the_default_secret_unless_development_is_explicit(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")}
    env.update(TONGGUAN_DATABASE_URL="postgresql://x@127.0.0.1:9/x", TONGGUAN_KAFKA_BOOTSTRAP="127.0.0.1:9",
               TONGGUAN_HOME=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "tongguan.cli", "serve"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "TONGGUAN_SECRET_KEY" in r.stderr and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1  # one line


def test_item7_the_session_cookie_carries_a_random_nonce(access):
    _, app, _ = access
    a, b = login(app, "tianhe-operator"), login(app, "tianhe-operator")
    serializer = app.server.session_interface.get_signing_serializer(app.server)
    sa_, sb = (serializer.loads(c.get_cookie("session").value) for c in (a, b))
    assert sa_["nonce"] != sb["nonce"] and len(sa_["nonce"]) >= 16


# --------------------------------------------------------------------------- item 8
@pytest.mark.parametrize("nxt", ["%2F%09%2Fevil.example", "/\t/evil.example", "/%0A/x", "/\n/x", "//evil.example",
                                 "/\\evil.example", "https://evil.example/", "/ok/../../evil", "/%2F/evil.example"])
def test_item8_no_open_redirect_after_log_in(access, nxt):
    from urllib.parse import unquote, urlsplit

    _, app, _ = access
    client = app.server.test_client()
    r = _login_post(client, "tianhe-operator", DEMO_PASSWORD, next=unquote(nxt) if "%" in nxt else nxt)
    assert r.status_code == 302
    where = r.headers["Location"]
    parts = urlsplit(where)
    assert parts.netloc in ("", "localhost") and not any(ord(c) <= 0x20 for c in unquote(where))
    assert not unquote(parts.path).startswith("//") and "evil" not in parts.netloc
    r = client.get(f"/login?next={nxt}")
    assert r.status_code == 200


# --------------------------------------------------------------------------- item 9
def test_item9_body_size_is_limited_and_anonymous_api_bodies_are_not_read(access):
    engine, app, _ = access
    api = app.server.test_client()
    big = b'{"a": "' + b"x" * (app.server.config["MAX_CONTENT_LENGTH"] + 10) + b'"}'
    r = api.post("/api/v1/subscriptions", data=big, content_type="application/json")
    assert r.status_code == 401  # refused before the body is read
    r = api.post("/api/v1/subscriptions", data=big, content_type="application/json",
                 headers=token_for(engine, "tianhe-operator"))
    assert r.status_code == 413
    web = login(app, "tianhe-operator")
    r = web.post("/_dash-update-component", data=big, content_type="application/json")
    assert r.status_code == 413


# --------------------------------------------------------------------------- item 10
def test_item10_only_owners_and_admins_see_webhook_urls_and_addresses(access, loopback_webhooks_allowed):
    engine, app, _ = access
    from analytics.alerting.subscriptions import add_subscription

    add_subscription(engine, name="gz", owner="gz-operator", adcode="440106", channels=["webhook", "email"],
                     webhook_url="http://127.0.0.1:8099/hook?key=SECRETKEY", email="duty@gz.example")
    api = app.server.test_client()
    for user, sees in (("tianhe-operator", False), ("gz-operator", True), ("gd-admin", True)):
        items = api.get("/api/v1/subscriptions", headers=token_for(engine, user)).get_json()["items"]
        assert len(items) == 1
        text = json.dumps(items)
        assert ("SECRETKEY" in text) is sees and ("duty@gz.example" in text) is sees, user


# --------------------------------------------------------------------------- item 11
def test_item11_status_catalogue_and_quality_are_for_admins(access):
    _, app, _ = access
    op = login(app, "tianhe-operator")
    for path in ("/status", "/catalogue", "/quality/440106"):
        assert op.get(path).status_code == 403, path
    admin = login(app, "gd-admin")
    for path in ("/catalogue", "/quality/440106"):
        assert admin.get(path).status_code == 200, path


# --------------------------------------------------------------------------- item 12
def test_item12_failed_log_ins_lock_per_address_with_one_answer(access):
    engine, app, _ = access
    attacker = app.server.test_client()
    answers = set()
    for _ in range(8):
        r = _login_post(attacker, "gd-admin", "wrong-password", )
        answers.add((r.status_code, "用户名或密码错误" in r.get_data(as_text=True)))
    for _ in range(3):
        r = _login_post(attacker, "no-such-user", "wrong-password")
        answers.add((r.status_code, "用户名或密码错误" in r.get_data(as_text=True)))
    assert answers == {(401, True)}  # locked, unknown or wrong: the same answer
    # the real admin, from another address, still gets in
    other = app.server.test_client()
    page = other.get("/login", environ_base={"REMOTE_ADDR": "10.9.9.9"})
    r = other.post("/login", data={"username": "gd-admin", "password": DEMO_PASSWORD,
                                   "csrf_token": csrf_of(page.get_data(as_text=True))},
                   environ_base={"REMOTE_ADDR": "10.9.9.9"})
    assert r.status_code == 302
    # … while the attacker's address is held off even with the right password
    assert _login_post(attacker, "gd-admin", DEMO_PASSWORD).status_code == 401


# --------------------------------------------------------------------------- item 13
def test_item13_api_rate_limit_is_not_reset_by_padding_the_header(access):
    engine, app, _ = access
    app.server.config["TONGGUAN_API_RATE"] = "5 per minute"
    h = token_for(engine, "tianhe-operator")["Authorization"]
    api = app.server.test_client()
    codes = [api.get("/api/v1/me", headers={"Authorization": h + " " * i}).status_code for i in range(8)]
    assert codes[:5] == [200] * 5 and 429 in codes[5:]


# --------------------------------------------------------------------------- item 14
def test_item14_markup_in_a_sensor_id_is_not_a_live_link_in_a_figure_title():
    import pandas as pd

    from apps.maps import series_figure

    sid = '<a href="javascript:alert(1)">s1</a>'
    df = pd.DataFrame({"ts": pd.to_datetime(["2026-12-01T00:00:00Z"]), "value": [1.0]})
    fig = series_figure(df, title=f"{sid} · 水位")
    assert "<a" not in fig["layout"]["title"]["text"] and "&lt;a href" in fig["layout"]["title"]["text"]
    assert "<a" not in fig["data"][0]["name"]


# --------------------------------------------------------------------------- item 15
def test_item15_children_boundaries_are_scoped(access):
    _, app, _ = access
    op = login(app, "tianhe-operator")
    assert op.get("/geo/children/440106.geojson").status_code == 200
    for code in ("440300", "440000", "350000"):
        assert op.get(f"/geo/children/{code}.geojson").status_code in (403, 404), code
    assert app.server.test_client().get("/geo/children/440106.geojson").status_code in (302, 401)


# --------------------------------------------------------------------------- item 16
def test_item16_tokens_die_with_a_password_reset_and_stay_dead_after_re_enabling(access):
    engine, app, _ = access
    from apps.identity import reset_password, set_active

    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/me", headers=h).status_code == 200
    reset_password(engine, "tianhe-operator", DEMO_PASSWORD + "x")
    assert api.get("/api/v1/me", headers=h).status_code == 401
    h2 = token_for(engine, "tianhe-operator")
    assert api.get("/api/v1/me", headers=h2).status_code == 200
    set_active(engine, "tianhe-operator", False)
    set_active(engine, "tianhe-operator", True)
    assert api.get("/api/v1/me", headers=h2).status_code == 401


# --------------------------------------------------------------------------- item 17 and CSP
@pytest.mark.parametrize("path", ["/audit?action=\\", "/audit?action=%25_%5C", "/audit?page=99999999999999999999",
                                  "/audit?page=-5", "/_dash-component-suites/dash/../../../../etc/passwd",
                                  "/_dash-component-suites/dash/..%2F..%2Fsetup.cfg"])
def test_item17_odd_requests_get_answers_not_server_errors(access, path):
    _, app, _ = access
    admin = login(app, "gd-admin")
    r = admin.get(path)
    assert r.status_code < 500, (path, r.status_code)


def test_item17_deep_json_and_crlf_webhook_urls_are_422_not_500(access):
    engine, app, _ = access
    api = app.server.test_client()
    h = token_for(engine, "tianhe-operator")
    deep = "[" * 100000 + "]" * 100000
    r = api.post("/api/v1/subscriptions", data=deep, content_type="application/json", headers=h)
    assert r.status_code in (400, 413, 422)
    r = api.post("/api/v1/subscriptions", headers=h, json={"name": "x", "adcode": "440106", "channels": ["webhook"],
                                                          "webhook_url": "http://example.org/\r\nX-A: 1"})
    assert r.status_code == 422
    web = login(app, "tianhe-operator")
    r = web.post("/_dash-update-component", data=deep, content_type="application/json")
    assert r.status_code in (400, 413, 422)


def test_content_security_policy_on_pages(access):
    _, app, _ = access
    web = login(app, "tianhe-operator")
    for path in ("/login", "/county/440106"):
        csp = web.get(path).headers.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors" in csp and "object-src 'none'" in csp, path
        assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
