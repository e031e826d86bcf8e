"""Fixtures of the access tests: a database with alerts, readings and video events in Tianhe,
Yuexiu (both Guangzhou) and Futian (Shenzhen); the demo users; the Dash server with its Flask
test client; log-in helpers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

DEMO_PASSWORD = "demo-password-2026"
SCRIPT = "<script>alert('x')</script>"

# id -> (county, city)
ALERTS = {
    "A-TIANHE-1": ("440106", "440100"),
    "A-TIANHE-ESC": ("440106", "440100"),
    "A-TIANHE-2": ("440106", "440100"),
    "A-YUEXIU-1": ("440104", "440100"),
    "A-FUTIAN-1": ("440304", "440300"),
}


def _seed(engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for aid, (county, city) in ALERTS.items():
            conn.execute(sa.text(
                "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
                "province, geom, first_seen, last_seen) VALUES (:id, :id, 'rule:test', 'orange', 'flood', :title, "
                "CAST(:detail AS jsonb), 'sensor:s1', :county, :city, '440000', "
                "ST_SetSRID(ST_MakePoint(113.33, 23.13), 4326), :now, :now)"),
                {"id": aid, "title": f"积水 {aid} {SCRIPT}", "detail": json.dumps({"note": SCRIPT}),
                 "county": county, "city": city, "now": now})
        # The escalation rule lifted this one to the city (what analytics' escalation writes).
        conn.execute(sa.text("UPDATE alert_handling SET visible_at = '440100', escalated_at = now(), "
                             "escalation_reason = 'orange unacknowledged 15m' WHERE alert_id = 'A-TIANHE-ESC'"))
        conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:d AS date) - 1, CAST(:d AS date) + 1)"),
                     {"d": now.date()})
        for i, (county, city) in enumerate((("440106", "440100"), ("440104", "440100"))):
            conn.execute(sa.text(
                "INSERT INTO readings (ts, event_id, sensor_id, metric, value, county, city, province, geom, "
                "src_topic, src_partition, src_offset, ingested_at) VALUES (:ts, :eid, :sid, 'water_level', 3.2, "
                ":county, :city, '440000', ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), 'city.iot.readings', 1, "
                ":off, :ts)"),
                {"ts": now - timedelta(minutes=5), "eid": f"R-{county}", "sid": f"S-{county}", "county": county,
                 "city": city, "off": 100 + i})
            conn.execute(sa.text(
                "INSERT INTO video_events (event_id, camera_id, type, theme, confidence, ts, attributes, county, "
                "city, province, geom, src_topic, src_partition, src_offset, ingested_at) VALUES (:eid, :cam, "
                "'road_ponding', 'flood', 0.9, :ts, CAST(:attrs AS jsonb), :county, :city, '440000', "
                "ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), 'city.video.events', 0, :off, :ts)"),
                {"eid": f"V-{county}", "cam": f"C-{county}", "ts": now - timedelta(minutes=3),
                 "attrs": json.dumps({"note": SCRIPT, "plate": "hmac:abc"}), "county": county, "city": city,
                 "off": 200 + i})
            conn.execute(sa.text(
                "INSERT INTO reading_rollups_hour (adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts) "
                "VALUES (:a, 'water_level', date_trunc('hour', now()), 1, 3.2, 3.2, 3.2, 3.2, now())"),
                {"a": county})


@pytest.fixture
def access(app_db_url, engine):
    """(engine, app, logins): seeded database, demo users, the Dash app (rate limits raised so
    the tests measure access, not the limiter)."""
    from apps import AppConfig, create_app
    from apps.identity import create_demo_users

    _seed(engine)
    logins = {u["username"]: u for u in create_demo_users(engine, password=DEMO_PASSWORD)}
    app = create_app(AppConfig(database_url=app_db_url, kafka_bootstrap="127.0.0.1:9"))
    app.server.config.update(TESTING=True, TONGGUAN_API_RATE="100000 per minute",
                             TONGGUAN_LOGIN_RATE="1000 per minute")
    return engine, app, logins


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the form carries a CSRF token"
    return m.group(1)


def login(app, username: str, password: str = DEMO_PASSWORD):
    """A test client signed in as ``username`` (asserts the log-in worked)."""
    client = app.server.test_client()
    page = client.get("/login")
    assert page.status_code == 200
    resp = client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(page.get_data(as_text=True))})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:500]
    return client


def token_for(engine, username: str) -> dict:
    from apps.identity import create_token

    t = create_token(engine, username, "tests")
    return {"Authorization": f"Bearer {t['token']}"}
