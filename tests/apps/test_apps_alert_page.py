"""The alert page (/alert/<id>) and the incident page against the real database, under the
row-level security of the signed-in users: what it shows (timeline of transitions and
deliveries, readings with thresholds, cameras nearby with snapshot URIs, corroborating sensors,
the incident) and the closed loop through its forms — Guangzhou takes over an alert escalated
from Tianhe, dispatches it with a unit and a due time, Tianhe resolves it, Guangzhou verifies and
closes it; refusals and bad input are said in the page's language and lose nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

PASSWORD = "alert-page-pass-2026"
NOW = datetime.now(UTC).replace(microsecond=0)
TIANHE = (113.3612, 23.1247)


def _ids(component) -> set[str]:
    """Every string id in a Dash component tree."""
    out = set()
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if c is None or isinstance(c, (str, int, float)):
            continue
        cid = getattr(c, "id", None)
        if isinstance(cid, str):
            out.add(cid)
        stack.append(getattr(c, "children", None))
    return out


def _find(component, cid: str):
    stack = [component]
    while stack:
        c = stack.pop()
        if isinstance(c, (list, tuple)):
            stack.extend(c)
            continue
        if c is None or isinstance(c, (str, int, float)):
            continue
        if getattr(c, "id", None) == cid:
            return c
        stack.append(getattr(c, "children", None))
    return None


def _text(component) -> str:
    if component is None:
        return ""
    if isinstance(component, (str, int, float)):
        return str(component)
    if isinstance(component, (list, tuple)):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def seed(engine) -> None:
    lon, lat = TIANHE
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:d AS date) - 1, CAST(:d AS date) + 1)"),
                     {"d": NOW.date()})

        def alert(aid, subject, level, minutes_ago, dx=0.0, title="道路积水内涝预警", status="open"):
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
                "province, geom, first_seen, last_seen, status) VALUES (:id, :id, 'rule:water-level', :lv, 'flood', "
                ":title, CAST(:detail AS jsonb), :subj, '440106', '440100', '440000', "
                "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :fs, :ls, :st)"),
                {"id": aid, "lv": level, "title": title, "subj": subject, "lon": lon + dx, "lat": lat,
                 "fs": NOW - timedelta(minutes=minutes_ago), "ls": NOW - timedelta(minutes=1), "st": status,
                 "detail": json.dumps({"metric": "ponding_depth", "title_en": "Road waterlogging warning"})})

        alert("AP-1", "sensor:wl-1", "red", 40)
        alert("AP-NEAR", "sensor:wl-2", "orange", 30, dx=0.01)  # about 1 km east: corroborates
        alert("AP-FAR", "sensor:wl-3", "orange", 30, dx=0.2)  # 20 km: does not
        conn.execute(sa.text("UPDATE alert_handling SET visible_at = '440100', escalated_at = :t, "
                             "escalation_reason = 'red 级预警立即上报' WHERE alert_id = 'AP-1'"), {"t": NOW})
        for i in range(12):
            conn.execute(sa.text(
                "INSERT INTO readings (ts, event_id, sensor_id, metric, value, county, city, province, geom, "
                "src_topic, src_partition, src_offset, ingested_at) VALUES (:ts, :eid, 'wl-1', 'ponding_depth', :v, "
                "'440106', '440100', '440000', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'r', 0, :i, :ts)"),
                {"ts": NOW - timedelta(minutes=60 - 5 * i), "eid": f"wl-1-{i}", "v": 10.0 + 4 * i, "lon": lon,
                 "lat": lat, "i": i})
        conn.execute(sa.text(
            "INSERT INTO cameras (camera_id, geom, county, city, province, first_seen, last_seen) VALUES "
            "('cam-th-1', ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), '440106', '440100', '440000', :t, :t)"),
            {"lon": lon + 0.002, "lat": lat, "t": NOW})
        conn.execute(sa.text(
            "INSERT INTO video_events (event_id, camera_id, type, theme, confidence, ts, snapshot_uri, county, city, "
            "province, geom, src_topic, src_partition, src_offset, ingested_at) VALUES ('ve-1', 'cam-th-1', "
            "'road_ponding', 'flood', 0.91, :t, 'sim://storm/cam-th-1/1.jpg', '440106', '440100', '440000', "
            "ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), 'v', 0, 1, :t)"), {"t": NOW - timedelta(minutes=10),
                                                                            "lon": lon + 0.002, "lat": lat})
        sub = conn.execute(sa.text("INSERT INTO subscriptions (name, owner, adcode, channels) VALUES "
                                   "('广州值班台', 'gz-operator', '440100', ARRAY['inbox']) RETURNING id")).scalar()
        conn.execute(sa.text(
            "INSERT INTO notification_deliveries (key, subscription_id, channel, alert_ids, payload, status, attempts, "
            "created_at, sent_at) VALUES ('d-1', :s, 'inbox', ARRAY['AP-1'], '{}'::jsonb, 'sent', 1, :t, :t)"),
            {"s": sub, "t": NOW - timedelta(minutes=39)})


@pytest.fixture
def users(engine, db_url):
    from apps import AppConfig, create_app
    from apps.identity import create_demo_users, get_user, scope_of
    from apps.scope import install

    create_app(AppConfig(database_url=db_url, kafka_bootstrap="127.0.0.1:9"))  # the pages register with it
    install(engine)
    seed(engine)
    create_demo_users(engine, password=PASSWORD)
    return {u: scope_of(get_user(engine, u)) for u in ("tianhe-operator", "gz-operator", "gd-admin")}


def test_alert_detail_shows_what_raised_it_and_everything_done(engine, users):
    from apps.alert_detail import alert_detail
    from apps.errors import AccessError
    from apps.scope import scoped

    with scoped(users["gz-operator"]):
        a = alert_detail(engine, users["gz-operator"], "AP-1")
    assert [e["action"] if e["kind"] == "history" else e["kind"] for e in a["timeline"]] == ["delivery"]
    assert a["timeline"][0]["recipient"] == "gz-operator" and a["timeline"][0]["delivery_status"] == "sent"
    assert a["sensor_id"] == "wl-1" and len(a["readings"]) == 12 and a["metric"] == "ponding_depth"
    assert a["thresholds"] == {"blue": 15, "yellow": 27, "orange": 40, "red": 50}
    assert [c["camera_id"] for c in a["cameras"]] == ["cam-th-1"] and 150 < a["cameras"][0]["distance_m"] < 300
    assert a["cameras"][0]["events"][0]["snapshot_uri"] == "sim://storm/cam-th-1/1.jpg"
    assert [o["id"] for o in a["corroborating"]] == ["AP-NEAR"]
    assert a["incident"]["alerts"] == 1
    with scoped(users["tianhe-operator"]):  # Tianhe sees its own alert too
        assert alert_detail(engine, users["tianhe-operator"], "AP-1")["id"] == "AP-1"
    from apps.identity import get_user, scope_of

    other = scope_of(get_user(engine, "gd-admin"))
    with scoped(other):
        assert alert_detail(engine, other, "AP-1")["id"] == "AP-1"
    with scoped(users["gz-operator"]), pytest.raises(AccessError) as e:
        alert_detail(engine, users["gz-operator"], "NO-SUCH")
    assert e.value.status == 404


def test_closed_loop_through_the_page_forms(engine, users):
    """Take over → dispatch with unit and due time → the county resolves → the city verifies and
    closes; the page after each action shows the new state and empty forms."""
    from apps.alert_detail import alert_detail
    from apps.errors import AppsError
    from apps.pages import alert as page
    from apps.scope import scoped
    from tongguan import TongguanError

    gz, th = users["gz-operator"], users["tianhe-operator"]
    with scoped(gz):
        body = page.body(engine, gz, "AP-1", "zh")
        assert {"alert-facts", "alert-timeline", "alert-readings", "alert-cameras", "alert-corroborating"} <= _ids(body)
        assert {"alert-unit", "alert-due", "alert-note"} <= _ids(page.forms("open", "zh"))
        quick, dispatch, notes, dispatch_style, _ = page.form_state("open", "zh")
        assert [b.id["action"] for b in quick] == ["take_over", "ack"] and dispatch and dispatch_style == {}
        _, dispatch, notes, dispatch_style, _ = page.form_state("resolved", "zh")
        assert not dispatch and dispatch_style == {"display": "none"}
        assert [b.id["action"] for b in notes] == ["close", "false_alarm", "reopen"]
        assert "sim://storm/cam-th-1/1.jpg" in _text(_find(body, "alert-cameras"))
        assert page.not_offered(engine, gz, alert_detail(engine, gz, "AP-1")) == ()  # the city may take it over
        assert page.apply(engine, alert_id="AP-1", action="take_over", lang="zh", note=None, unit=None,
                          due=None) == "open"
        # Guangzhou handles it now: no take-over button offered to it any more
        assert page.not_offered(engine, gz, alert_detail(engine, gz, "AP-1")) == ("take_over",)
        with pytest.raises(AppsError, match="处置单位"):
            page.apply(engine, alert_id="AP-1", action="dispatch", lang="zh", note="", unit=" ", due=None)
        with pytest.raises(AppsError, match="年-月-日"):
            page.apply(engine, alert_id="AP-1", action="dispatch", lang="zh", note="", unit="天河区排水所",
                       due="明天下午")
        due = (NOW + timedelta(hours=3)).astimezone(page.CHINA).strftime(page.DUE_FORMAT)
        assert page.apply(engine, alert_id="AP-1", action="dispatch", lang="zh", note="请尽快到场",
                          unit="天河区排水所", due=due) == "dispatched"
        after = page.body(engine, gz, "AP-1", "zh")
        facts = _text(_find(after, "alert-facts"))
        assert "天河区排水所" in facts and "广州市" in facts  # the unit, and the city still handles it
    with scoped(th):
        with pytest.raises(TongguanError):  # only the city, which dispatched it, verifies and closes it
            page.apply(engine, alert_id="AP-1", action="close", lang="zh", note=None, unit=None, due=None)
        with pytest.raises(TongguanError, match="note"):
            page.apply(engine, alert_id="AP-1", action="resolve", lang="zh", note="  ", unit=None, due=None)
        assert page.apply(engine, alert_id="AP-1", action="resolve", lang="zh", note="泵车排水，水位回落",
                          unit=None, due=None) == "resolved"
    with scoped(gz):
        assert page.apply(engine, alert_id="AP-1", action="close", lang="zh", note="现场核查无积水", unit=None,
                          due=None) == "closed"
        final = page.body(engine, gz, "AP-1", "en")
    timeline = _text(_find(final, "alert-timeline"))
    for word in ("Taken over", "Dispatched", "Resolved", "Closed", "gz-operator", "tianhe-operator",
                 "天河区排水所", "泵车排水", "taken over by Guangzhou"):
        assert word in timeline
    # the lifecycle's own notes in the page's language, regions by name: no "接管 / taken over by 440100"
    assert "接管" not in timeline and "440100" not in timeline and "dispatched to 天河区排水所" in timeline
    with scoped(gz):
        zh = _text(_find(page.body(engine, gz, "AP-1", "zh"), "alert-timeline"))
    assert "广州市 接管" in zh and "taken over" not in zh and "派往 天河区排水所 (天河区)" in zh
    assert _find(final, "alert-title").children == "Road waterlogging warning"  # English mode: title_en
    with engine.connect() as conn:
        unit = conn.execute(sa.text("SELECT assigned_unit FROM alert_handling WHERE alert_id = 'AP-1'")).scalar()
    assert unit == "天河区排水所"  # never the note
    from apps.screenshot import pick_alert

    # `tongguan screenshot --alert` picks the alert that shows the closed loop, inside the region
    assert pick_alert(engine, "440100") == "AP-1" and pick_alert(engine, "440300") is None


def test_incident_page_lists_its_alerts(engine, users):
    from analytics.alerting.incidents import incident_of
    from apps.pages import incident as page
    from apps.scope import scoped

    with engine.begin() as conn:  # the sensor's condition came back after it was resolved
        conn.execute(sa.text("UPDATE alerts SET status = 'resolved' WHERE id = 'AP-1'"))
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
            "province, first_seen, last_seen, status) SELECT 'AP-1B', 'AP-1B', source, 'orange', theme, title, "
            "detail, subject, adcode, city, province, now(), now(), 'open' FROM alerts WHERE id = 'AP-1'"))
    inc = incident_of(engine, "AP-1")
    assert inc == incident_of(engine, "AP-1B")
    with scoped(users["gz-operator"]):
        body = page.body(engine, inc, "zh")
    assert {"incident-alert-AP-1", "incident-alert-AP-1B"} <= _ids(body)
    assert "2 条预警" in _text(_find(body, "incident-summary"))


def test_refusals_are_said_in_the_users_language_without_cli_flags(engine, users):
    """A county closing what is not resolved, resolving without a note, a city taking over what
    it already handles, a subscription with half its quiet hours: Chinese on a zh page, English on
    an en page, never a command-line flag; the API and the CLI keep their English reason."""
    import re

    from analytics.alerting.subscriptions import add_subscription
    from apps.i18n import user_message
    from apps.pages import alert as page
    from apps.scope import scoped
    from tongguan import TongguanError

    def refusal(scope, **kw):
        with scoped(scope), pytest.raises(TongguanError) as info:
            page.apply(engine, alert_id="AP-1", lang="zh", unit=None, due=None, **kw)
        return info.value

    th, gz = users["tianhe-operator"], users["gz-operator"]
    cases = [refusal(th, action="close", note=None), refusal(th, action="resolve", note=" "),
             refusal(th, action="reopen", note=None)]
    with scoped(gz):
        page.apply(engine, alert_id="AP-1", action="take_over", lang="zh", note=None, unit=None, due=None)
    cases.append(refusal(gz, action="take_over", note=None))
    with pytest.raises(TongguanError) as quiet:
        add_subscription(engine, name="夜间", owner="gz-operator", adcode="440100", channels=["inbox"],
                            quiet_start="22:00", quiet_end=None)
    cases.append(quiet.value)
    import dash

    with dash.get_app().server.app_context():  # as in a request: regions are named from the app's database
        zh = [user_message(exc, "zh") for exc in cases]
        en = [user_message(exc, "en") for exc in cases]
    for text in zh:
        assert re.search(r"[\u4e00-\u9fff]{4}", text), text  # said in Chinese
        assert not re.search(r"[A-Za-z]{3}", text), text  # not in English, no --flags or `tongguan ...`
    assert "尚未处置完成" in zh[0] and "待处置" in zh[0] and "处置说明" in zh[1] and "仍为「待处置」" in zh[2]
    assert "广州市" in zh[3]  # the region named, not its code
    for text in en:
        assert "--" not in text and "tongguan" not in text and not re.search(r"[\u4e00-\u9fff]", text), text
    assert "--note" in str(cases[1]) and "--quiet" in str(cases[4])  # the CLI's own words stay the CLI's


@pytest.mark.parametrize(("lang", "name"), [("zh", "广州市"), ("en", "Guangzhou")])
def test_the_escalation_reason_names_regions_not_adcodes(engine, users, lang, name):
    """The facts said '上报原因 440100 有 4 个区县同时发生…' (seen on the demo) while the timeline
    beside it said 广州市."""
    from apps import queries
    from apps.pages.alert import _facts

    reason = "440100 有 4 个区县同时发生防汛排涝预警 / 4 counties of 440100 alerting for flood and waterlogging at once"
    a = {"adcode": "440106", "status": "open", "handling_region": "440100", "visible_at": "440100",
         "first_seen": NOW, "last_seen": NOW, "escalation_reason": reason}
    facts = json.dumps(_facts(a, queries.region_tree(engine), lang).to_plotly_json(), default=str, ensure_ascii=False)
    assert name in facts and "440100" not in facts
