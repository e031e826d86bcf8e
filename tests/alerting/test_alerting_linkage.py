"""Roll-up per region at every level, escalation up, take-over and dispatch down, silences and
inhibition, against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from analytics.alerting.config import AlertingConfig, InhibitRule
from analytics.alerting.lifecycle import (
    acknowledge,
    close,
    dispatch,
    history,
    load_alert,
    resolve,
    take_over,
)
from analytics.alerting.linkage import (
    add_silence,
    alerts_for_region,
    children_status,
    escalate_due,
    escalated_to,
    expire_silence,
    inhibitor_of,
    list_silences,
    overdue,
    refresh_sensors,
    region_status,
    silence_for,
)

pytestmark = pytest.mark.integration

CFG = AlertingConfig(unacknowledged={"orange": 900.0}, cluster_min_counties=3, cluster_min_level="yellow",
                     inhibit=(InhibitRule("outage", ("rule:power-outage*",), "blue", ("rule:offline*",)),))


def test_rollup_follows_every_change_at_every_level(engine, make_alert, t0):
    a1 = make_alert(level="orange", theme="flood", adcode="440106")
    make_alert(level="red", theme="flood", adcode="440104")
    make_alert(level="blue", theme="traffic", adcode="440305", city="440300")
    prov = region_status(engine, "440000")
    assert prov["open_total"] == 3 and prov["worst_level"] == "red"
    assert prov["by_level"] == {"blue": 1, "yellow": 0, "orange": 1, "red": 1}
    assert prov["by_theme"] == {"flood": 2, "traffic": 1}
    gz = region_status(engine, "440100")
    assert gz["open_total"] == 2 and gz["unacknowledged"] == 2 and gz["worst_level"] == "red"
    cities = children_status(engine, "440000")
    assert [c["adcode"] for c in cities] == ["440100", "440300"]  # worst first
    assert [c["adcode"] for c in children_status(engine, "440100")] == ["440104", "440106"]
    acknowledge(engine, a1, actor="x", now=t0)
    assert region_status(engine, "440100")["unacknowledged"] == 1
    assert region_status(engine, "440106")["open_total"] == 1
    resolve(engine, a1, actor="x", note="done", now=t0)
    th = region_status(engine, "440106")
    assert th["open_total"] == 0 and th["worst_level"] is None
    assert region_status(engine, "440000")["open_total"] == 2
    # A level change by the detector moves the count between levels.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alerts SET level = 'yellow' WHERE level = 'red'"))
    assert region_status(engine, "440100")["worst_level"] == "yellow"
    assert region_status(engine, "440000")["by_level"]["red"] == 0


def test_rollup_is_exact_after_many_changes(engine, make_alert, t0):
    ids = [make_alert(level=lv, adcode=ad) for lv in ("blue", "orange", "red") for ad in ("440106", "440104")]
    for aid in ids[::2]:
        close(engine, aid, actor="x", false_alarm=True, now=t0)
    with engine.connect() as conn:
        truth = dict(conn.execute(sa.text(
            "SELECT city, count(*) FROM alerts WHERE status IN ('open','acknowledged','dispatched') GROUP BY city")).all())
    assert region_status(engine, "440100")["open_total"] == truth["440100"] == 3


def test_sensors_offline_counts(engine, t0):
    with engine.begin() as conn:
        for i, (county, age_min) in enumerate([("440106", 1), ("440106", 60), ("440104", 2), ("440104", 3)]):
            conn.execute(sa.text(
                "INSERT INTO sensors (sensor_id, metric, theme, geom, county, city, province, first_seen, last_seen) "
                "VALUES (:id, 'ponding_depth', 'flood', ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), :c, '440100', "
                "'440000', :t, :t)"), {"id": f"s{i}", "c": county, "t": t0 - timedelta(minutes=age_min)})
    refresh_sensors(engine, now=t0, config=CFG)
    assert (region_status(engine, "440106")["sensors_offline"], region_status(engine, "440106")["sensors_total"]) == (1, 2)
    assert (region_status(engine, "440100")["sensors_offline"], region_status(engine, "440100")["sensors_total"]) == (1, 4)
    assert region_status(engine, "440000")["sensors_total"] == 4
    # The stream's clock: a replay running hours behind the wall clock is not "all offline".
    refresh_sensors(engine, now=t0 + timedelta(hours=5), config=CFG)
    assert region_status(engine, "440100")["sensors_offline"] == 1


def test_red_escalates_at_once_orange_after_unacknowledged_time(engine, make_alert, t0):
    red = make_alert(level="red")
    orange = make_alert(level="orange", first_seen=t0)
    acked = make_alert(level="orange", first_seen=t0)
    acknowledge(engine, acked, actor="x", now=t0 + timedelta(minutes=1))
    assert escalate_due(engine, now=t0 + timedelta(minutes=1), config=CFG) == [(red, "440100")]
    assert escalate_due(engine, now=t0 + timedelta(minutes=14), config=CFG) == []
    assert escalate_due(engine, now=t0 + timedelta(minutes=16), config=CFG) == [(orange, "440100")]
    # Still nobody acknowledged it: another interval at the city takes it to the province.
    assert escalate_due(engine, now=t0 + timedelta(minutes=32), config=CFG) == [(orange, "440000")]
    assert escalate_due(engine, now=t0 + timedelta(minutes=60), config=CFG) == []  # top reached
    h = [x for x in history(engine, orange) if x["action"] == "escalated_up"]
    assert len(h) == 2 and "not acknowledged within 15 min" in h[0]["note"]
    assert "440000" in h[1]["note"]
    with engine.connect() as conn:
        assert load_alert(conn, acked)["visible_at"] == "440106"  # acknowledged: stays with the county
    # The city sees what was escalated to it; the province takes one over.
    assert {a["id"] for a in alerts_for_region(engine, "440100")} >= {red}
    a = take_over(engine, red, actor="province.duty", region="440000", now=t0 + timedelta(minutes=61))
    assert a["owner_region"] == "440000" and a["visible_at"] == "440000"


def _sensor_at(engine, ts, sensor_id="s-clock"):
    """A sensor whose newest reading is ``ts``: where the stream (a replay) has reached."""
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO sensors (sensor_id, metric, theme, geom, county, city, province, first_seen, last_seen) "
            "VALUES (:id, 'ponding_depth', 'flood', ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), '440106', "
            "'440100', '440000', :t, :t) ON CONFLICT (sensor_id) DO UPDATE SET last_seen = EXCLUDED.last_seen"),
            {"id": sensor_id, "t": ts})


def test_escalation_never_fires_on_finished_alerts_nor_ahead_of_a_replay(engine, make_alert, t0):
    """Issue 14 item 8: a restarted platform replays history hours behind the wall clock. An
    orange alert of the replay is not escalated for being "unacknowledged" by the wall clock; once
    the replay resolves it, no rule escalates it, and resolved or closed alerts never do."""
    wall = t0 + timedelta(hours=6)  # the replay runs six hours behind
    for status in ("resolved", "closed"):
        make_alert(level="orange", first_seen=t0 - timedelta(hours=1), status=status)
        make_alert(level="red", first_seen=t0 - timedelta(hours=1), status=status)
    replayed = make_alert(level="orange", first_seen=t0)
    _sensor_at(engine, t0 + timedelta(minutes=5))  # the replay is 5 min past the alert's start
    assert escalate_due(engine, now=wall, config=CFG) == []
    resolve(engine, replayed, actor="system:detect", note="水位回落", now=t0 + timedelta(minutes=10))
    _sensor_at(engine, t0 + timedelta(minutes=40))  # the replay is well past 15 minutes now
    assert escalate_due(engine, now=wall, config=CFG) == []
    assert escalate_due(engine, now=wall + timedelta(hours=1), config=CFG) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM alert_history WHERE action = 'escalated_up'")).scalar() == 0
    # Live again: an alert still open 15 stream minutes after it opened does go up, stamped at
    # the stream's time (so its timeline stays in order).
    late = make_alert(level="orange", first_seen=t0 + timedelta(minutes=30))
    _sensor_at(engine, t0 + timedelta(minutes=46))
    assert escalate_due(engine, now=wall, config=CFG) == [(late, "440100")]
    assert [h["ts"] for h in history(engine, late) if h["action"] == "escalated_up"] == [t0 + timedelta(minutes=46)]


def test_several_counties_same_theme_escalate_to_city(engine, make_alert, t0):
    ids = [make_alert(level="yellow", theme="flood", adcode=ad) for ad in ("440106", "440104")]
    make_alert(level="yellow", theme="traffic", adcode="440111")
    make_alert(level="blue", theme="flood", adcode="440111")  # below the cluster's minimum level
    assert escalate_due(engine, now=t0, config=CFG) == []
    ids.append(make_alert(level="orange", theme="flood", adcode="440113"))
    got = escalate_due(engine, now=t0, config=CFG)
    assert sorted(got) == sorted((i, "440100") for i in ids)
    note = next(h for h in history(engine, ids[0]) if h["action"] == "escalated_up")["note"]
    assert "3 counties of 440100" in note and "flood and waterlogging" in note
    # the theme by its names, not its id, in each half (issue 14: "同时发生 flood 预警" on the zh page)
    zh = note.split(" / ", 1)[0]
    assert "防汛排涝" in zh and "flood" not in zh
    assert escalate_due(engine, now=t0, config=CFG) == []  # once


def test_dispatch_down_the_county_sees_it_as_theirs(engine, make_alert, t0):
    aid = make_alert(level="red")
    escalate_due(engine, now=t0, config=CFG)
    take_over(engine, aid, actor="city", region="440100", now=t0)
    assert aid not in {a["id"] for a in alerts_for_region(engine, "440104")}
    dispatch(engine, aid, actor="city", to_unit="天河区三防办", due_at=t0 + timedelta(hours=1), to_region="440106",
             now=t0)
    mine = {a["id"]: a for a in alerts_for_region(engine, "440106")}
    assert mine[aid]["assigned_unit"] == "天河区三防办" and mine[aid]["owner_region"] == "440100"
    dispatch(engine, aid, actor="county", to_unit="网格员", due_at=t0 + timedelta(hours=1),
             to_region="440106-1000-0001-0001", now=t0)
    assert aid in {a["id"] for a in alerts_for_region(engine, "440106")}


def test_silences_by_subtree_window_theme_metric(engine, make_alert, t0):
    sid = add_silence(engine, adcode="440100", starts_at=t0, ends_at=t0 + timedelta(hours=2), themes=["flood"],
                      metrics=["ponding_depth"], reason="泵站检修", created_by="ops")
    silences = list_silences(engine, now=t0)
    with engine.connect() as conn:
        a_in = load_alert(conn, make_alert(theme="flood", metric="ponding_depth"))
        a_metric = load_alert(conn, make_alert(theme="flood", metric="water_level"))
        a_theme = load_alert(conn, make_alert(theme="traffic"))
        a_other_city = load_alert(conn, make_alert(adcode="440305", city="440300"))
    assert silence_for(a_in, silences, t0 + timedelta(minutes=5))["id"] == sid
    assert silence_for(a_in, silences, t0 + timedelta(hours=3)) is None  # after the window
    assert silence_for(a_metric, silences, t0) is None
    assert silence_for(a_theme, silences, t0) is None
    assert silence_for(a_other_city, silences, t0) is None
    expire_silence(engine, sid, now=t0 + timedelta(minutes=10))
    assert list_silences(engine, now=t0 + timedelta(minutes=11)) == []


def test_umbrella_alert_inhibits_offline_alerts_in_its_county(engine, make_alert):
    off = make_alert(source="rule:offline", level="blue")
    off_elsewhere = make_alert(source="rule:offline", level="blue", adcode="440104")
    flood = make_alert(source="rule:ponding")
    with engine.connect() as conn:
        assert inhibitor_of(conn, load_alert(conn, off), config=CFG) is None
    outage = make_alert(source="rule:power-outage", level="orange", theme="lifeline")
    with engine.connect() as conn:
        assert inhibitor_of(conn, load_alert(conn, off), config=CFG)["id"] == outage
        assert inhibitor_of(conn, load_alert(conn, off_elsewhere), config=CFG) is None
        assert inhibitor_of(conn, load_alert(conn, flood), config=CFG) is None


def _truth(engine, region):
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT level, status FROM alerts WHERE status IN ('open','acknowledged','dispatched') "
            "AND (adcode = :r OR city = :r OR province = :r)"), {"r": region}).all()
    by = {lv: sum(1 for lv2, _ in rows if lv2 == lv) for lv in ("blue", "yellow", "orange", "red")}
    return len(rows), sum(1 for _, st in rows if st == "open"), by


def _status_row(engine, region):
    with engine.connect() as conn:
        r = conn.execute(sa.text("SELECT open_total, unacknowledged, n_blue, n_yellow, n_orange, n_red, worst_level "
                                 "FROM region_alert_status WHERE adcode = :r"), {"r": region}).one()
    return r[0], r[1], {"blue": r[2], "yellow": r[3], "orange": r[4], "red": r[5]}, r[6]


def test_status_rows_exact_under_concurrent_writers(engine, make_alert, t0):
    import threading

    counties = ["440103", "440104", "440105", "440106", "440111", "440112"]
    errors = []

    def writer(k):
        try:
            for i in range(8):
                aid = make_alert(level=("blue", "yellow", "orange", "red")[(k + i) % 4], adcode=counties[k])
                if i % 3 == 0:
                    acknowledge(engine, aid, actor=f"w{k}", now=t0)
                if i % 4 == 1:
                    close(engine, aid, actor=f"w{k}", false_alarm=True, now=t0)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(len(counties))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for region in ("440000", "440100", *counties):
        total, unack, by = _truth(engine, region)
        got = _status_row(engine, region)
        assert got[:3] == (total, unack, by), region
        worst = next((lv for lv in ("red", "orange", "yellow", "blue") if by[lv]), None)
        assert got[3] == worst


def test_rollup_follows_detector_style_upserts(engine, make_alert):
    aid = make_alert(level="yellow")
    upsert = sa.text(
        "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, province, first_seen, "
        "last_seen, status) VALUES (:id, :id, 'rule:ponding', :lv, 'flood', 't', 's', '440106', '440100', '440000', "
        "now(), now(), :st) ON CONFLICT (id) DO UPDATE SET level = EXCLUDED.level, count = alerts.count + 1, "
        "status = CASE WHEN EXCLUDED.status = 'resolved' THEN 'resolved' ELSE alerts.status END")
    with engine.begin() as conn:
        conn.execute(upsert, [{"id": aid, "lv": "orange", "st": "open"}, {"id": "new-1", "lv": "red", "st": "open"}])
    assert _status_row(engine, "440100")[2] == {"blue": 0, "yellow": 0, "orange": 1, "red": 1}
    with engine.begin() as conn:
        conn.execute(upsert, {"id": aid, "lv": "orange", "st": "resolved"})
    assert _status_row(engine, "440000")[:2] == (1, 1) and _status_row(engine, "440000")[3] == "red"


def test_escalated_to_the_city_and_overdue_dispatches(engine, make_alert, t0):
    """The city desk's two lists: escalations waiting for it, and dispatches past their due time."""
    red = make_alert(level="red")
    calm = make_alert(level="yellow", adcode="440104")
    escalate_due(engine, now=t0, config=CFG)
    assert [a["id"] for a in escalated_to(engine, "440100")] == [red]
    assert escalated_to(engine, "440106") == []  # Tianhe handles it already: nothing "waiting" there
    take_over(engine, red, actor="gz", region="440100", now=t0)
    assert escalated_to(engine, "440100") == []  # taken over: no longer waiting
    dispatch(engine, red, actor="gz", to_unit="天河区排水所", due_at=t0 + timedelta(hours=1), now=t0)
    dispatch(engine, calm, actor="yx", to_unit="越秀区城管", due_at=t0 + timedelta(hours=3), now=t0)
    assert overdue(engine, "440100", now=t0 + timedelta(minutes=59)) == []
    late = overdue(engine, "440100", now=t0 + timedelta(hours=1, minutes=30))
    assert [(a["id"], a["assigned_unit"], a["overdue_min"]) for a in late] == [(red, "天河区排水所", 30)]
    assert [a["id"] for a in overdue(engine, "440100", now=t0 + timedelta(hours=4))] == [red, calm]
    assert [a["id"] for a in overdue(engine, "440104", now=t0 + timedelta(hours=4))] == [calm]
    resolve(engine, red, actor="th", note="完成", now=t0 + timedelta(hours=4))
    assert [a["id"] for a in overdue(engine, "440100", now=t0 + timedelta(hours=5))] == [calm]
