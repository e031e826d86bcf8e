"""The managed services for real: lifecycle through the command line, failure detection,
and actual round trips through PostGIS and the broker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from kafka import KafkaConsumer, KafkaProducer

from tongguan.db import current_revision, engine_for
from tongguan.services import LocalServices, ServiceError, free_port
from tongguan.settings import Settings

pytestmark = pytest.mark.integration


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tongguan.cli", *args], capture_output=True,
                          text=True, env=env, timeout=180)


@pytest.fixture
def own_home():
    home = Path(tempfile.mkdtemp(prefix="tongguan-life-"))
    home.chmod(0o755)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TONGGUAN_")},
           "TONGGUAN_HOME": str(home), "TONGGUAN_PG_PORT": str(free_port()),
           "TONGGUAN_KAFKA_PORT": str(free_port()), "TONGGUAN_PARTITIONS": "3"}
    try:
        yield home, env
    finally:
        _cli(env, "down")
        shutil.rmtree(home, ignore_errors=True)


def test_up_status_down_up_keeps_the_database(own_home):
    home, env = own_home
    up = _cli(env, "up")
    assert up.returncode == 0, up.stderr
    status = json.loads(_cli(env, "status").stdout)
    assert {status[s]["state"] for s in ("postgres", "kafka")} == {"running"}
    assert status["workers"] == []  # none has run against this database yet
    assert status["postgres"]["address"] == f"127.0.0.1:{env['TONGGUAN_PG_PORT']}"

    again = _cli(env, "up")  # idempotent: finds them running
    assert again.returncode == 0 and "already running" in again.stderr

    exports = _cli(env, "env").stdout
    assert f"export TONGGUAN_KAFKA_BOOTSTRAP=127.0.0.1:{env['TONGGUAN_KAFKA_PORT']}" in exports
    # No password is printed: the URL names the password file (mode 0600) that libpq reads.
    passwords = json.loads((home / "secrets" / "postgres.json").read_text())
    assert not any(pw in exports for pw in passwords.values())
    assert f"kept in {home / 'secrets'}" in exports
    url = exports.split("TONGGUAN_DATABASE_URL=")[1].split()[0].strip("'")
    assert sa.make_url(url).password is None
    passfile = Path(sa.make_url(url).query["passfile"])
    assert passfile.parent == home / "secrets" and passfile.stat().st_mode & 0o777 == 0o600
    shell = subprocess.run(["sh", "-c", exports + '\necho "$TONGGUAN_DATABASE_URL"'], capture_output=True, text=True)
    assert shell.stdout.strip() == url  # the lines are valid shell
    eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with eng.begin() as conn:
        conn.execute(sa.text("CREATE TABLE keepme (id int PRIMARY KEY, g geometry(Point, 4326))"))
        conn.execute(sa.text("INSERT INTO keepme VALUES (1, ST_SetSRID(ST_MakePoint(113.32, 23.11), 4326))"))

    down = _cli(env, "down")
    assert down.returncode == 0
    assert {s["state"] for s in json.loads(down.stdout).values()} == {"stopped"}
    assert _cli(env, "status").returncode == 3  # not healthy

    assert _cli(env, "up").returncode == 0
    with eng.connect() as conn:
        assert conn.execute(sa.text("SELECT ST_X(g) FROM keepme WHERE id = 1")).scalar() == pytest.approx(113.32)
    # the broker is memory-only: topics are re-created on every start, with the configured partitions
    consumer = KafkaConsumer(bootstrap_servers=f"127.0.0.1:{env['TONGGUAN_KAFKA_PORT']}")
    try:
        assert consumer.partitions_for_topic("city.iot.readings") == {0, 1, 2}
        assert {"city.video.events", "city.alerts", "city.deadletter"} <= consumer.topics()
    finally:
        consumer.close()


def test_killed_processes_are_noticed_and_up_recovers(own_home):
    home, env = own_home
    assert _cli(env, "up").returncode == 0
    status = json.loads(_cli(env, "status").stdout)
    os.kill(status["kafka"]["pid"], signal.SIGKILL)
    os.kill(status["postgres"]["pid"], signal.SIGKILL)
    time.sleep(0.5)
    dead = json.loads(_cli(env, "status").stdout)
    assert dead["kafka"]["state"] == "dead" and "stale" in dead["kafka"]["detail"]
    assert dead["postgres"]["state"] == "dead"
    assert _cli(env, "env").returncode == 1  # refuses to print addresses of dead services

    assert _cli(env, "up").returncode == 0
    status = json.loads(_cli(env, "status").stdout)
    assert {status[s]["state"] for s in ("postgres", "kafka")} == {"running"}


def test_port_already_taken_is_a_clear_error_not_a_hang(own_home):
    home, env = own_home
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["TONGGUAN_KAFKA_PORT"])))
        blocker.listen()
        proc = _cli(env, "up")
    assert proc.returncode == 1
    assert f"port {env['TONGGUAN_KAFKA_PORT']} is already taken" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_stale_pid_file_is_reported_and_replaced(tmp_path_factory):
    home = Path(tempfile.mkdtemp(prefix="tongguan-stale-"))
    try:
        svc = LocalServices(Settings(home=home, kafka_port=free_port(), database_url="postgresql://x@127.0.0.1:1/x"))
        (home / "kafka").mkdir(parents=True)
        dead = subprocess.Popen(["true"])
        dead.wait()
        (home / "kafka" / "tansu.pid").write_text(str(dead.pid))
        assert svc.kafka.status().state == "dead"
        svc.kafka.start()
        assert svc.kafka.status().state == "running"
        assert int((home / "kafka" / "tansu.pid").read_text()) != dead.pid
        svc.kafka.stop()
        assert svc.kafka.status().state == "stopped"
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_external_urls_are_reported_not_managed():
    svc = LocalServices(Settings(database_url=f"postgresql://x@127.0.0.1:{free_port()}/x",
                                 kafka_bootstrap=f"127.0.0.1:{free_port()}"))
    status = svc.status()
    assert status["postgres"]["managed"] is False and status["postgres"]["state"] == "unreachable"
    assert status["kafka"]["state"] == "unreachable"


def test_postgis_round_trip_in_a_clean_migrated_database(engine, db_url):
    assert current_revision(db_url) is not None
    with engine.begin() as conn:
        # each test starts clean: no rows from other tests
        assert conn.execute(sa.text("SELECT count(*) FROM worker_heartbeats")).scalar() == 0
        conn.execute(sa.text("CREATE TABLE probe (name text, g geometry(Polygon, 4326))"))
        conn.execute(sa.text(
            "INSERT INTO probe VALUES ('box', ST_MakeEnvelope(113.0, 23.0, 113.5, 23.5, 4326))"))
    with engine.connect() as conn:
        inside = conn.execute(sa.text(
            "SELECT name FROM probe WHERE ST_Contains(g, ST_SetSRID(ST_MakePoint(113.32, 23.11), 4326))")).all()
        outside = conn.execute(sa.text(
            "SELECT name FROM probe WHERE ST_Contains(g, ST_SetSRID(ST_MakePoint(114.5, 21.5), 4326))")).all()
    assert inside == [("box",)] and outside == []


def test_broker_round_trip_keyed_messages(settings):
    topic = settings.topic("readings")
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    sent = [json.dumps({"schema": "reading/1", "event_id": str(uuid.uuid4()), "n": i}).encode()
            for i in range(50)]
    for i, value in enumerate(sent):
        producer.send(topic, key=f"sensor-{i % 5}".encode(), value=value)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=8000,
                             group_id=f"g-{uuid.uuid4().hex[:6]}", session_timeout_ms=6000,
                             heartbeat_interval_ms=1000, max_poll_interval_ms=10000)
    got = []
    try:
        for msg in consumer:
            got.append(msg)
            if len(got) == len(sent):
                break
    finally:
        consumer.close()
    assert sorted(m.value for m in got) == sorted(sent)
    # same key, same partition: per-sensor order is kept
    by_key = {}
    for m in got:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_delete_topics_deletes_only_the_prefixed_topics_and_their_messages(settings_factory, services):
    from kafka.admin import KafkaAdminClient

    from tongguan.services import delete_topics, ensure_topics

    mine, other = settings_factory(), settings_factory(topic_prefix=f"o{uuid.uuid4().hex[:8]}.")
    names = [mine.topic("readings"), mine.topic("alerts"), other.topic("readings")]
    ensure_topics(mine.kafka_bootstrap, 1, tuple(names))
    producer = KafkaProducer(bootstrap_servers=mine.kafka_bootstrap)
    for topic in names:
        producer.send(topic, b"x" * 100)
    producer.flush()
    producer.close()

    assert delete_topics(mine.kafka_bootstrap, prefix=mine.topic_prefix) == sorted(names[:2])
    admin = KafkaAdminClient(bootstrap_servers=mine.kafka_bootstrap)
    try:
        left = set(admin.list_topics())
    finally:
        admin.close()
    assert names[2] in left and not left & set(names[:2])
    # recreated under the same name, a topic starts empty: the messages went with it
    ensure_topics(mine.kafka_bootstrap, 1, (names[0],))
    producer = KafkaProducer(bootstrap_servers=mine.kafka_bootstrap)
    producer.send(names[0], b"new")
    producer.flush()
    producer.close()
    consumer = KafkaConsumer(names[0], bootstrap_servers=mine.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=8000)
    try:
        got = []
        for msg in consumer:
            got.append((msg.offset, msg.value))
            if msg.value == b"new":
                break
    finally:
        consumer.close()
    assert got == [(0, b"new")]
    assert delete_topics(mine.kafka_bootstrap, prefix=other.topic_prefix) == [names[2]]
    delete_topics(mine.kafka_bootstrap, prefix=mine.topic_prefix)
    with pytest.raises(ValueError):
        delete_topics(mine.kafka_bootstrap, prefix="")


def test_status_page_shows_both_services_up(services):
    from apps import AppConfig, create_app

    app = create_app(AppConfig(services.database_url, services.kafka_bootstrap))
    from apps.pages.status import render  # pages register themselves once an app exists

    with app.server.test_request_context("/status"):
        text = str(render("zh"))
    assert text.count("data-state='up'") == 2, text
    assert "city.iot.readings" in text and "PostGIS" in text
    with app.server.test_client() as client:
        anonymous = client.get("/status")  # operations pages are for signed-in users only
        assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_port_free_check_helper():
    with pytest.raises(ServiceError, match="already taken"):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            LocalServices(Settings(home=Path(tempfile.mkdtemp()), pg_port=port,
                                   kafka_bootstrap="127.0.0.1:1")).postgres.start()
