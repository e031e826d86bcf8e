"""Every kind of bad input is named with its machine-readable reason and field (pure, no services)."""

from datetime import datetime, timezone

import orjson
import pytest

from ingest import load_catalogue, parse_message
from ingest.store import Desensitiser

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc).timestamp()
GOOD = {"schema": "reading/1", "event_id": "e-1", "sensor_id": "s-1", "metric": "water_level", "value": 3.2,
        "unit": "m", "ts": "2026-11-23T19:58:00+08:00", "lon": 113.32, "lat": 23.12}
VIDEO = {"schema": "video_event/1", "event_id": "v-1", "camera_id": "c-1", "type": "road_ponding",
         "confidence": 0.9, "ts": "2026-11-23T11:59:00Z", "lon": 113.32, "lat": 23.12, "count": 1,
         "attributes": {"plate": "粤A12345"}}


def parse(obj, **kw):
    raw = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return parse_message(raw, now=NOW, **kw)


def test_good_reading_and_video_event_pass():
    p = parse(GOOD)
    assert p.kind == "reading" and not p.problems
    r = p.readings[0]
    assert (r.metric, r.value, r.ts.utcoffset().total_seconds()) == ("water_level", 3.2, 8 * 3600)
    v = parse(VIDEO)
    assert v.kind == "video_event" and v.events[0].type == "road_ponding" and not v.problems


BAD = [
    (b"{not json", "not_json", None),
    (b"\xff\xfe", "not_json", None),
    (b'{"schema": "reading/1", "value": NaN}', "not_finite", None),
    (b"[1, 2]", "not_object", None),
    ({**GOOD, "schema": "reading/2"}, "unknown_schema", "schema"),
    ({k: v for k, v in GOOD.items() if k != "schema"}, "missing_field", "schema"),
    ({k: v for k, v in GOOD.items() if k != "sensor_id"}, "missing_field", "sensor_id"),
    ({**GOOD, "value": "3.2"}, "wrong_type", "value"),
    ({**GOOD, "value": True}, "wrong_type", "value"),
    ({**GOOD, "sensor_id": 17}, "wrong_type", "sensor_id"),
    ({**GOOD, "metric": "moon_phase"}, "unknown_metric", "metric"),
    ({**GOOD, "unit": "ft"}, "wrong_unit", "unit"),
    ({**GOOD, "value": 500.0}, "out_of_range", "value"),
    ({**GOOD, "lon": 23.12, "lat": 113.32}, "swapped_coordinates", "lon"),
    ({**GOOD, "lon": 2.35, "lat": 48.85}, "outside_regions", "lon"),
    ({**GOOD, "lon": 400.0, "lat": 23.0}, "bad_coordinates", "lon"),
    ({**GOOD, "ts": "2026-11-23T19:58:00"}, "ts_without_offset", "ts"),
    ({**GOOD, "ts": "yesterday"}, "bad_timestamp", "ts"),
    ({**GOOD, "ts": "2027-01-01T00:00:00Z"}, "ts_in_future", "ts"),
    ({**GOOD, "ts": "2020-01-01T00:00:00Z"}, "ts_too_old", "ts"),
    ({**GOOD, "event_id": "x" * 500}, "too_long", "event_id"),
    ({**VIDEO, "type": "ufo"}, "unknown_event_type", "type"),
    ({**VIDEO, "confidence": 1.5}, "out_of_range", "confidence"),
    ({**VIDEO, "count": 2.5}, "wrong_type", "count"),
    ({**VIDEO, "attributes": [1]}, "wrong_type", "attributes"),
    ({"schema": "readings/1", "gateway_id": "g", "readings": []}, "empty_batch", "readings"),
    ({"schema": "readings/1", "readings": [GOOD]}, "missing_field", "gateway_id"),
]


@pytest.mark.parametrize("message, reason, field", BAD, ids=[b[1] + f"-{i}" for i, b in enumerate(BAD)])
def test_bad_input_names_reason_and_field(message, reason, field):
    p = parse(message)
    assert not p.readings and not p.events
    assert [pr.reason for pr in p.problems] == [reason]
    assert p.problems[0].field == field
    assert p.problems[0].detail


def test_overflowing_number_is_not_finite():
    raw = orjson.dumps(GOOD).replace(b"3.2", b"1e999")
    assert parse(raw).problems[0].reason == "not_finite"


def test_oversized_message():
    limit = int(load_catalogue().limits["max_message_bytes"])
    raw = orjson.dumps({**GOOD, "quality": "x" * limit})
    assert parse(raw).problems[0].reason == "oversized"


def test_batch_keeps_good_readings_and_indexes_the_bad_one():
    items = [{k: v for k, v in GOOD.items() if k != "schema"} | {"event_id": f"e{i}"} for i in range(5)]
    items[2]["value"] = -99.0
    items[4]["event_id"] = "e0"
    p = parse({"schema": "readings/1", "gateway_id": "gw-1", "readings": items})
    assert [r.event_id for r in p.readings] == ["e0", "e1", "e3"]
    assert all(r.gateway_id == "gw-1" for r in p.readings)
    assert [(pr.reason, pr.index, pr.field) for pr in p.problems] == [
        ("out_of_range", 2, "readings[2].value"), ("duplicate_in_message", 4, "readings[4].event_id")]


def test_desensitiser_hides_personal_data_keyed():
    d = Desensitiser(b"secret", load_catalogue().personal_attributes)
    out = d.clean({"plate": "粤A12345", "Person_ID": 42, "nested": {"phone": "13812345678"},
                   "note": "plate 粤B67890 phone 13912345678", "colour": "red"})
    text = orjson.dumps(out).decode()
    for raw in ("粤A12345", "13812345678", "粤B67890", "13912345678", '"Person_ID":42'):
        assert raw not in text
    assert out["colour"] == "red" and out["plate"] == d.token("粤A12345")
    assert Desensitiser(b"other", ["plate"]).clean({"plate": "粤A12345"})["plate"] != out["plate"]


@pytest.mark.parametrize("message", [GOOD, {**GOOD, "value": 3}, {**GOOD, "quality": "good"}]
                         + [m for m, _, _ in BAD if isinstance(m, dict)])
def test_fast_path_accepts_exactly_what_the_checked_path_accepts(message, monkeypatch):
    import ingest.schemas as schemas

    fast = parse(message)
    monkeypatch.setattr(schemas, "_reading_fast", lambda *a: None)
    checked = parse(message)
    assert fast == checked
