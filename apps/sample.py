"""Synthetic view data written straight into the ingest and alerts tables: for the apps' tests,
the screenshots and ``tongguan bench views`` — a realistic amount of rollups, sensors, cameras,
video events and alerts in seconds, without running the simulator and the workers.

It writes what the store worker and the alert engine would write (same tables, same columns);
the live product fills them from Kafka instead. Deterministic for a given seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from analytics import LEVELS, STATUSES
from apps.catalogue import ingest_catalogue


@dataclass
class SampleSpec:
    province: str = "440000"
    sensors_per_county: int = 12
    cameras_per_county: int = 4
    events_per_county: int = 30
    hours: int = 24
    minute_hours: int = 2          # minute rollups for the most recent hours
    series_every_min: int = 10     # raw readings of each sensor (the county series chart)
    alerts: int = 60
    seed: int = 7
    now: datetime | None = None


def seed(engine: sa.Engine, spec: SampleSpec | None = None) -> dict:
    """Write sample data for every county of ``spec.province``; returns row counts by table."""
    spec = spec or SampleSpec()
    rng = np.random.default_rng(spec.seed)
    now = (spec.now or datetime.now(UTC)).replace(second=0, microsecond=0)
    cat = ingest_catalogue()
    metrics = list(cat["metrics"])
    weights = np.array([cat["metrics"][m].get("sim", {}).get("weight", 1) for m in metrics], float)
    weights /= weights.sum()
    event_types = list(cat["video_event_types"])
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        counties = conn.execute(sa.text(
            "SELECT c.adcode, c.parent FROM regions c JOIN regions p ON p.adcode = c.parent "
            "WHERE c.level = 'county' AND p.parent = :prov ORDER BY c.adcode"), {"prov": spec.province}).all()
        if not counties:
            raise RuntimeError(f"no counties under {spec.province}: load regions first (tongguan geo load)")
        # Sensors and cameras at random points inside their county (PostGIS does the sampling).
        conn.execute(sa.text("""
            INSERT INTO sensors (sensor_id, metric, theme, geom, county, city, province, first_seen,
                                 last_seen, last_value)
            SELECT 's-' || c.adcode || '-' || lpad(d.path[1]::text, 4, '0'),
                   (CAST(:metrics AS text[]))[1 + (d.path[1] * 7 + ascii(right(c.adcode, 1))) % :nm],
                   (CAST(:themes AS text[]))[1 + (d.path[1] * 7 + ascii(right(c.adcode, 1))) % :nm],
                   d.geom, c.adcode, c.parent, :prov, :t0,
                   CASE WHEN (d.path[1] + ascii(right(c.adcode, 1))) % 9 = 0 THEN :now - interval '3 hours' ELSE :now END, 0
            FROM regions c
            JOIN regions p ON p.adcode = c.parent AND p.parent = :prov
            CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(c.geom, :n, :seed)) d
            WHERE c.level = 'county'
            ON CONFLICT (sensor_id) DO NOTHING"""),
            {"prov": spec.province, "n": spec.sensors_per_county, "seed": spec.seed,
             "t0": now - timedelta(days=7), "now": now, "metrics": metrics, "nm": len(metrics),
             "themes": [cat["metrics"][m]["theme"] for m in metrics]})
        conn.execute(sa.text("""
            INSERT INTO cameras (camera_id, geom, county, city, province, first_seen, last_seen)
            SELECT 'c-' || c.adcode || '-' || lpad(d.path[1]::text, 3, '0'), d.geom, c.adcode, c.parent,
                   :prov, :t0, :now
            FROM regions c JOIN regions p ON p.adcode = c.parent AND p.parent = :prov
            CROSS JOIN LATERAL ST_Dump(ST_GeneratePoints(c.geom, :n, :seed)) d
            WHERE c.level = 'county' ON CONFLICT (camera_id) DO NOTHING"""),
            {"prov": spec.province, "n": spec.cameras_per_county, "seed": spec.seed + 1,
             "t0": now - timedelta(days=7), "now": now})
        counts["sensors"] = conn.execute(sa.text("SELECT count(*) FROM sensors")).scalar()
        counts["cameras"] = conn.execute(sa.text("SELECT count(*) FROM cameras")).scalar()

        # County rollups per metric and hour / minute from a daily pattern with noise; the city and
        # province rows are aggregated from the county rows, as the store worker maintains them.
        counts.update(_rollups(conn, rng, counties, metrics, cat, now, spec))
        counts.update(_events(conn, rng, counties, event_types, cat, now, spec))
        counts["readings"] = _series(conn, now, spec)
        counts["alerts"] = _alerts(conn, rng, counties, now, spec)
    return counts


def _pattern(metric: str, cat: dict, hours: np.ndarray, rng) -> np.ndarray:
    sim = cat["metrics"][metric].get("sim", {})
    base, daily, noise = sim.get("base", 1.0), sim.get("daily", 0.0), sim.get("noise", 0.1)
    local = (hours + 8) % 24
    v = base + daily * np.sin((local - 8) / 24 * 2 * np.pi) + rng.normal(0, max(noise, 1e-3), hours.shape)
    info = cat["metrics"][metric]
    return np.clip(v, info["min"], info["max"])


def _rollups(conn, rng, counties, metrics, cat, now, spec) -> dict:
    hour0 = now.replace(minute=0) - timedelta(hours=spec.hours - 1)
    out = {}
    for res, step, n in (("hour", timedelta(hours=1), spec.hours),
                         ("minute", timedelta(minutes=1), spec.minute_hours * 60)):
        start = hour0 if res == "hour" else now - timedelta(minutes=n - 1)
        buckets = [start + i * step for i in range(n)]
        hours_f = np.array([b.hour + b.minute / 60 for b in buckets])
        rows = []
        for county, _city in counties:
            for m in metrics:
                vals = _pattern(m, cat, hours_f, rng)
                k = 60 if res == "hour" else 1
                cnt = rng.integers(k * 2, k * 6, size=n)
                for b, v, c in zip(buckets, vals, cnt):
                    spread = abs(v) * 0.05 + 0.01
                    rows.append({"a": county, "m": m, "b": b, "n": int(c), "lo": float(v - spread),
                                 "hi": float(v + spread), "s": float(v * c), "last": float(v), "lt": b})
        table = f"reading_rollups_{res}"
        conn.execute(sa.text(
            f"INSERT INTO {table} (adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts) "
            "VALUES (:a, :m, :b, :n, :lo, :hi, :s, :last, :lt) ON CONFLICT DO NOTHING"), rows)
        roll_up_counties(conn, table)
        out[table] = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
    return out


def roll_up_counties(conn, table: str, since: datetime | None = None) -> None:
    """City and province rows of a reading rollup ``table`` aggregated from its county rows
    (from ``since`` on), as the store worker keeps them."""
    for parent in ("city", "province"):
        conn.execute(sa.text(f"""
            INSERT INTO {table} (adcode, metric, bucket, n, vmin, vmax, vsum, last_value, last_ts)
            SELECT r.{parent}, x.metric, x.bucket, sum(x.n), min(x.vmin), max(x.vmax), sum(x.vsum),
                   avg(x.last_value), max(x.last_ts)
            FROM {table} x JOIN (SELECT c.adcode AS county, c.parent AS city, p.parent AS province
                                 FROM regions c JOIN regions p ON p.adcode = c.parent
                                 WHERE c.level = 'county') r
              ON r.county = x.adcode
            WHERE x.bucket >= CAST(:since AS timestamptz) OR CAST(:since AS timestamptz) IS NULL
            GROUP BY 1, 2, 3 ON CONFLICT DO NOTHING"""), {"since": since})


def _events(conn, rng, counties, event_types, cat, now, spec) -> dict:
    rows = []
    for county, city in counties:
        n = int(rng.poisson(spec.events_per_county * (3 if city in ("440100", "440300") else 1)))
        for i in range(n):
            etype = event_types[int(rng.integers(len(event_types)))]
            ts = now - timedelta(seconds=float(rng.uniform(0, spec.hours * 3600)))
            rows.append({"id": f"ve-{county}-{i}", "cam": f"c-{county}-{1 + i % spec.cameras_per_county:03d}",
                         "type": etype, "theme": cat["video_event_types"][etype]["theme"],
                         "conf": float(rng.uniform(0.6, 0.99)), "ts": ts, "county": county})
    if rows:
        conn.execute(sa.text("""
            INSERT INTO video_events (event_id, camera_id, type, theme, confidence, ts, county, city,
                                      province, grid_id, geom, src_topic, src_partition, src_offset, ingested_at)
            SELECT :id, c.camera_id, :type, :theme, :conf, :ts, c.county, c.city, c.province,
                   (SELECT g.grid_id FROM grid_cells g WHERE g.county = c.county
                      AND ST_Intersects(g.geom, c.geom) LIMIT 1),
                   ST_Translate(c.geom, (random() - 0.5) * 0.004, (random() - 0.5) * 0.004),
                   'sample', 0, 0, now()
            FROM cameras c WHERE c.camera_id = :cam ON CONFLICT DO NOTHING"""), rows)
    for res, trunc in (("hour", "hour"), ("minute", "minute")):
        for col in ("county", "city", "province"):
            conn.execute(sa.text(f"""
                INSERT INTO video_rollups_{res} (adcode, type, bucket, n, count_sum, max_confidence, last_ts)
                SELECT {col}, type, date_trunc('{trunc}', ts), count(*), count(*), max(confidence), max(ts)
                FROM video_events GROUP BY 1, 2, 3
                ON CONFLICT (adcode, type, bucket) DO UPDATE SET n = EXCLUDED.n, count_sum = EXCLUDED.count_sum"""))
    return {"video_events": conn.execute(sa.text("SELECT count(*) FROM video_events")).scalar()}


def _series(conn, now, spec) -> int:
    """Raw readings for the sensors (the county view's single-sensor chart)."""
    start = now - timedelta(hours=spec.hours)
    conn.execute(sa.text("SELECT ingest_ensure_readings_partitions(CAST(:a AS date), CAST(:b AS date))"),
                 {"a": (start - timedelta(days=1)).date(), "b": (now + timedelta(days=1)).date()})
    conn.execute(sa.text(f"""
        INSERT INTO readings (ts, event_id, sensor_id, metric, value, county, city, province, geom,
                              src_topic, src_partition, src_offset, ingested_at)
        SELECT t, s.sensor_id || '-' || extract(epoch FROM t)::bigint, s.sensor_id, s.metric,
               r.last_value + (r.vmax - r.vmin) * (random() - 0.5),
               s.county, s.city, s.province, s.geom, 'sample', 0, 0, now()
        FROM sensors s
        CROSS JOIN generate_series(CAST(:start AS timestamptz), CAST(:now AS timestamptz),
                                   interval '{int(spec.series_every_min)} minutes') t
        JOIN reading_rollups_hour r ON r.adcode = s.county AND r.metric = s.metric
                                   AND r.bucket = date_trunc('hour', t)
        ON CONFLICT DO NOTHING"""), {"start": start, "now": now})
    conn.execute(sa.text("""
        UPDATE sensors s SET last_value = r.value FROM (
            SELECT DISTINCT ON (sensor_id) sensor_id, value FROM readings ORDER BY sensor_id, ts DESC) r
        WHERE r.sensor_id = s.sensor_id"""))
    return conn.execute(sa.text("SELECT count(*) FROM readings")).scalar()


TITLES = {"flood": ("道路积水预警", "Road ponding warning"), "air": ("空气质量预警", "Air quality warning"),
          "traffic": ("交通拥堵预警", "Traffic congestion warning"),
          "lifeline": ("燃气泄漏预警", "Gas leak warning"), "safety": ("人员聚集预警", "Crowd warning"),
          "citymgmt": ("城市管理事件", "City management event")}


ALERT_COLUMNS = ("id", "dedupe_key", "source", "level", "theme", "title", "detail", "subject", "adcode", "city",
                 "province", "first_seen", "last_seen", "count", "status")


def _alerts(conn, rng, counties, now, spec) -> int:
    """Open and handled alerts, concentrated in a few cities (a storm over Guangzhou)."""
    themes = list(TITLES)
    hot = [c for c in counties if c[1] in ("440100", "440300", "441900", "440600")]
    statuses = ["open"] * 6 + [s for s in STATUSES if s != "open"]
    n = 0
    for i in range(spec.alerts):
        county, city = hot[int(rng.integers(len(hot)))] if rng.random() < 0.7 else counties[int(rng.integers(len(counties)))]
        level = LEVELS[min(3, int(rng.choice(4, p=[0.4, 0.3, 0.2, 0.1])))]
        theme = "flood" if rng.random() < 0.4 else themes[int(rng.integers(len(themes)))]
        first = now - timedelta(minutes=float(rng.uniform(1, spec.hours * 60)))
        sensor = conn.execute(sa.text(
            "SELECT sensor_id, ST_X(geom), ST_Y(geom) FROM sensors WHERE county = :c AND theme = :t LIMIT 1"),
            {"c": county, "t": theme}).first() or conn.execute(sa.text(
                "SELECT sensor_id, ST_X(geom), ST_Y(geom) FROM sensors WHERE county = :c LIMIT 1"), {"c": county}).first()
        row = {"id": f"sample-{spec.seed}-{i:04d}", "source": "rule:sample", "level": level, "theme": theme,
               "title": TITLES[theme][0], "detail": "{}", "adcode": county, "city": city,
               "province": spec.province, "first_seen": first,
               "last_seen": min(now, first + timedelta(minutes=float(rng.uniform(0, 90)))),
               "count": int(rng.integers(1, 20)), "status": statuses[int(rng.integers(len(statuses)))],
               "dedupe_key": f"sample-{spec.seed}-{i:04d}",
               "subject": f"sensor:{sensor[0]}" if sensor else f"region:{county}",
               "lon": sensor[1] if sensor else 113.3,
               "lat": sensor[2] if sensor else 23.1}
        conn.execute(sa.text(
            f"INSERT INTO alerts ({', '.join(ALERT_COLUMNS)}, geom) "
            f"VALUES ({', '.join(':' + c for c in ALERT_COLUMNS)}, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)) "
            "ON CONFLICT DO NOTHING"), row)
        n += 1
        # Red and some orange open alerts are escalated to the city (the escalation rule's effect).
        if (row["status"] == "open"
                and (level == "red" or (level == "orange" and i % 2 == 0))):
            conn.execute(sa.text(
                "INSERT INTO alert_handling (alert_id, owner_region, visible_at, escalated_at, escalation_reason) "
                "VALUES (:id, :county, :city, :at, :why) ON CONFLICT (alert_id) DO UPDATE SET "
                "visible_at = EXCLUDED.visible_at, escalated_at = EXCLUDED.escalated_at, "
                "escalation_reason = EXCLUDED.escalation_reason"),
                {"id": row["id"], "county": county, "city": city, "why": f"sample: {level}",
                 "at": row["first_seen"] + timedelta(minutes=10)})
    return n
