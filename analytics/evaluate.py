"""Offline evaluation: the simulator's incidents through the same detection core, scored.

``evaluate(seed=K, days=D)`` runs the simulator's pure generator (no Kafka, no database) over
stand-in counties, feeds every message through :class:`analytics.engine.DetectorCore` exactly as
the live detector does, and compares the alerts with the simulator's ground truth:

- an alert *matches* an incident when it concerns one of the incident's sensors, or when it is in
  one of the incident's counties with the incident's theme, and was first seen between the
  incident's start (less 10 min) and its end (plus 1 h); faults match only their own sensor;
- recall: incidents with at least one matching alert; precision: alerts matching an incident;
- false alarms per 100 sensor-days: alerts matching nothing, per 100 x sensors x days;
- lead time: the moment harm begins (the incident's first reading past its harm threshold, e.g.
  ponding above 15 cm per GB 51222-2017) minus the first matching alert; positive = warned before.
  ``median_lead_by_source_min`` gives it per alert source (``rule:…``, ``model:forecast/…``, …).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

from analytics.errors import AnalyticsError
from analytics.policy import load_policy

# Harm thresholds per incident type: (metric, comparison, value) — the moment the lead time ends
# (policy.yaml: harm).
HARM = load_policy().harm


def _cmp(op: str, x: float, thr: float) -> bool:
    return x > thr if op == ">" else x >= thr if op == ">=" else x < thr


def evaluate(*, seed: int, days: float = 1.0, sensors: int = 400, cameras: int = 80, interval_s: float = 60.0,
             start: datetime | None = None, train_days: float = 1.0, core_factory=None, counties=None) -> dict:
    """Run and score one simulated period; returns the JSON-ready report.

    With ``train_days`` > 0 the models are first trained, as `tongguan analytics train` would, on
    a history of that length simulated with another seed (``seed + 1000``, the days before), so
    the evaluated seed is never seen in training; with 0 the detectors run untrained.
    ``counties``: where the simulator places its devices (default: stand-in squares, no database).
    """

    from analytics.engine import DetectorCore
    from analytics.train import stand_in_counties
    from ingest import parse_message
    from ingest.simulator import Simulator

    if days <= 0 or sensors <= 0:
        raise AnalyticsError("days and sensors must be positive")
    start = start or datetime(2026, 6, 1, 0, 0, tzinfo=timezone(timedelta(hours=8)))  # a Monday
    sim = Simulator(seed=seed, counties=counties or stand_in_counties(), start=start, duration_s=days * 86400.0,
                    interval_s=interval_s, sensors=sensors, cameras=cameras)
    counties = sim.counties
    places = {}
    for i, sid in enumerate(sim.sensor_ids):
        c = counties[int(sim.s_county[i])]
        places[sid] = {"county": c.adcode, "city": c.city, "province": c.province, "grid_id": None}
    for i, cid in enumerate(sim.camera_ids):
        c = counties[int(sim.c_county[i])]
        places[cid] = {"county": c.adcode, "city": c.city, "province": c.province, "grid_id": None}

    def locate(device_id, lon, lat):
        return places.get(device_id, {"county": "", "city": "", "province": "", "grid_id": None})

    anomaly_models, forecasters, trained, surge = {}, {}, {}, None
    if train_days > 0:
        from analytics.train import simulated_history, train_models

        frames = simulated_history(seed=seed + 1000, days=train_days, sensors=sensors, interval_s=interval_s,
                                   cameras=cameras, start=start - timedelta(days=train_days))
        for (kind, metric, sensor), (model, info) in train_models(frames, per_sensor=False).items():
            if kind == "surge":
                surge = model
            else:
                (anomaly_models if kind == "anomaly" else forecasters)[(metric, sensor)] = (model, 1)
            trained[f"{kind}/{metric}"] = info
    core = (core_factory(locate) if core_factory else
            DetectorCore(locate=locate, anomaly_models=anomaly_models, forecasters=forecasters, surge=surge))
    truth = sim.incidents
    harm_watch = defaultdict(list)  # sensor -> [(incident index, op, thr)]
    for k, inc in enumerate(truth):
        if inc.type in HARM:
            metric, op, thr = HARM[inc.type]
            for sid in inc.sensor_ids:
                if sid.startswith(metric + "-"):
                    harm_watch[sid].append((k, op, thr))
    harm_t: dict[int, float] = {}
    now = (start + timedelta(days=days, hours=1)).timestamp()
    opened: dict[str, dict] = {}
    n_readings = 0
    last_tick = None

    def collect():
        for ch in core.drain():
            if ch.action == "opened":
                a = ch.alert
                opened[a.id] = {"t": a.first_seen, "subject": a.subject, "county": a.adcode, "theme": a.theme,
                                "level": a.level, "source": a.source, "kind": a.detail.get("kind"),
                                "component": a.detail.get("component"),
                                "detail": {k: a.detail.get(k) for k in ("value", "score", "components", "count",
                                                                       "expected", "minutes")
                                           if a.detail.get(k) is not None}}

    for msg in sim.iter_messages():
        parsed = parse_message(msg.value, now=now)
        for r in parsed.readings:
            t = r.ts.timestamp()
            core.on_reading({"sensor_id": r.sensor_id, "metric": r.metric, "value": r.value, "ts": t,
                             "lon": r.lon, "lat": r.lat})
            n_readings += 1
            for k, op, thr in harm_watch.get(r.sensor_id, ()):
                if k not in harm_t and truth[k].start.timestamp() <= t and _cmp(op, r.value, thr):
                    harm_t[k] = t
        for e in parsed.events:
            core.on_video({"camera_id": e.camera_id, "type": e.type, "ts": e.ts.timestamp(), "lon": e.lon,
                           "lat": e.lat, "count": e.count})
        if last_tick is None or core.now - last_tick >= 60:
            core.tick()
            last_tick = core.now
        collect()
    core.tick()
    collect()
    report = score(truth, opened, harm_t, sensors=sensors, days=days, seed=seed, n_readings=n_readings)
    report["trained_on"] = {"seed": seed + 1000, "days": train_days, "models": sorted(trained)} if trained else None
    return report


def _matches(inc, alert: dict) -> bool:
    t0, t1 = inc.start.timestamp() - 600, inc.end.timestamp() + 3600
    if not t0 <= alert["t"] <= t1:
        return False
    sensor = alert["subject"][7:] if alert["subject"].startswith("sensor:") else None
    if sensor is not None and sensor in inc.sensor_ids:
        return True
    if inc.detail.get("fault"):
        return False
    return alert["county"] in inc.counties and alert["theme"] == inc.theme


def score(truth, opened: dict, harm_t: dict, *, sensors: int, days: float, seed: int, n_readings: int) -> dict:
    by_type = defaultdict(lambda: {"incidents": 0, "detected": 0, "leads": [], "delays": [],
                                   "source_leads": defaultdict(list)})
    matched_alerts = set()
    for k, inc in enumerate(truth):
        kind = inc.type
        row = by_type[kind]
        row["incidents"] += 1
        hits = [(a["t"], aid) for aid, a in opened.items() if _matches(inc, a)]
        matched_alerts.update(aid for _, aid in hits)
        if hits:
            row["detected"] += 1
            first = min(hits)[0]
            row["delays"].append(first - inc.start.timestamp())
            if k in harm_t:
                row["leads"].append(harm_t[k] - first)
                # which sources warn, and how early: a rule, an anomaly model, a forecast (预警)
                firsts: dict[str, float] = {}
                for t, aid in hits:
                    family = opened[aid]["source"].split("@")[0]
                    firsts[family] = min(t, firsts.get(family, t))
                for family, t in firsts.items():
                    row["source_leads"][family].append(harm_t[k] - t)
    # alerts per theme that matched nothing, to see where false alarms come from
    false_by = defaultdict(int)
    examples = []
    for aid, a in opened.items():
        if aid not in matched_alerts:
            if len(examples) < 8:
                examples.append({"t": datetime.fromtimestamp(a["t"], UTC).isoformat(), "subject": a["subject"],
                                 "source": a["source"], "level": a.get("level"), **a.get("detail", {})})
            false_by[a["source"] + (f" ({a['component']})" if a.get("component") else "")] += 1
    sensor_days = sensors * days
    n_alerts = len(opened)
    n_false = n_alerts - len(matched_alerts)
    out = {"seed": seed, "days": days, "sensors": sensors, "readings": n_readings, "alerts": n_alerts,
           "types": {}}
    tot_inc = tot_det = 0
    for kind, row in sorted(by_type.items()):
        tot_inc += row["incidents"]
        tot_det += row["detected"]
        out["types"][kind] = {
            "incidents": row["incidents"], "detected": row["detected"],
            "recall": round(row["detected"] / row["incidents"], 3),
            "median_lead_min": round(statistics.median(row["leads"]) / 60, 1) if row["leads"] else None,
            "median_delay_after_onset_min": round(statistics.median(row["delays"]) / 60, 1) if row["delays"] else None,
            "median_lead_by_source_min": {f: round(statistics.median(v) / 60, 1)
                                          for f, v in sorted(row["source_leads"].items())},
        }
    out["overall"] = {
        "recall": round(tot_det / tot_inc, 3) if tot_inc else None,
        "precision": round(len(matched_alerts) / n_alerts, 3) if n_alerts else None,
        "false_alarms": n_false,
        "false_alarms_per_100_sensor_days": round(100 * n_false / sensor_days, 2),
        "false_alarm_sources": dict(sorted(false_by.items())),
        "false_alarm_examples": examples,
    }
    return out


def summarise(reports: list[dict]) -> dict:
    """Across seeds: pooled recall and false-alarm rate, and the spread of the per-seed figures."""
    inc = det = fa = 0
    sd = 0.0
    leads = defaultdict(list)
    for r in reports:
        for kind, row in r["types"].items():
            inc += row["incidents"]
            det += row["detected"]
            if row["median_lead_min"] is not None:
                leads[kind].append(row["median_lead_min"])
        fa += r["overall"]["false_alarms"]
        sd += r["sensors"] * r["days"]
    return {"seeds": [r["seed"] for r in reports], "recall": round(det / inc, 3) if inc else None,
            "false_alarms_per_100_sensor_days": round(100 * fa / sd, 2) if sd else None,
            "per_seed_recall": [r["overall"]["recall"] for r in reports],
            "per_seed_precision": [r["overall"]["precision"] for r in reports],
            "per_seed_false_alarms_per_100_sensor_days": [r["overall"]["false_alarms_per_100_sensor_days"]
                                                         for r in reports],
            "median_lead_min_by_type": {k: statistics.median(v) for k, v in sorted(leads.items())}}
