"""`tongguan analytics evaluate`: the simulator's incidents through the detection core, scored."""

import json
from datetime import UTC

from analytics.evaluate import score, summarise
from tongguan.cli import main


def test_evaluate_small_run_reports_every_incident_type(capsys):
    assert main(["analytics", "evaluate", "--seed", "7", "--days", "0.1", "--sensors", "80", "--cameras", "20",
                 "--train-days", "0"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert {"rainstorm", "gas_leak", "traffic_jam", "crowd", "fault_spike"} <= set(r["types"])
    o = r["overall"]
    assert 0 <= o["recall"] <= 1 and 0 <= o["precision"] <= 1 and o["false_alarms_per_100_sensor_days"] >= 0
    assert r["types"]["gas_leak"]["recall"] == 1.0  # a single gas sensor ramping past 20 %LEL
    assert r["trained_on"] is None and r["readings"] > 10_000


def test_scoring_counts_matches_false_alarms_and_leads():
    from datetime import datetime

    class Inc:
        def __init__(self, type_, sensors, counties, theme, start, end, fault=False):
            self.type, self.sensor_ids, self.counties, self.theme = type_, sensors, counties, theme
            self.start = datetime.fromtimestamp(start, UTC)
            self.end = datetime.fromtimestamp(end, UTC)
            self.detail = {"fault": True} if fault else {}

    truth = [Inc("rainstorm", ["p1"], ["440106"], "flood", 1000, 9000),
             Inc("fault_stuck", ["x9"], ["440106"], "air", 1000, 5000, fault=True)]
    opened = {"a": {"t": 2000, "subject": "sensor:r7", "county": "440106", "theme": "flood", "source": "rule:rainstorm"},
              "b": {"t": 3000, "subject": "sensor:x8", "county": "440106", "theme": "air", "source": "model:anomaly"},
              "c": {"t": 99999, "subject": "sensor:p1", "county": "440106", "theme": "flood", "source": "rule:ponding"}}
    r = score(truth, opened, {0: 2600.0}, sensors=10, days=1.0, seed=0, n_readings=1)
    assert r["types"]["rainstorm"] == {"incidents": 1, "detected": 1, "recall": 1.0, "median_lead_min": 10.0,
                                       "median_delay_after_onset_min": 16.7,
                                       "median_lead_by_source_min": {"rule:rainstorm": 10.0}}
    assert r["types"]["fault_stuck"]["recall"] == 0.0  # a fault matches only its own sensor
    assert r["overall"]["false_alarms"] == 2 and r["overall"]["false_alarms_per_100_sensor_days"] == 20.0
    s = summarise([r, r])
    assert s["recall"] == 0.5 and s["false_alarms_per_100_sensor_days"] == 20.0
