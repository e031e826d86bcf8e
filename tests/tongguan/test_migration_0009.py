"""Migration 0009 repairs what the store and the notifier wrote before (issue 14): video
attributes stored as a JSON string become the object; duplicate inbox items of one alert keep
their text and the newest gets the alert's id."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tongguan.db import alembic_config, current_revision

pytestmark = pytest.mark.integration
T = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


def _video(conn, eid: str, attributes_sql: str, value) -> None:
    conn.execute(sa.text(
        "INSERT INTO video_events (event_id, camera_id, type, theme, confidence, ts, attributes, county, city, "
        "province, geom, src_topic, src_partition, src_offset, ingested_at) VALUES (:eid, 'cam-1', "
        f"'street_vending', 'citymgmt', 0.9, :ts, {attributes_sql}, '440106', '440100', '440000', "
        "ST_SetSRID(ST_MakePoint(113.3, 23.1), 4326), 'city.video.events', 0, 1, :ts)"),
        {"eid": eid, "ts": T, "v": value})


def test_0009_repairs_video_attributes_and_links_inbox_items(db_url, engine):
    from alembic import command

    command.downgrade(alembic_config(db_url), "0008")
    assert current_revision(db_url) == "0008"
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:d AS date) - 1, CAST(:d AS date) + 1)"),
                     {"d": T.date()})
        as_string = json.dumps({"phone": "hmac:1f2e", "direction": "in"})
        _video(conn, "v-string", "to_jsonb(CAST(:v AS text))", as_string)  # what the old writer stored
        _video(conn, "v-object", "CAST(:v AS jsonb)", as_string)
        _video(conn, "v-text", "to_jsonb(CAST(:v AS text))", "not json {")  # a string that is no object
        sub = conn.execute(sa.text(
            "INSERT INTO subscriptions (name, owner, adcode, channels) VALUES ('gz', 'gz-operator', '440100', "
            "ARRAY['inbox']) RETURNING id")).scalar()
        for i, (alert_ids, ts) in enumerate([(["A1"], T), (["A1"], T + timedelta(minutes=16)), (["A1", "A2"], T)]):
            conn.execute(sa.text(
                "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, "
                "top_level, created_at) VALUES (:k, :s, 'gz-operator', :t, 'b', :ids, 'orange', :ts)"),
                {"k": f"d{i}", "s": sub, "t": f"title {i}", "ids": alert_ids, "ts": ts})
    command.upgrade(alembic_config(db_url), "head")
    with engine.connect() as conn:
        got = dict(conn.execute(sa.text(
            "SELECT event_id, jsonb_typeof(attributes) || ':' || coalesce(attributes->>'phone', '-') "
            "FROM video_events")).all())
        assert got == {"v-string": "object:hmac:1f2e", "v-object": "object:hmac:1f2e", "v-text": "string:-"}
        items = conn.execute(sa.text("SELECT delivery_key, alert_id, updated_at = created_at FROM inbox_messages "
                                     "ORDER BY delivery_key")).all()
        assert [tuple(r) for r in items] == [("d0", None, True), ("d1", "A1", True), ("d2", None, True)]
