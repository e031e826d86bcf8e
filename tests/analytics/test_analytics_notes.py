"""The detector's history notes are written in both languages, so the alert page shows each
note in its own language (issue 14: "rise over 1h > 0.8" on the zh page)."""

import re

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from analytics import notes
from analytics.engine import DetectorCore
from analytics.rules import AGGS, load_rules

T0 = 1_780_000_000.0
GZ = {"county": "440106", "city": "440100", "province": "440000", "grid_id": None}
# an English word (ids such as "cam-near", "p1", "PM2.5" are not words)
ENGLISH = re.compile(r"(?<![\w-])[a-z]{3,}(?![\w-])")
CJK = re.compile(r"[\u4e00-\u9fff]")


def feed(c, sensor, metric, values, step=60.0, t0=T0, lon=113.33, lat=23.13):
    for i, v in enumerate(values):
        c.on_reading({"sensor_id": sensor, "metric": metric, "value": v, "ts": t0 + i * step, "lon": lon, "lat": lat})


def assert_bilingual(note):
    zh, en = notes.in_language(note, "zh"), notes.in_language(note, "en")
    assert CJK.search(zh) and not ENGLISH.search(zh), (note, zh)
    assert ENGLISH.search(en) and not CJK.search(en), (note, en)


def noted(changes, action):
    got = [ch.note for ch in changes if ch.action == action and ch.note]
    assert got, (action, [(ch.action, ch.note) for ch in changes])
    return got


def test_rule_raise_escalate_corroborate_and_clear_notes():
    c = DetectorCore(locate=lambda *_: GZ, anomalies=False)
    feed(c, "p1", "ponding_depth", [0.0] * 5 + [20.0] * 10)
    c.on_video({"camera_id": "cam-near", "type": "road_ponding", "ts": T0 + 14 * 60, "lon": 113.332, "lat": 23.131})
    feed(c, "p1", "ponding_depth", [0.0] * 120, t0=T0 + 15 * 60)
    changes = c.drain()
    for action in ("opened", "corroborated", "resolved"):
        for note in noted(changes, action):
            assert_bilingual(note)
    assert "cam-near" in noted(changes, "corroborated")[0]
    cleared = notes.in_language(noted(changes, "resolved")[0], "zh")
    assert cleared.startswith("条件解除: ") and "ponding" not in cleared  # the rule's zh title, not its id


def test_offline_back_online_note():
    c = DetectorCore(locate=lambda *_: GZ, anomalies=False)
    feed(c, "s", "temperature", [24.0] * 10)
    c.tick(T0 + 9 * 60 + 1000)
    feed(c, "s", "temperature", [24.0], t0=T0 + 3000)
    for note in noted(c.drain(), "resolved"):
        assert_bilingual(note)


def test_anomaly_explained_by_rule_and_neighbour_agrees_notes():
    c = DetectorCore(locate=lambda *_: GZ)
    rng = np.random.default_rng(0)
    for s, lon in (("a", 113.33), ("b", 113.331)):
        feed(c, s, "bridge_strain", 120 + rng.normal(0, 5, 60), lon=lon)
    c.drain()
    t = T0 + 3600
    c.on_reading({"sensor_id": "a", "metric": "bridge_strain", "value": 900.0, "ts": t, "lon": 113.33, "lat": 23.13})
    c.on_reading({"sensor_id": "b", "metric": "bridge_strain", "value": 900.0, "ts": t + 30, "lon": 113.331, "lat": 23.13})
    for note in noted(c.drain(), "corroborated"):
        assert_bilingual(note)
    # readings normal again: the anomaly expires
    c.tick(t + 3 * 3600)
    for note in noted(c.drain(), "resolved"):
        assert_bilingual(note)


def test_fixed_notes_and_rule_titles():
    for note in (notes.READINGS_NORMAL, notes.FORECAST_BELOW, notes.REPORTING_AGAIN,
                 notes.sensor_agrees("wl-01"), notes.ponding_seen("cam-9")):
        assert_bilingual(note)
    for rule in load_rules():
        assert_bilingual(notes.cleared(rule.title_zh, rule.title_en))
        assert_bilingual(notes.explained(rule.title_zh, rule.title_en))


def test_every_configured_condition_has_a_zh_description():
    for rule in load_rules():
        for spec in (*rule.levels, *(s for o in rule.overrides.values() for s in o)):
            for c in spec.conditions:
                assert_bilingual(notes.both(c.describe_zh(), c.describe()))


@given(agg=st.sampled_from(AGGS), window=st.sampled_from([60.0, 600.0, 3600.0, 86400.0, 90.0]),
       op=st.sampled_from([">", ">=", "<", "<="]), thr=st.floats(-1e6, 1e6, allow_nan=False),
       hold=st.sampled_from([0.0, 300.0, 7200.0]))
def test_condition_zh_has_no_english(agg, window, op, thr, hold):
    text = notes.condition_zh(agg, window, op, thr, hold)
    assert not ENGLISH.search(text) and op in text


def test_notes_doctests():
    import doctest

    result = doctest.testmod(notes)
    assert result.attempted > 0 and result.failed == 0
