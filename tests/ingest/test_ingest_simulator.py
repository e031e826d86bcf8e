"""The simulator is deterministic per seed, valid against the contract, and its incidents show."""

from datetime import datetime, timezone

import orjson
import shapely

from ingest.schemas import parse_message
from ingest.simulator import County, Simulator

START = datetime(2026, 11, 23, 0, 0, tzinfo=timezone.utc)
# Small synthetic counties (boxes near Guangzhou / Shenzhen) so the test needs no database.
COUNTIES = [County(f"4401{i:02d}", "440100", "440000", shapely.box(113.2 + 0.05 * i, 23.0, 113.25 + 0.05 * i, 23.05))
            for i in range(1, 5)] + [County("440303", "440300", "440000", shapely.box(114.1, 22.5, 114.15, 22.55))]


def sim(seed=1, **kw):
    return Simulator(seed=seed, counties=COUNTIES, start=START, duration_s=4 * 3600, interval_s=300,
                     sensors=300, cameras=30, **kw)


def test_same_seed_same_stream_other_seed_other_stream():
    a = list(sim(1).iter_messages())
    b = list(sim(1).iter_messages())
    c = list(sim(2).iter_messages())
    assert a == b
    assert [m.value for m in a] != [m.value for m in c]
    assert sim(1).truth() == sim(1).truth()


def test_stream_is_valid_keyed_and_inside_counties():
    s = sim(3)
    msgs = list(s.iter_messages())
    now = (START.timestamp() + 5 * 3600)
    kinds = set()
    for m in msgs:
        p = parse_message(m.value, now=now)
        assert not p.problems, (m.value[:200], p.problems)
        kinds.add(p.kind)
        for r in p.readings:
            assert m.key in (r.sensor_id, r.gateway_id)
            assert any(c.geom.contains(shapely.Point(r.lon, r.lat)) for c in COUNTIES)
        for e in p.events:
            assert m.key == e.camera_id
    assert kinds == {"reading", "readings", "video_event"}


def test_rainstorm_raises_rainfall_then_ponding_and_video():
    s = sim(4)
    storm = next(i for i in s.incidents if i.type == "rainstorm")
    rain = {sid for sid in storm.sensor_ids if sid.startswith("rainfall-")}
    assert rain and len(storm.counties) >= 2
    inside, outside = [], []
    ponding_events = []
    for m in s.iter_messages():
        d = orjson.loads(m.value)
        for r in d.get("readings", [d]):
            if r.get("metric") == "rainfall":
                ts = datetime.fromisoformat(r["ts"])
                (inside if r["sensor_id"] in rain and storm.start <= ts <= storm.end else outside).append(r["value"])
        if d.get("type") == "road_ponding" and d.get("snapshot_uri", "").startswith(f"sim://{storm.incident_id}"):
            ponding_events.append(datetime.fromisoformat(d["ts"]))
    assert max(inside) > 30 > max(outside)
    assert ponding_events and min(ponding_events) > storm.start
