"""The detection core: dedupe, corroboration (多源校核), possible sensor faults, silence, surges,
forecast warnings with a crossing time."""

import numpy as np
import pandas as pd
import pytest

from analytics.alerts import AlertBook
from analytics.engine import DetectorCore, distance_m
from analytics.forecast import Forecaster
from analytics.video import SurgeDetector

T0 = 1_780_000_000.0
GZ = {"county": "440106", "city": "440100", "province": "440000", "grid_id": None}


def core(**kw):
    return DetectorCore(locate=lambda *_: GZ, **kw)


def feed(c, sensor, metric, values, step=60.0, t0=T0, lon=113.33, lat=23.13):
    for i, v in enumerate(values):
        c.on_reading({"sensor_id": sensor, "metric": metric, "value": v, "ts": t0 + i * step, "lon": lon, "lat": lat})


def opened(changes):
    return [ch.alert for ch in changes if ch.action == "opened"]


def test_ongoing_condition_updates_one_alert():
    c = core(anomalies=False)
    feed(c, "p1", "ponding_depth", [0.0] * 5 + [20.0] * 60)
    changes = [ch for ch in c.drain() if ch.alert.source == "rule:ponding"]
    alerts = opened(changes)
    assert len(alerts) == 1 and alerts[0].level == "blue" and alerts[0].adcode == "440106"
    assert alerts[0].count > 1 and alerts[0].last_seen - alerts[0].first_seen >= 50 * 60
    assert {ch.action for ch in changes} <= {"opened", "updated"}
    msg = changes[0].snapshot
    assert msg["region"] == {"adcode": "440106", "city": "440100", "province": "440000", "grid_id": None}
    assert msg["geometry"] == {"type": "Point", "coordinates": [113.33, 23.13]}


def test_road_ponding_video_nearby_corroborates_and_raises_the_level():
    c = core(anomalies=False)
    feed(c, "p1", "ponding_depth", [20.0] * 8)
    far = {"camera_id": "cam-far", "type": "road_ponding", "ts": T0 + 500, "lon": 113.40, "lat": 23.13}
    near = {"camera_id": "cam-near", "type": "road_ponding", "ts": T0 + 520, "lon": 113.332, "lat": 23.131}
    c.on_video(far)
    assert not any(ch.action == "corroborated" for ch in c.drain())
    c.on_video(near)
    ch = [ch for ch in c.drain() if ch.action == "corroborated" and ch.alert.source == "rule:ponding"]
    assert len(ch) == 1 and ch[0].alert.level == "yellow" and ch[0].alert.confidence >= 0.9
    assert "cam-near" in ch[0].note


def test_uncorroborated_anomaly_is_a_possible_sensor_fault_and_neighbours_corroborate():
    panyu = {**GZ, "county": "440113"}
    c = DetectorCore(locate=lambda _d, lon, _lat: panyu if lon > 113.5 else GZ)
    rng = np.random.default_rng(0)
    # bridge strain has no rule: only the anomaly detectors watch it
    for s, lon in (("a", 113.33), ("b", 113.331), ("c", 113.60)):
        feed(c, s, "bridge_strain", 120 + rng.normal(0, 5, 60), lon=lon)
    c.drain()
    t = T0 + 60 * 60
    c.on_reading({"sensor_id": "a", "metric": "bridge_strain", "value": 900.0, "ts": t, "lon": 113.33, "lat": 23.13})
    first = opened(c.drain())
    assert len(first) == 1 and first[0].detail["possible_fault"] is True and "疑似设备故障" in first[0].title
    c.on_reading({"sensor_id": "b", "metric": "bridge_strain", "value": 900.0, "ts": t + 30, "lon": 113.331, "lat": 23.13})
    c.on_reading({"sensor_id": "c", "metric": "bridge_strain", "value": 900.0, "ts": t + 30, "lon": 113.60, "lat": 23.13})
    changes = c.drain()
    by = {a.subject: a for a in opened(changes)}
    assert "possible_fault" not in by["sensor:b"].detail  # a neighbour 100 m away agrees
    assert by["sensor:c"].detail["possible_fault"] is True  # 27 km away, another county: alone
    back = [ch for ch in changes if ch.action == "corroborated"]
    assert [ch.alert.subject for ch in back] == ["sensor:a"]  # a is no longer alone either
    assert "疑似设备故障" not in back[0].snapshot["title"] and "possible_fault" not in back[0].snapshot["detail"]


def test_rule_alert_supersedes_anomaly_on_the_same_sensor():
    c = core()
    feed(c, "g", "gas_lel", [0.5] * 40 + [60.0] * 3)
    alerts = opened(c.drain())
    assert [a.source for a in alerts] == ["rule:gas-leak"] and alerts[0].level == "red"


def test_silent_sensor_goes_offline_and_comes_back():
    c = core(anomalies=False)
    feed(c, "s", "temperature", [24.0] * 10)
    c.tick(T0 + 9 * 60 + 600)
    assert not opened(c.drain())
    c.tick(T0 + 9 * 60 + 1000)
    off = opened(c.drain())
    assert len(off) == 1 and off[0].dedupe_key == "offline|sensor:s"
    # offline since the silence reached 10 intervals (900 s at the least), whenever the tick ran
    assert off[0].first_seen == T0 + 9 * 60 + 900
    feed(c, "s", "temperature", [24.0], t0=T0 + 3000)
    assert [ch.action for ch in c.drain()] == ["resolved"]


