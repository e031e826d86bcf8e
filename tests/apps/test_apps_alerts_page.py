"""The alerts page's functions (apps.alerts_view) against the real database, under the row-level
security of a signed-in Tianhe operator: region-subtree, theme, level and status filters; bulk
acknowledge where one refused alert is reported and the others are still handled. Plus one short
headless-Chromium run over /alerts and /subscriptions."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

PASSWORD = "alerts-page-pass-2026"
SCRIPT = "<b id='inj'>x</b>"

# id -> (county, city, level, theme, status)
ALERTS = {
    "P-TH-RED": ("440106", "440100", "red", "flood", "open"),
    "P-TH-ORANGE": ("440106", "440100", "orange", "air", "open"),
    "P-TH-ACKED": ("440106", "440100", "yellow", "flood", "acknowledged"),
    "P-TH-CLOSED": ("440106", "440100", "blue", "flood", "closed"),
    "P-YX-RED": ("440104", "440100", "red", "flood", "open"),
    "P-FT-RED": ("440304", "440300", "red", "flood", "open"),
}


def seed_alerts(engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for i, (aid, (county, city, level, theme, status)) in enumerate(ALERTS.items()):
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
                "province, geom, first_seen, last_seen, status) VALUES (:id, :id, 'rule:test', :level, :theme, "
                ":title, '{}'::jsonb, 'sensor:s1', :county, :city, '440000', "
                "ST_SetSRID(ST_MakePoint(113.33, 23.13), 4326), :ts, :ts, :status)"),
                {"id": aid, "level": level, "theme": theme, "title": f"测试 {aid} {SCRIPT}", "county": county,
                 "city": city, "ts": now - timedelta(minutes=i), "status": status})


@pytest.fixture
def users(engine):
    """Alerts in Tianhe, Yuexiu and Futian, the demo users, and the per-request scoping installed."""
    from apps.identity import create_demo_users, get_user, scope_of
    from apps.scope import install

    install(engine)
    seed_alerts(engine)
    create_demo_users(engine, password=PASSWORD)
    return {u: scope_of(get_user(engine, u)) for u in ("tianhe-operator", "gz-operator", "gd-admin")}


def test_region_tree_picker_is_the_users_subtree(engine, users):
    from apps.alerts_view import region_options

    gz = region_options(engine, "440100")
    codes = [o["value"] for o in gz]
    assert codes[0] == "440100" and "440106" in codes and "440104" in codes
    assert "440304" not in codes and "440000" not in codes
    tianhe = next(o for o in gz if o["value"] == "440106")
    assert tianhe["label"].startswith("\u3000") and tianhe["label"].strip("\u3000") == "天河区"
    assert [o["value"] for o in region_options(engine, "440106", "en")] == ["440106"]


def test_filters_by_region_theme_level_status(engine, users):
    from apps.alerts_view import filter_alerts, table_rows
    from apps.errors import AppsError
    from apps.scope import scoped

    with scoped(users["gz-operator"]):
        ids = lambda df: set(df["id"])
        # default: open statuses of the whole city (Futian is another city)
        assert ids(filter_alerts(engine, home="440100", statuses=["open", "acknowledged", "dispatched"])) == {
            "P-TH-RED", "P-TH-ORANGE", "P-TH-ACKED", "P-YX-RED"}
        assert ids(filter_alerts(engine, home="440100", region="440106")) == {
            "P-TH-RED", "P-TH-ORANGE", "P-TH-ACKED", "P-TH-CLOSED"}
        assert ids(filter_alerts(engine, home="440100", theme="air")) == {"P-TH-ORANGE"}
        assert ids(filter_alerts(engine, home="440100", levels=["red"])) == {"P-TH-RED", "P-YX-RED"}
        assert ids(filter_alerts(engine, home="440100", region="440106", statuses=["closed"])) == {"P-TH-CLOSED"}
        with pytest.raises(AppsError, match="outside your region"):
            filter_alerts(engine, home="440100", region="440304")
    with scoped(users["tianhe-operator"]):
        # Even asked for the city's subtree, the database returns only Tianhe's rows.
        assert ids(filter_alerts(engine, home="440100", levels=["red"])) == {"P-TH-RED"}
        rows = table_rows(filter_alerts(engine, home="440106", levels=["red"]), "en", engine)
    assert rows[0]["title"].endswith(SCRIPT) and rows[0]["level_label"] == "Red"  # text, as is
    assert rows[0]["owner"] == rows[0]["region"] != "440106"  # the handling region by name


def test_bulk_acknowledge_reports_the_refused_and_handles_the_rest(engine, users):
    from apps import audit
    from apps.alerts_view import bulk_action
    from apps.scope import scoped

    with scoped(users["tianhe-operator"]):
        out = bulk_action(engine, alert_ids=["P-TH-RED", "P-TH-ACKED", "P-TH-ORANGE", "P-YX-RED"],
                          action="ack", actor="web:tianhe-operator", lang="en")
    by_id = {o.alert_id: o for o in out}
    assert by_id["P-TH-RED"].ok and by_id["P-TH-RED"].message == "acknowledged"
    assert by_id["P-TH-ORANGE"].ok
    assert not by_id["P-TH-ACKED"].ok and "already acknowledged" in by_id["P-TH-ACKED"].message
    assert not by_id["P-YX-RED"].ok and "not found" in by_id["P-YX-RED"].message  # not in Tianhe
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("SELECT id, status FROM alerts")).all())
        actors = {r.actor for r in conn.execute(sa.text(
            "SELECT actor FROM alert_history WHERE alert_id = 'P-TH-RED'"))}
    assert status["P-TH-RED"] == status["P-TH-ORANGE"] == "acknowledged"
    assert status["P-YX-RED"] == "open"
    assert "tianhe-operator" in actors
    rows, _ = audit.query(engine, actor="tianhe-operator", action="alert_acknowledge")
    assert {(r["target"], r["outcome"]) for r in rows} >= {("P-TH-RED", "ok"), ("P-TH-ORANGE", "ok")}
    # A viewer-only province admin is refused every one, with the reason, and nothing changes.
    with scoped(users["gd-admin"]):
        out = bulk_action(engine, alert_ids=["P-FT-RED"], action="ack", actor="web:gd-admin")
    assert not out[0].ok and "值班员角色" in out[0].message  # said in Chinese (the default)


def test_bulk_dispatch_keeps_the_note_a_note_and_the_hint_says_where_it_goes(engine, users):
    """The bulk note box said "派单时填承办单位" (type the unit for a dispatch) while a bulk dispatch
    stores what is typed as the note and sends to the default unit: the hint now says so."""
    from apps.alerts_view import bulk_action
    from apps.handling import DEFAULT_UNIT
    from apps.i18n import t
    from apps.scope import scoped

    with scoped(users["tianhe-operator"]):
        out = bulk_action(engine, alert_ids=["P-TH-ORANGE"], action="dispatch", actor="web:tianhe-operator",
                          note="天河区水务局")
    assert out[0].ok, out[0].message
    with engine.connect() as conn:
        unit = conn.execute(sa.text("SELECT assigned_unit FROM alert_handling WHERE alert_id = 'P-TH-ORANGE'")).scalar()
        note = conn.execute(sa.text("SELECT note FROM alert_history WHERE alert_id = 'P-TH-ORANGE' "
                                    "AND action = 'dispatched'")).scalar()
    assert unit == DEFAULT_UNIT and note.endswith("| 天河区水务局")
    for lang in ("zh", "en"):
        hint = t("alerts.note_hint", lang, unit=DEFAULT_UNIT)
        assert unit in hint and "派单时填承办单位" not in hint and "dispatch: the unit" not in hint


# ----------------------------------------------------------------------------- in the browser
@pytest.fixture
def served(db_url, engine, users):
    from werkzeug.serving import make_server

    from apps import AppConfig, create_app
    from tongguan.services import free_port

    app = create_app(AppConfig(database_url=db_url, kafka_bootstrap="127.0.0.1:9"))
    app.server.config.update(TESTING=True, TONGGUAN_LOGIN_RATE="1000 per minute")
    srv = make_server("127.0.0.1", free_port(), app.server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}"
    finally:
        srv.shutdown()


def _wait(driver, cond, what: str, timeout: float = 20.0):
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            v = cond(driver)
            if v:
                return v
        except Exception as exc:  # noqa: BLE001 - not rendered yet
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} ({last}); url={driver.current_url}")


def test_alerts_and_subscriptions_pages_in_chromium(served, engine):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
              "--disable-background-networking", "--window-size=1600,1000"):
        opts.add_argument(f)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        d.get(served + "/login?next=/alerts")
        d.find_element("name", "username").send_keys("tianhe-operator")
        d.find_element("name", "password").send_keys(PASSWORD)
        d.find_element("id", "login-submit").click()
        _wait(d, lambda d: d.current_url.endswith("/alerts"), "the alerts page")
        rows = lambda d: d.find_elements("css selector", "#alerts-table tbody tr td.dash-select-cell")
        _wait(d, lambda d: len(rows(d)) == 3, "Tianhe's three unfinished alerts")
        assert not d.find_elements("id", "inj")  # titles stay text
        assert "P-YX-RED" not in d.page_source
        # filter: red only
        red = next(x for x in d.find_elements("css selector", "#alerts-levels label") if "红色" in x.text)
        red.find_element("tag name", "input").click()
        _wait(d, lambda d: len(rows(d)) == 1, "the red filter")
        red.find_element("tag name", "input").click()  # back to all levels
        _wait(d, lambda d: len(rows(d)) == 3, "all levels again")
        d.find_element("id", "alerts-select-all").click()
        _wait(d, lambda d: "已选 3" in d.find_element("id", "alerts-count").text, "all selected")
        d.find_element("css selector", ".bulk-btn.action-ack").click()
        summary = _wait(d, lambda d: d.find_element("id", "alerts-bulk-summary").text, "the bulk result")
        assert "成功 2" in summary and "未处理 1" in summary, summary
        refused = d.find_element("id", "alerts-refused").text
        assert "无需重复签收" in refused and "already" not in refused, refused  # said in the page's language
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT status FROM alerts WHERE id = 'P-TH-RED'")).scalar() == "acknowledged"
        d.find_element("id", "alerts-subs-link").click()
        _wait(d, lambda d: d.find_element("id", "subs-form"), "the subscriptions page")
        d.find_element("id", "subs-name").send_keys("天河积水")
        d.find_element("id", "subs-save").click()
        assert "已保存订阅" in _wait(d, lambda d: d.find_element("id", "subs-saved").text, "saved")
        _wait(d, lambda d: "天河积水" in d.find_element("id", "subs-table").text, "listed")
    finally:
        d.quit()
