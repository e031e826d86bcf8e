"""Incidents: repeated alerts of one sensor, place and theme are one incident (issue 14), grouped
by the database for every writer, against the real database."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from analytics.alerting.incidents import incident, incident_of, incidents
from analytics.alerting.lifecycle import close, resolve

pytestmark = pytest.mark.integration


@pytest.fixture
def storm(engine, t0):
    """Alerts inserted with the subject already set, the way the detector writes them."""
    def make(minutes, *, level="red", sensor="s-baiyun-7", adcode="440111", theme="flood", status="open",
             rule="water-rise"):
        aid = f"storm-{rule}-{sensor}-{adcode}-{theme}-{minutes}"
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
                "province, first_seen, last_seen, status) VALUES (:id, :k, 'rule:water-rise', :lv, :th, "
                "'河道水位快速上涨', '{}'::jsonb, :subj, :ad, '440100', '440000', :fs, :fs, :st)"),
                {"id": aid, "k": f"rule:{rule}|sensor:{sensor}|{adcode}|{theme}", "src": f"rule:{rule}", "lv": level, "th": theme,
                 "subj": f"sensor:{sensor}", "ad": adcode, "fs": t0 + timedelta(minutes=minutes), "st": status})
        return aid
    return make


def test_five_returns_of_one_sensor_are_one_incident(engine, storm, t0):
    ids = []
    for m in (0, 20, 40, 60, 80):  # the condition returns four times, each after it was resolved
        if ids:
            resolve(engine, ids[-1], actor="system:detect", note="回落", now=t0 + timedelta(minutes=m - 5))
        ids.append(storm(m))
    other_sensor = storm(10, sensor="s-baiyun-8")
    other_theme = storm(10, theme="traffic", level="yellow")
    other_place = storm(10, adcode="440112")
    got = {incident_of(engine, aid) for aid in ids}
    assert len(got) == 1 and None not in got
    inc = incident(engine, got.pop())
    assert inc["alerts"] == 5 and inc["active_alerts"] == 1 and inc["status"] == "active"
    assert inc["alert_ids"] == ids and inc["latest_alert"] == ids[-1] and inc["worst_level"] == "red"
    assert [a["id"] for a in inc["alert_rows"]] == ids and inc["title"] == "河道水位快速上涨"
    separate = {incident_of(engine, a) for a in (other_sensor, other_theme, other_place)}
    assert len(separate) == 3 and inc["id"] not in separate
    # The Guangzhou table shows four incidents, not eight rows; Baiyun's first; Tianhe sees none.
    gz = incidents(engine, region="440100")
    assert len(gz) == 4 and gz[0]["id"] == inc["id"]
    assert [i["id"] for i in incidents(engine, region="440111", themes=["flood"])] == [
        inc["id"], incident_of(engine, other_sensor)]
    assert incidents(engine, region="440106") == []


def test_a_return_after_the_window_is_a_new_incident(engine, storm, t0):
    first = storm(0, level="orange")
    close(engine, first, actor="x", false_alarm=True, now=t0 + timedelta(minutes=5))
    again = storm(60 * 7)  # 7 h later: longer than the incident window (6 h) after the last ended
    soon = storm(60 * 7 + 30, rule="water-level")  # another rule on the sensor while `again` is active
    a, b, c = (incident_of(engine, x) for x in (first, again, soon))
    assert a != b and b == c
    assert incidents(engine, region="440100") == incidents(engine, region="440100", active_only=True)
    assert {i["id"] for i in incidents(engine, region="440100", active_only=False)} == {a, b}
    assert incident(engine, a)["status"] == "finished" and incident(engine, a)["worst_level"] == "orange"


def test_detector_upserts_do_not_regroup(engine, storm, t0):
    """The live detector writes an alert again and again (INSERT … ON CONFLICT DO UPDATE): only its
    first insert groups it."""
    aid = storm(0)
    inc = incident_of(engine, aid)
    with engine.begin() as conn:
        for i in range(3):
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
                "province, first_seen, last_seen, status) SELECT id, dedupe_key, source, level, theme, title, "
                "detail, subject, adcode, city, province, first_seen, last_seen + make_interval(mins => :i), status "
                "FROM alerts WHERE id = :id ON CONFLICT (id) DO UPDATE SET last_seen = EXCLUDED.last_seen"),
                {"id": aid, "i": i + 1})
        assert conn.execute(sa.text("SELECT count(*) FROM alert_incidents")).scalar() == 1
    assert incident_of(engine, aid) == inc and incident(engine, inc)["alerts"] == 1
