"""Property-based fuzzing of the store worker's whole path: decode → validate → place → prepare →
write on the real PostGIS → dead letters on the real broker.

Inputs: arbitrary bytes; arbitrary JSON documents (any nesting depth, any unicode including
control and NUL characters, huge and tiny numbers, duplicate keys, very long strings); and valid
messages of the three schemas with fields dropped, duplicated or replaced by such documents,
nested attribute objects included, on both topics. Properties: the worker never raises; every
message is stored once or dead-lettered once with a reason (or is a duplicate of something
stored); no reading is dead-lettered twice; the good messages around them are stored.

Bounded for ``make test`` (well under a minute); ``TONGGUAN_FUZZ_EXAMPLES=5000`` runs longer.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from ingest.catalogue import load_catalogue
from ingest.schemas import parse_message
from ingest.worker import StoreWorker, WorkerConfig

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("TONGGUAN_FUZZ_EXAMPLES", "120"))
TIANHE = (113.3612, 23.1247)
CAT = load_catalogue()
METRICS = sorted(CAT.metrics)
TYPES = sorted(CAT.video_event_types)


# -- a JSON writer that can say anything (duplicate keys, NaN, 10**40, raw control characters) ---
class Obj(list):
    """A JSON object as a list of (key, value) pairs: keys may repeat."""


def dump(x, raw_strings: bool = False) -> str:
    if x is None:
        return "null"
    if x is True:
        return "true"
    if x is False:
        return "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "Infinity" if x > 0 else "-Infinity"
        return repr(x)
    if isinstance(x, str):
        return json.dumps(x, ensure_ascii=not raw_strings)
    if isinstance(x, Obj):
        return "{" + ",".join(f"{dump(str(k), raw_strings)}:{dump(v, raw_strings)}" for k, v in x) + "}"
    return "[" + ",".join(dump(v, raw_strings) for v in x) + "]"


TEXT = st.text(max_size=40)  # any code point but surrogates: control characters and NUL included
LONG_TEXT = st.builds(lambda c, n: c * n, st.characters(), st.integers(300, 70_000))
NUMBERS = st.one_of(
    st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.floats(),
    st.sampled_from([1e308, -1e308, 5e-324, -0.0, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 40, 1e-300]))
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, LONG_TEXT)
DOCS = st.recursive(LEAVES, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.lists(st.tuples(TEXT, kids), max_size=4).map(Obj)), max_leaves=25)
DEEP = st.integers(1, 20_000).flatmap(lambda n: st.sampled_from(["[" * n + "]" * n, '{"a":' * n + "1" + "}" * n]))


def _ts(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


@st.composite
def _mutated(draw, base: list[tuple[str, object]]) -> Obj:
    out = Obj()
    for key, value in base:
        action = draw(st.sampled_from(("keep",) * 7 + ("drop", "replace", "duplicate")))
        if action == "keep":
            out.append((key, value))
        elif action == "replace":
            out.append((key, draw(DOCS)))
        elif action == "duplicate":
            out += [(key, draw(DOCS)), (key, value)] if draw(st.booleans()) else [(key, value), (key, draw(DOCS))]
    out += draw(st.lists(st.tuples(TEXT, DOCS), max_size=2))
    return out


@st.composite
def readings(draw, in_batch: bool = False) -> Obj:
    metric = draw(st.sampled_from(METRICS))
    spec = CAT.metrics[metric]
    base = [("event_id", f"fz-{draw(st.uuids()).hex}"), ("sensor_id", draw(st.one_of(st.just("fz-s1"), TEXT))),
            ("metric", metric), ("value", draw(st.one_of(st.floats(spec.min, spec.max), NUMBERS))),
            ("unit", spec.unit), ("ts", _ts(draw(st.floats(0, 600)))),
            ("lon", TIANHE[0] + draw(st.floats(-0.01, 0.01))), ("lat", TIANHE[1] + draw(st.floats(-0.01, 0.01))),
            ("quality", draw(st.one_of(st.just("good"), TEXT, LONG_TEXT)))]
    if not in_batch:
        base.insert(0, ("schema", "reading/1"))
    return draw(_mutated(base))


@st.composite
def batches(draw) -> Obj:
    items = draw(st.lists(st.one_of(readings(in_batch=True), DOCS), min_size=0, max_size=6))
    return draw(_mutated([("schema", "readings/1"), ("gateway_id", draw(TEXT)), ("readings", items)]))


ATTRS = st.recursive(st.one_of(LEAVES, st.sampled_from(["粤A12345", "13812345678", "call 13912345678 now"])),
                     lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(
                         st.one_of(TEXT, st.sampled_from(["plate", "phone", "face_id", "person_id"])), kids,
                         max_size=4)), max_leaves=20)


@st.composite
def videos(draw) -> Obj:
    base = [("schema", "video_event/1"), ("event_id", f"fz-{draw(st.uuids()).hex}"),
            ("camera_id", draw(st.one_of(st.just("fz-cam"), TEXT))), ("type", draw(st.sampled_from(TYPES))),
            ("confidence", draw(st.one_of(st.floats(0, 1), NUMBERS))), ("ts", _ts(draw(st.floats(0, 600)))),
            ("lon", TIANHE[0]), ("lat", TIANHE[1]), ("count", draw(st.one_of(st.integers(0, 50), NUMBERS))),
            ("attributes", draw(ATTRS)), ("snapshot_uri", draw(st.one_of(TEXT, LONG_TEXT)))]
    return draw(_mutated(base))


def _encode(draw_raw: bool):
    return lambda doc: dump(doc, raw_strings=draw_raw).encode("utf-8", "surrogatepass")


DOC_BYTES = st.tuples(st.one_of(DOCS, readings(), batches(), videos()), st.booleans()).map(
    lambda t: _encode(t[1])(t[0]))
MESSAGES = st.one_of(st.binary(max_size=300), DEEP.map(str.encode), DOC_BYTES, DOC_BYTES, DOC_BYTES)


# -- the property ----------------------------------------------------------------------------------
@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes
    key: bytes | None = None
    timestamp: int | None = None


def _good(i: int, tag: str) -> bytes:
    return orjson.dumps({"schema": "reading/1", "event_id": f"good-{tag}-{i}", "sensor_id": f"good-{i}",
                         "metric": "water_level", "value": 3.0, "unit": "m", "ts": _ts(1), "lon": TIANHE[0],
                         "lat": TIANHE[1]})


class _Offsets:
    n = 0

    def take(self, k: int) -> list[int]:
        start = self.n
        self.n += k
        return list(range(start, start + k))


def _stored_event_ids(conn, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(conn.execute(sa.text("SELECT event_id FROM readings WHERE event_id = ANY(:i) UNION "
                                    "SELECT event_id FROM video_events WHERE event_id = ANY(:i)"),
                            {"i": ids}).scalars())


def test_any_message_is_stored_once_or_dead_lettered_once_and_never_stops_the_worker(settings, engine):
    worker = StoreWorker(settings, WorkerConfig())
    worker.store.connect()
    from kafka import KafkaProducer

    worker.producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5)
    offsets = _Offsets()
    topics = (settings.topic("readings"), settings.topic("video"))

    @hsettings(max_examples=EXAMPLES, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                      HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.lists(st.tuples(MESSAGES, st.sampled_from(topics)), min_size=1, max_size=6))
    def check(fuzz):
        tag = uuid.uuid4().hex[:8]
        offs = offsets.take(len(fuzz) + 2)
        records = [Rec(topics[0], 0, offs[0], _good(0, tag))]
        records += [Rec(topic, 0, o, value) for (value, topic), o in zip(fuzz, offs[1:-1])]
        records.append(Rec(topics[0], 0, offs[-1], _good(1, tag)))

        prepared = worker.prepare(records)          # never raises
        worker._write_with_retry(prepared)          # never raises
        dead = prepared.dead + prepared.rejected
        worker._send_deadletters(dead)              # never raises, every envelope encodes

        with engine.connect() as conn:
            assert _stored_event_ids(conn, [f"good-{tag}-0", f"good-{tag}-1"]) == {f"good-{tag}-0", f"good-{tag}-1"}
            stored = dict(conn.execute(sa.text(
                "SELECT src_offset, count(*) FROM (SELECT src_offset FROM readings WHERE src_offset = ANY(:o) "
                "UNION ALL SELECT src_offset FROM video_events WHERE src_offset = ANY(:o)) x GROUP BY 1"),
                {"o": offs}).all())
            for rec in records[1:-1]:
                letters = [(p.reason, p.index) for r, p, _ in dead if r is rec]
                assert all(reason for reason, _ in letters)
                internal = [p.detail for r, p, _ in dead if r is rec and p.reason == "internal_error"]
                assert not internal, f"a crash path (isolated, but a bug): {internal} for {rec.value[:300]!r}"
                indices = [i for _, i in letters]
                assert len(set(indices)) == len(indices), f"dead-lettered twice: {letters}"
                n = stored.get(rec.offset, 0)
                if None in indices:  # the whole message was refused: once, and nothing of it stored
                    assert indices == [None] and n == 0, (letters, n)
                    continue
                # Every reading or event of the message: stored (now or before: a duplicate) or
                # dead-lettered by its index; every problem of the message has its dead letter.
                parsed = parse_message(rec.value)
                assert {p.index for p in parsed.problems} <= set(indices)
                items = list(parsed.readings) + list(parsed.events)
                in_table = _stored_event_ids(conn, [x.event_id for x in items])
                for x in items:
                    assert x.event_id in in_table or x.index in indices, (x, letters)
                assert n + len(letters) >= 1 or (items and {x.event_id for x in items} <= in_table)

    check()
    assert worker.stats.consumed > 0
    worker.close()


def test_fuzzed_stream_from_two_client_lineages_through_the_running_worker(settings, engine):
    """The same inputs produced by librdkafka (confluent-kafka) and kafka-python onto both topics,
    consumed by the real worker loop: it finishes, every message is accounted for, offsets at the end."""
    import warnings

    from confluent_kafka import Producer
    from hypothesis.errors import NonInteractiveExampleWarning
    from kafka import KafkaConsumer, KafkaProducer

    with warnings.catch_warnings():
        # Random draws (not a shrunk minimal example): a stream, not a property to shrink.
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        batch = [(MESSAGES.example(), bool(i % 3 == 0)) for i in range(120)]
    # Below the broker's 1 MiB message limit, so every message is delivered (the worker's own
    # size limit, 'oversized', is well below that and is exercised here).
    batch = [(v, video) for v, video in batch if len(v) < 900_000]
    ck = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "message.max.bytes": 2_000_000})
    kp = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=20, max_request_size=2_000_000)
    goods = 0
    failed: list = []
    futures = []

    def delivered(err, _msg):
        if err is not None:
            failed.append(err)

    for i, (value, to_video) in enumerate(batch):
        topic = settings.topic("video" if to_video else "readings")
        if i % 2:
            ck.produce(topic, value=value, key=str(i).encode(), on_delivery=delivered)
        else:
            futures.append(kp.send(topic, value=value, key=str(i).encode()))
        if i % 10 == 0:
            futures.append(kp.send(settings.topic("readings"), value=_good(i, "stream")))
            goods += 1
    assert ck.flush(30) == 0
    del ck
    kp.flush()
    for f in futures:
        f.get(timeout=30)
    kp.close()
    assert not failed, failed

    stats = StoreWorker(settings, WorkerConfig(until_idle=True, batch_size=37)).run()

    assert stats.consumed == len(batch) + goods
    with engine.connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM readings WHERE event_id LIKE 'good-stream-%'")).scalar()
    assert n == goods
    # Every dead letter the worker counted is on the topic.
    c = KafkaConsumer(settings.topic("deadletter"), bootstrap_servers=settings.kafka_bootstrap,
                      auto_offset_reset="earliest", consumer_timeout_ms=4000, enable_auto_commit=False)
    letters = [orjson.loads(r.value) for r in c]
    c.close()
    assert len(letters) == stats.dead_lettered and all(e["reason"] for e in letters)
    # The group's committed offsets are at the end of every partition: nothing left behind.
    from kafka.structs import TopicPartition

    probe = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.topic_prefix + "tongguan-store",
                          enable_auto_commit=False)
    try:
        tps = [TopicPartition(t, p) for t in (settings.topic("readings"), settings.topic("video"))
               for p in probe.partitions_for_topic(t)]
        committed = {tp: probe.committed(tp) or 0 for tp in tps}
        produced = {tp: 0 for tp in tps}
        tmp = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                            auto_offset_reset="earliest", consumer_timeout_ms=3000)
        tmp.assign(tps)
        for r in tmp:
            produced[TopicPartition(r.topic, r.partition)] = r.offset + 1
        tmp.close()
        assert committed == produced
    finally:
        probe.close()