def test_video_surge_against_baseline_and_crowd_counts():
    busy = pd.DataFrame({"place": ["busy"] * 480, "type": ["illegal_parking"] * 480,
                         "ts": T0 - 86400 * 2 + np.arange(480) * 360.0})
    others = pd.DataFrame({"place": [f"cell{k}" for k in range(20)] * 2, "type": ["illegal_parking"] * 40,
                           "ts": T0 - 86400 * 2 + np.arange(40) * 4000.0})
    surge = SurgeDetector().fit(pd.concat([busy, others], ignore_index=True))
    assert surge.rate("busy", "illegal_parking", 10) > 5 * surge.rate("quiet", "illegal_parking", 10)
    ok, expected, p = surge.assess("busy", "illegal_parking", T0, 6)
    assert not ok  # 10 an hour is normal there
    ok, expected, p = surge.assess("quiet", "illegal_parking", T0, 6)
    assert ok and p < 1e-3
    c = core(surge=surge)
    for k in range(4):
        c.on_video({"camera_id": "cam1", "type": "crowd_gathering", "ts": T0 + 60 * k, "lon": 113.3, "lat": 23.1,
                    "count": 80 + 60 * k})
    levels = [(ch.action, ch.snapshot["level"]) for ch in c.drain() if ch.alert.source == "rule:video-count"]
    assert levels[:2] == [("opened", "blue"), ("escalated", "yellow")]


def test_alert_book_resolve_then_reopen_is_a_new_alert():
    b = AlertBook()
    kw = dict(level="blue", source="rule:x", theme="flood", title="t", detail={}, subject="sensor:s", place=GZ)
    a1 = b.raise_("k", ts=T0, **kw)
    b.resolve("k", T0 + 60)
    a2 = b.raise_("k", ts=T0 + 120, **kw)
    assert a1.id != a2.id and a1.status == "resolved" and a2.status == "open"
    assert [c.action for c in b.drain()] == ["opened", "resolved", "opened"]


def test_distance():
    assert distance_m(113.0, 23.0, 113.0, 23.0) == 0
    assert 400 < distance_m(113.0, 23.0, 113.0045, 23.0) < 500


@pytest.fixture(scope="module")
def ponding_forecaster():
    # ponding rises 30 min after rain starts, by 1 cm per 2 mm/h of rain
    rng = np.random.default_rng(0)
    rows, rain_rows = [], []
    for storm in range(6):
        t = T0 + storm * 86400 + np.arange(0, 6 * 3600, 60.0)
        rain = np.where((t - t[0] > 3600) & (t - t[0] < 3 * 3600), 40.0 + 10 * storm, 0.0)
        depth = np.clip(np.convolve(rain, np.ones(60) / 60, mode="full")[: len(t)] / 2, 0, None)
        depth = np.r_[np.zeros(30), depth[:-30]] + rng.normal(0, 0.3, len(t)).clip(0)
        rows += [("p", ti, di, "440106") for ti, di in zip(t, depth)]
        rain_rows += [("r", ti, ri, "440106") for ti, ri in zip(t, rain)]
    frame = pd.DataFrame(rows, columns=["series", "timestamp", "value", "area"])
    from analytics.forecast import rain_by_area

    rain = rain_by_area(pd.DataFrame(rain_rows, columns=["series", "timestamp", "value", "area"]))
    return Forecaster(metric="ponding_depth", max_iter=60).fit(frame, rain=rain)


def test_forecast_warns_before_the_threshold_with_a_crossing_time(ponding_forecaster):
    fc = ponding_forecaster
    assert fc.threshold_ == 15.0 and fc.scores_["mae"] < fc.scores_["mae_persistence"]
    c = core(anomalies=False, forecasters={("ponding_depth", ""): (fc, 3)})
    t = T0 + 30 * 86400 + np.arange(0, 4 * 3600, 60.0)
    for i, ti in enumerate(t):
        rain = 60.0 if ti - t[0] > 3600 else 0.0
        c.on_reading({"sensor_id": "r1", "metric": "rainfall", "value": rain, "ts": ti, "lon": 113.3, "lat": 23.1})
        depth = max(0.0, (ti - t[0] - 5400) / 60 * 0.5)  # starts rising 30 min after the rain, 0.5 cm/min
        c.on_reading({"sensor_id": "p1", "metric": "ponding_depth", "value": depth, "ts": ti, "lon": 113.3, "lat": 23.1})
        if i % 5 == 0:
            c.tick()
    changes = c.drain()
    fcast = [ch.alert for ch in changes if ch.action == "opened" and ch.alert.source.startswith("model:forecast")]
    rule = [ch.alert for ch in changes if ch.action == "opened" and ch.alert.source == "rule:ponding"]
    assert fcast and rule and fcast[0].first_seen < rule[0].first_seen
    d = fcast[0].detail
    assert d["threshold"] == 15.0 and 0 < d["minutes"] <= 60 and fcast[0].source == "model:forecast/ponding_depth@v3"


def test_surge_windows_stay_bounded_under_a_flood_and_scattered_places():
    from analytics.video import SURGE_POLICY, SurgeWindows

    w, t = SurgeWindows(), 1_780_000_000.0
    window = SURGE_POLICY["default"]["window_s"]
    # a flood at one place: the count saturates at the bound (a surge either way), memory stays put
    counts = [w.add("p", "crowd", t + i * 0.001) for i in range(3 * SurgeWindows.MAX_WINDOW_EVENTS)]
    assert max(counts) == SurgeWindows.MAX_WINDOW_EVENTS == len(w.events[("p", "crowd")])
    # events at ever new places, spread over many windows: only the recent places are kept
    for i in range(50_000):
        w.add(f"cell-{i}", "crowd", t + 10 + i * window / 1000)
    assert len(w.events) <= 1000 + SurgeWindows.SWEEP_EVERY + 1
    assert w.add("p2", "crowd", t + 10 + 50_000 * window / 1000) == 1
