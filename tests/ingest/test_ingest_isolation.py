"""One record never stops the store worker: rows the database refuses are bisected out of their
batch (``rejected_by_database``), an unexpected exception on one record dead-letters only that
record (``internal_error``), and the good records around them are stored in the same pass."""

import base64

import orjson
import pytest
import sqlalchemy as sa

from ingest.worker import StoreWorker, WorkerConfig
from tests.ingest.test_ingest_worker import deadletters, produce, reading

pytestmark = pytest.mark.integration


def test_rows_the_database_refuses_are_bisected_out_and_the_rest_stored(settings, engine):
    # PostgreSQL text cannot hold NUL: these pass validation, and the database refuses them.
    good = [(f"s{i % 9}", reading(f"g-{i}", sensor=f"s{i % 9}", minutes_ago=i / 50)) for i in range(300)]
    refused = {37: {"sensor_id": "nul\x00sensor"}, 150: {"event_id": "nul\x00id"}, 299: {"quality": "q\x00"}}
    msgs = list(good)
    for pos, change in refused.items():
        msgs.insert(pos, ("bad", {**reading(f"bad-{pos}"), **change}))
    batch = {"schema": "readings/1", "gateway_id": "gw-1",
             "readings": [reading(f"gw-{j}", sensor=f"gws-{j}", schema=False) for j in range(5)]}
    batch["readings"][3]["sensor_id"] = "gws-\x00"
    msgs.append(("gw-1", batch))
    produce(settings, msgs)

    stats = StoreWorker(settings, WorkerConfig(until_idle=True, batch_size=1000)).run()

    assert stats.rejected_by_database == 4
    assert stats.stored_readings == 300 + 4
    assert stats.dead_lettered == 4 and stats.reasons == {"rejected_by_database": 4}
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), count(DISTINCT event_id) FROM readings")).one() == (304, 304)
        rolled = conn.execute(sa.text("SELECT sum(n) FROM reading_rollups_minute WHERE adcode = '440000'")).scalar()
        assert rolled == 304
        assert conn.execute(sa.text("SELECT count(*) FROM readings WHERE event_id LIKE 'bad-%'")).scalar() == 0
    letters = [env for env, _ in deadletters(settings, 4)]
    assert {env["reason"] for env in letters} == {"rejected_by_database"}
    for env in letters:
        assert "0x00" in env["detail"] and env["database"]["sqlstate"].startswith("22")
        original = orjson.loads(base64.b64decode(env["original_b64"]))
        if env["index"] is not None:
            assert env["index"] == 3 and env["item"]["sensor_id"] == "gws-\x00" and original == batch
        else:
            assert original["event_id"] in ("bad-37", "nul\x00id", "bad-299")


def test_an_exception_on_one_record_dead_letters_only_that_record(settings, engine, monkeypatch):
    """Bugs we do not know of yet: simulate one in decoding and one in desensitising."""
    import ingest.worker as worker_module

    real_parse = worker_module.parse_message

    def parse(raw, **kw):
        if b"decode-bomb" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(raw, **kw)

    monkeypatch.setattr(worker_module, "parse_message", parse)
    event = {"schema": "video_event/1", "event_id": "ve-bomb", "camera_id": "cam-1", "type": "illegal_parking",
             "confidence": 0.9, "ts": reading("x")["ts"], "lon": 113.3612, "lat": 23.1247,
             "attributes": {"note": "desensitise-bomb"}}
    produce(settings, [(f"s{i}", reading(f"ok-{i}", sensor=f"s{i}")) for i in range(20)]
            + [("d", {**reading("decode-bomb")})])
    produce(settings, [("cam-1", event), ("cam-2", {**event, "event_id": "ve-ok", "attributes": {"note": "fine"}})],
            topic="video")
    worker = StoreWorker(settings, WorkerConfig(until_idle=True))
    real_clean = worker.desensitiser.clean

    def clean(value, key=None):
        if value == "desensitise-bomb":
            raise KeyError("plate")
        return real_clean(value, key)

    monkeypatch.setattr(worker.desensitiser, "clean", clean)
    stats = worker.run()

    assert stats.internal_errors == 2 and stats.reasons == {"internal_error": 2}
    assert (stats.stored_readings, stats.stored_events) == (20, 1)
    letters = {env["exception"]["stage"]: env for env, _ in deadletters(settings, 2)}
    assert letters["decode"]["exception"]["type"] == "RecursionError"
    assert "maximum recursion depth" in letters["decode"]["detail"]
    assert orjson.loads(base64.b64decode(letters["decode"]["original_b64"]))["event_id"] == "decode-bomb"
    assert letters["desensitise"]["exception"]["type"] == "KeyError"
    assert letters["desensitise"]["source"]["topic"] == settings.topic("video")
    with engine.connect() as conn:
        beat = conn.execute(sa.text("SELECT last_error, state, last_commit_at FROM worker_heartbeats")).one()
    assert beat.last_error.startswith("internal_error: ") and beat.last_commit_at is not None
