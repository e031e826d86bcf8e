"""What the status page shows: live probes of the database and the broker (tested directly)."""

from __future__ import annotations

import sqlalchemy as sa

from tongguan.consumer import read_worker_health
from tongguan.db import engine_for
from tongguan.services import port_open


def probe_database(url: str) -> dict:
    """State of PostGIS: reachable, versions, applied migration, worker heartbeats."""
    try:
        with engine_for(url).connect() as conn:
            postgis = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar()
            server = conn.execute(sa.text("SHOW server_version")).scalar()
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            # Health by progress (lag, last commit, last error), not by a process answering.
            workers = read_worker_health(conn)
        return {"up": True, "postgres": server, "postgis": postgis, "revision": revision,
                "workers": workers}
    except Exception as exc:  # the page reports the failure instead of failing itself
        return {"up": False, "error": str(exc).splitlines()[0]}


def probe_broker(bootstrap: str) -> dict:
    """State of the broker: reachable, topics with partition counts and end offsets."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    if not port_open(host, int(port), timeout=1.0):
        return {"up": False, "error": f"{bootstrap} does not accept connections"}
    from kafka import KafkaConsumer, TopicPartition

    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="tongguan-status", enable_auto_commit=False,
                                 request_timeout_ms=5000)
        try:
            topics = {}
            for topic in sorted(consumer.topics()):
                parts = consumer.partitions_for_topic(topic) or set()
                tps = [TopicPartition(topic, p) for p in parts]
                ends = consumer.end_offsets(tps) if tps else {}
                topics[topic] = {"partitions": len(parts), "messages": int(sum(ends.values()))}
        finally:
            consumer.close()
        return {"up": True, "topics": topics}
    except Exception as exc:
        return {"up": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
