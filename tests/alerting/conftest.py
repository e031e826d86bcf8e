"""Fixtures of the alerting tests: alerts inserted the way the live detector writes them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
_ids = itertools.count(1)


def insert_alert(engine, *, level="orange", theme="flood", adcode="440106", city="440100",
                 province="440000", source="rule:ponding", status="open", first_seen=None,
                 alert_id=None, dedupe_key=None, metric="ponding_depth") -> str:
    aid = alert_id or f"a{next(_ids):05d}"
    first = first_seen or T0
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, detail, subject, adcode, city, "
            "province, first_seen, last_seen, status) VALUES (:id, :k, :src, :lv, :th, :title, "
            "CAST(:detail AS jsonb), :subj, :ad, :city, :prov, :fs, :fs, :st)"),
            {"id": aid, "k": dedupe_key or f"{source}|{aid}", "src": source, "lv": level, "th": theme,
             "title": f"测试预警 {aid}", "detail": f'{{"metric": "{metric}"}}', "subj": f"sensor:s-{aid}",
             "ad": adcode, "city": city, "prov": province, "fs": first, "st": status})
    return aid


@pytest.fixture
def make_alert(engine):
    def make(**kw):
        return insert_alert(engine, **kw)
    return make


@pytest.fixture
def t0():
    return T0


def later(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture(autouse=True)
def _loopback_receivers(loopback_webhooks_allowed):
    """Every alerting test's receiver is on 127.0.0.1."""
