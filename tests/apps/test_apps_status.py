"""/status tells the truth about workers: red with the reason when a worker has lag but does not
commit, the broker's outage and a lost log announced (zh-CN first, English available)."""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from apps.context import AppConfig
from apps.health import probe_database
from tongguan.consumer import Progress, record_heartbeat

pytestmark = pytest.mark.integration


def _texts(node) -> str:
    if isinstance(node, (list, tuple)):
        return " ".join(_texts(n) for n in node)
    if isinstance(node, str):
        return node
    children = getattr(node, "children", None)
    return _texts(children) if children is not None else str(node if isinstance(node, (int, float)) else "")


def _ids(node, out=None) -> dict:
    out = {} if out is None else out
    if isinstance(node, (list, tuple)):
        for n in node:
            _ids(n, out)
        return out
    if getattr(node, "id", None):
        out[node.id] = node
    children = getattr(node, "children", None)
    if children is not None and not isinstance(children, str):
        _ids(children, out)
    return out


def test_status_marks_a_worker_with_lag_and_no_commits_red_and_announces_a_lost_log(engine, db_url):
    started = datetime.now(timezone.utc) - timedelta(minutes=5)
    good = Progress("store", "store:h:1", stall_after_s=30.0)
    good.lag = 10
    good.committed()
    stuck = Progress("detect", "detect:h:2", stall_after_s=30.0)
    stuck.lag = 5000
    stuck.state = "stalled"
    stuck.log_lost = {"at": "2026-12-01T22:00:00+00:00", "partitions": 2, "unconsumed_lower_bound": 1234}
    with engine.begin() as conn:
        record_heartbeat(conn, good, started, {})
        record_heartbeat(conn, stuck, started, {})
        # The stuck worker committed last 10 minutes ago; its heartbeat is fresh (it runs, it answers).
        conn.execute(sa.text("UPDATE worker_heartbeats SET last_commit_at = now() - interval '10 minutes' "
                             "WHERE worker = 'detect:h:2'"))

    db = probe_database(db_url)
    by_worker = {w["worker"]: w for w in db["workers"]}
    assert by_worker["store:h:1"]["health"] == "green"
    assert by_worker["detect:h:2"]["health"] == "red"
    assert "lag 5000 but no commit for 600 s" in by_worker["detect:h:2"]["reasons"]

    from apps import create_app

    app = create_app(AppConfig(database_url=db_url, kafka_bootstrap="127.0.0.1:1"))  # the broker is down
    from apps.pages.status import render

    with app.server.app_context():
        zh = render("zh")
        en = render("en")
    ids = _ids(zh)
    assert "status-broker-down" in ids and "status-log-lost-0" in ids
    assert "1234" in _texts(ids["status-log-lost-0"]) and "丢失" in _texts(ids["status-log-lost-0"])
    assert "Apache Kafka" in _texts(_ids(en)["status-log-lost-0"])
    rows = [n for k, n in ids.items() if k.startswith("status-worker-")]
    text = {_texts(r) for r in rows}
    assert any("detect:h:2" in x and "异常" in x and "5,000" in x for x in text)
    assert any("store:h:1" in x and "正常" in x for x in text)
