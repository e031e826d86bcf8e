"""The rules engine: levels, durations, hysteresis, windows, region overrides, the shipped YAML."""

import pytest

from analytics import AnalyticsError, RuleEngine, load_rules, parse_rules

T0 = 1_780_000_000.0


def engine_for(yaml_rules: dict) -> RuleEngine:
    return RuleEngine(parse_rules(yaml_rules, themes={"x": "flood", "rain": "flood"}))


def feed(engine, values, step=60.0, metric="x", sensor="s1", **extra):
    state, out = None, []
    for i, v in enumerate(values):
        state, events = engine.update(state, {"sensor_id": sensor, "metric": metric, "value": v,
                                              "ts": T0 + i * step, **extra})
        out.extend((i, e.kind, e.level) for e in events)
    return out


SIMPLE = {"defaults": {"hysteresis": 0.1, "clear_for": "0s"}, "rules": [{
    "id": "t", "metric": "x",
    "levels": {"blue": {"agg": "last", "above": 10}, "yellow": {"agg": "last", "above": 20},
               "red": {"agg": "last", "above": 50}}}]}


def test_levels_raise_escalate_clear():
    out = feed(engine_for(SIMPLE), [1, 11, 25, 60, 5])
    assert out == [(1, "raise", "blue"), (2, "escalate", "yellow"), (3, "escalate", "red"),
                   (4, "clear", None)]


def test_hysteresis_prevents_flapping():
    # hovering around 10: enters at >10, only leaves below 9 (10 % hysteresis)
    out = feed(engine_for(SIMPLE), [9, 10.5, 9.5, 10.2, 9.6, 10.1, 8.5])
    assert out == [(1, "raise", "blue"), (6, "clear", None)]


def test_duration_and_clear_for():
    rules = {"rules": [{"id": "t", "metric": "x", "hysteresis": 0, "clear_for": "3m",
                        "levels": {"blue": {"agg": "last", "above": 10, "for": "2m"}}}]}
    out = feed(engine_for(rules), [11, 11, 5, 11, 11, 11, 5, 5, 11, 5, 5, 5, 5])
    # needs 2 minutes above: the first run (2 readings, 1 min) never raises; then 3 readings raise
    # at the third; the dip of 2 min is shorter than clear_for; clears after 3 min below.
    assert out == [(5, "raise", "blue"), (12, "clear", None)]


def test_integral_windows_rainstorm_levels():
    engine = RuleEngine(load_rules())
    # 40 mm/h for 2 h, one reading per 5 min, somewhere outside Guangdong (national signals)
    out = feed(engine, [40.0] * 25, step=300, metric="rainfall", province="350000")
    levels = [lv for _, kind, lv in out]
    assert levels[0] == "blue"  # 20 mm within 1 h (short-duration heavy rain)
    assert "orange" in levels and "red" not in levels  # 80 mm in 2 h: orange (50 mm in 3 h)
    first_orange = next(i for i, _, lv in out if lv == "orange")
    assert first_orange * 300 / 3600 == pytest.approx(50 / 40, abs=0.1)


def test_region_override_most_specific_wins():
    engine = RuleEngine(load_rules())
    gd = feed(engine, [25.0] * 13, step=300, metric="rainfall", county="440106", city="440100",
              province="440000")
    fj = feed(engine, [25.0] * 13, step=300, metric="rainfall", province="350000")
    assert fj[0][2] == "blue" and gd[0][2] == "yellow"  # Guangdong has no blue rainstorm signal


def test_rate_of_rise():
    rules = {"rules": [{"id": "r", "metric": "x", "levels": {
        "blue": {"agg": "rise", "window": "30m", "above": 1.0}}}]}
    slow = feed(engine_for(rules), [i * 0.01 for i in range(120)])  # 0.3 per 30 min
    fast = feed(engine_for(rules), [i * 0.1 for i in range(20)])  # 3 per 30 min
    assert slow == [] and fast and fast[0][2] == "blue"


def test_sustained_aqi_levels_from_shipped_rules():
    engine = RuleEngine(load_rules())
    out = feed(engine, [260.0] * (24 * 5), step=3600, metric="aqi")
    kinds = [(i, lv) for i, _, lv in out]
    assert [lv for _, lv in kinds] == ["blue", "yellow"]  # > 200 but never > 300: no orange
    assert kinds[1][0] - kinds[0][0] == 24


def test_out_of_order_and_nan_are_ignored():
    engine = engine_for(SIMPLE)
    state, ev = engine.update(None, {"sensor_id": "a", "metric": "x", "value": 30, "ts": T0})
    state, ev2 = engine.update(state, {"sensor_id": "a", "metric": "x", "value": 1, "ts": T0 - 10})
    state, ev3 = engine.update(state, {"sensor_id": "a", "metric": "x", "value": float("nan"), "ts": T0 + 1})
    assert [e.level for e in ev] == ["yellow"] and ev2 == [] and ev3 == []


@pytest.mark.parametrize("bad, message", [
    ({"rules": [{"id": "a", "metric": "x", "levels": {"purple": {"above": 1}}}]}, "unknown level"),
    ({"rules": [{"id": "a", "metric": "x", "levels": {"red": {"agg": "sum", "above": 1}}}]}, "needs a window"),
    ({"rules": [{"id": "a", "metric": "x", "levels": {"red": {"above": 1, "below": 2}}}]}, "exactly one"),
    ({"rules": [{"id": "a", "metric": "x", "levels": {"red": {"above": 1, "for": "soon"}}}]}, "bad duration"),
    ({"rules": [{"id": "a", "metric": "nope", "levels": {"red": {"above": 1}}}]}, "not in the ingest"),
])
def test_bad_rules_say_what_is_wrong(bad, message):
    with pytest.raises(AnalyticsError, match=message):
        parse_rules(bad, metrics=["x"], themes={"x": "flood"})


def test_every_shipped_rule_cites_a_source():
    rules = load_rules()
    assert len(rules) >= 10
    assert all(len(r.source) > 40 for r in rules)
    metrics = {r.metric for r in rules}
    assert {"rainfall", "ponding_depth", "aqi", "gas_lel", "water_level"} <= metrics


# ------------------------------------------------------------------ bounded aggregation windows
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from analytics.rules import WINDOW_BUCKETS, _Window  # noqa: E402


def _brute(readings, length, agg):
    """The aggregate over the readings of the last ``length`` s, from scratch (the reference)."""
    t, last = readings[-1]
    inside = [(ti, v) for ti, v in readings if ti > t - length] or readings[-1:]
    values = [v for _, v in inside]
    return {"mean": sum(values) / len(values), "sum": sum(values), "max": max(values), "min": min(values),
            "rise": last - min(values), "fall": max(values) - last}[agg]


@hsettings(max_examples=60, deadline=None)
@given(steps=st.lists(st.floats(min_value=2.5, max_value=900.0), min_size=1, max_size=300),
       values=st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=300, max_size=300),
       agg=st.sampled_from(["mean", "sum", "max", "min", "rise", "fall"]))
def test_a_window_of_readings_no_faster_than_a_bucket_is_exact(steps, values, agg):
    length = 3600.0  # buckets of 2.5 s: every reading here is its own
    w, readings, t = _Window(length), [], T0
    for dt, v in zip(steps, values):
        t += dt
        w.add(t, v)
        readings.append((t, v))
        assert w.value(agg) == pytest.approx(_brute(readings, length, agg), rel=1e-9, abs=1e-6)


def test_a_fast_sensor_keeps_a_bounded_window_with_the_right_aggregates():
    w, length = _Window(3600.0), 3600.0
    readings = [(T0 + i * 0.1, float(i % 97)) for i in range(200_000)]  # 10 Hz for 5.5 h
    for t, v in readings:
        w.add(t, v)
    assert len(w.items) <= WINDOW_BUCKETS + 1 and len(w.mins) <= WINDOW_BUCKETS + 1
    assert len(w.maxs) <= WINDOW_BUCKETS + 1
    # merged buckets move the window's start in steps of one bucket (2.5 s of 3600 s)
    for agg in ("mean", "max", "min", "rise", "fall"):
        assert w.value(agg) == pytest.approx(_brute(readings, length, agg), rel=2e-3, abs=1e-6)
    assert w.value("sum") == pytest.approx(_brute(readings, length, "sum"), rel=2.0 / WINDOW_BUCKETS)
