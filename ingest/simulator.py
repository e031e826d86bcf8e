"""A deterministic city simulator: sensors and cameras in real counties, incidents with ground truth.

``Simulator(seed=..., counties=...).iter_messages()`` is a pure generator (no Kafka, no clock):
the same seed and parameters give byte-identical messages, so the analytics engineer can build
training and evaluation sets offline, and the ground truth (``simulator.incidents``) says what
really happened. ``produce()`` sends the stream to Kafka (keyed by sensor, gateway or camera id),
``write_jsonl()`` to a file that ``replay()`` re-produces.

What is simulated
- sensors of every catalogue metric, placed uniformly inside county polygons, counties weighted
  (Guangzhou and Shenzhen densest, then the other big cities); half of them report through
  gateways (``readings/1`` batches), the others alone (``reading/1``);
- daily (local time, UTC+8) and weekly patterns (traffic peaks at 08:00 and 18:00, lighter
  weekends), Gaussian noise;
- sensor faults: stuck value, spikes, drop-outs (ground truth rows of type ``fault_*``);
- incidents: a rainstorm crossing several neighbouring counties (rainfall first, then water level
  and ponding depth with a lag, then ``road_ponding`` video events), a gas leak, a traffic jam
  (with a ``traffic_accident`` event), a crowd building up at a venue (``crowd_gathering`` events
  with growing counts); background city-management events (parking, vending, garbage).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import numpy as np
import orjson

from ingest.catalogue import Catalogue, load_catalogue
from ingest.errors import IngestError

log = logging.getLogger(__name__)

LOCAL = timezone(timedelta(hours=8))
# Relative density of devices per county, by city (everything else: 1).
CITY_WEIGHTS = {"440100": 8.0, "440300": 8.0, "440600": 3.0, "441900": 3.0, "440400": 2.0,
                "350200": 3.0, "350100": 3.0}
GATEWAY_SIZE = 25


@dataclass(frozen=True)
class County:
    adcode: str
    city: str
    province: str
    geom: object  # shapely (Multi)Polygon, lon/lat


@dataclass(frozen=True)
class Message:
    """One Kafka message of the stream; ``topic`` is ``readings`` or ``video``."""

    topic: str
    key: str
    value: bytes
    ts: datetime


@dataclass
class Incident:
    incident_id: str
    type: str
    theme: str
    counties: list[str]
    start: datetime
    end: datetime
    sensor_ids: list[str] = field(default_factory=list)
    camera_ids: list[str] = field(default_factory=list)
    detail: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        d = asdict(self)
        d["start"], d["end"] = self.start.isoformat(), self.end.isoformat()
        return d


def counties_from_db(engine, provinces: tuple[str, ...] | None = None) -> list[County]:
    """County polygons from the ``regions`` table (loaded by ``tongguan geo load``)."""
    import shapely
    import sqlalchemy as sa

    sql = """SELECT c.adcode, c.parent, p.parent, ST_AsBinary(c.geom)
             FROM regions c JOIN regions p ON p.adcode = c.parent
             WHERE c.level = 'county' ORDER BY c.adcode"""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql)).fetchall()
    out = [County(r[0].strip(), r[1].strip(), (r[2] or "").strip(), shapely.from_wkb(bytes(r[3])))
           for r in rows if provinces is None or (r[2] or "").strip() in provinces]
    if not out:
        raise IngestError("no counties in the regions table; load them first with `tongguan geo load`")
    return out


def _uid(*parts) -> str:
    return str(uuid.UUID(bytes=hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).digest()))


def _ts(t: datetime) -> str:
    return t.astimezone(LOCAL).isoformat(timespec="milliseconds")


class Simulator:
    """Deterministic per ``seed`` (and the other parameters); see the module docstring."""

    def __init__(self, *, seed: int = 0, counties: list[County], start: datetime,
                 duration_s: float = 3600.0, interval_s: float = 60.0, sensors: int = 2000, cameras: int = 300,
                 gateway_share: float = 0.5, incidents: bool = True, faults: bool = True,
                 catalogue: Catalogue | None = None, episode: int = 0):
        if start.tzinfo is None:
            raise IngestError("the simulation start needs a UTC offset, e.g. 2026-11-23T08:00:00+08:00")
        if interval_s <= 0 or duration_s <= 0:
            raise IngestError("interval and duration must be positive")
        self.seed = int(seed)
        self.start = start
        self.duration_s = float(duration_s)
        self.interval_s = float(interval_s)
        self.cat = catalogue or load_catalogue()
        self.counties = sorted(counties, key=lambda c: c.adcode)
        self.episode = int(episode)
        # Placement depends on the seed only, so consecutive episodes of a continuous run keep
        # the same devices; incidents, faults and noise differ per episode.
        self.rng = np.random.default_rng(self.seed)
        self._place(sensors, cameras, gateway_share)
        if self.episode:
            self.rng = np.random.default_rng([self.seed, 1000 + self.episode])
        self.incidents: list[Incident] = []
        self._effects: list[tuple] = []  # (kind, sensor index array, t0, t1, params)
        self._video_plan: list[tuple] = []  # (t, camera index, type, confidence, count, incident_id)
        if incidents:
            self._plan_incidents()
        if faults:
            self._plan_faults()
        self._plan_background_video()

    # -- placement -------------------------------------------------------------------------
    def _points_in(self, county: County, n: int) -> np.ndarray:
        import shapely

        minx, miny, maxx, maxy = county.geom.bounds
        pts: list = []
        shapely.prepare(county.geom)
        while len(pts) < n:
            k = max(8, 2 * (n - len(pts)))
            xs = self.rng.uniform(minx, maxx, k)
            ys = self.rng.uniform(miny, maxy, k)
            inside = shapely.contains_xy(county.geom, xs, ys)
            pts.extend(zip(xs[inside], ys[inside]))
        return np.round(np.array(pts[:n]), 6)

    def _place(self, n_sensors: int, n_cameras: int, gateway_share: float) -> None:
        w = np.array([CITY_WEIGHTS.get(c.city, 1.0) for c in self.counties])
        w = w / w.sum()
        metrics = list(self.cat.metrics)
        mw = np.array([self.cat.metrics[m].sim.get("weight", 1) for m in metrics], dtype=float)
        mw /= mw.sum()
        s_county = self.rng.choice(len(self.counties), size=n_sensors, p=w)
        s_metric = self.rng.choice(len(metrics), size=n_sensors, p=mw)
        c_county = self.rng.choice(len(self.counties), size=n_cameras, p=w)
        lon = np.zeros(n_sensors)
        lat = np.zeros(n_sensors)
        for ci in np.unique(s_county):
            idx = np.flatnonzero(s_county == ci)
            p = self._points_in(self.counties[ci], len(idx))
            lon[idx], lat[idx] = p[:, 0], p[:, 1]
        clon = np.zeros(n_cameras)
        clat = np.zeros(n_cameras)
        for ci in np.unique(c_county):
            idx = np.flatnonzero(c_county == ci)
            p = self._points_in(self.counties[ci], len(idx))
            clon[idx], clat[idx] = p[:, 0], p[:, 1]
        self.s_county = s_county
        self.s_metric = np.array([metrics[i] for i in s_metric])
        self.s_lon, self.s_lat = lon, lat
        self.sensor_ids = [f"{self.s_metric[i]}-{self.counties[s_county[i]].adcode}-{i:05d}" for i in range(n_sensors)]
        self.s_phase = self.rng.uniform(0, self.interval_s, n_sensors)
        sim = [self.cat.metrics[m].sim for m in self.s_metric]
        self.s_base = np.array([s.get("base", 0.0) for s in sim]) * self.rng.uniform(0.85, 1.15, n_sensors)
        self.s_daily = np.array([s.get("daily", 0.0) for s in sim])
        self.s_noise = np.array([s.get("noise", 0.0) for s in sim])
        self.s_min = np.array([self.cat.metrics[m].min for m in self.s_metric])
        self.s_max = np.array([self.cat.metrics[m].max for m in self.s_metric])
        self.s_traffic = np.array([self.cat.metrics[m].theme == "traffic" for m in self.s_metric])
        # Gateways: per county, a share of its sensors grouped by GATEWAY_SIZE.
        self.s_gateway = np.full(n_sensors, -1)
        self.gateways: list[str] = []
        behind = self.rng.random(n_sensors) < gateway_share
        for ci in np.unique(s_county):
            idx = np.flatnonzero((s_county == ci) & behind)
            for j in range(0, len(idx), GATEWAY_SIZE):
                self.s_gateway[idx[j:j + GATEWAY_SIZE]] = len(self.gateways)
                self.gateways.append(f"gw-{self.counties[ci].adcode}-{len(self.gateways):04d}")
        self.c_county = c_county
        self.c_lon, self.c_lat = clon, clat
        self.camera_ids = [f"cam-{self.counties[c_county[i]].adcode}-{i:04d}" for i in range(n_cameras)]

    # -- planning --------------------------------------------------------------------------
    def _at(self, frac: float) -> float:
        return self.duration_s * frac

    def _sensors(self, counties: list[int], metrics: tuple[str, ...]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.s_county, counties) & np.isin(self.s_metric, metrics))

    def _cameras(self, counties: list[int]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.c_county, counties))

    def _incident(self, kind: str, theme: str, counties: list[int], t0: float, t1: float, sensors, cameras,
                  **detail) -> Incident:
        ep = f"e{self.episode}-" if self.episode else ""
        inc = Incident(f"sim-{self.seed}-{ep}{len(self.incidents):03d}-{kind}", kind, theme,
                       [self.counties[c].adcode for c in counties],
                       self.start + timedelta(seconds=t0), self.start + timedelta(seconds=t1),
                       sorted(self.sensor_ids[i] for i in sensors), sorted(self.camera_ids[i] for i in cameras),
                       detail)
        self.incidents.append(inc)
        return inc

    def _busy_county(self) -> int:
        """A county with many devices (deterministic given the rng state)."""
        counts = np.bincount(self.s_county, minlength=len(self.counties))
        top = np.argsort(-counts, kind="stable")[:8]
        return int(self.rng.choice(top))

    def _plan_incidents(self) -> None:
        rng = self.rng
        cent = np.array([[c.geom.centroid.x, c.geom.centroid.y] for c in self.counties])
        # Rainstorm: a path of neighbouring counties, hit one after another.
        first = self._busy_county()
        order = np.argsort(np.hypot(*(cent - cent[first]).T), kind="stable")[:4]
        path = [int(c) for c in order]
        t0, step, dur = self._at(0.15), self._at(0.08), self._at(0.30)
        lag = self._at(0.05)
        rain_s, flood_s, cams = [], [], []
        inc = self._incident("rainstorm", "flood", path, t0, t0 + step * (len(path) - 1) + dur + lag,
                             [], [], peak_mm_h=float(round(rng.uniform(50, 90), 1)), lag_s=lag)
        for k, ci in enumerate(path):
            a = t0 + k * step
            rs = self._sensors([ci], ("rainfall",))
            fs = self._sensors([ci], ("water_level", "ponding_depth"))
            self._effects.append(("rain", rs, a, a + dur, {"peak": inc.detail["peak_mm_h"]}))
            self._effects.append(("flood", fs, a + lag, a + dur + lag, {}))
            rain_s += list(rs)
            flood_s += list(fs)
            cc = self._cameras([ci])
            for j, cam in enumerate(cc[:3]):
                t = a + lag + dur * (0.2 + 0.1 * j)
                self._video_plan.append((t, int(cam), "road_ponding", 0.9, None, inc.incident_id))
            cams += list(cc[:3])
        inc.sensor_ids = sorted(self.sensor_ids[i] for i in rain_s + flood_s)
        inc.camera_ids = sorted(self.camera_ids[i] for i in cams)
        # Gas leak: one gas sensor ramps up.
        gas = np.flatnonzero(self.s_metric == "gas_lel")
        if len(gas):
            g = int(rng.choice(gas))
            a, b = self._at(0.45), self._at(0.65)
            self._effects.append(("gas", np.array([g]), a, b, {"peak": float(round(rng.uniform(25, 60), 1))}))
            self._incident("gas_leak", "lifeline", [int(self.s_county[g])], a, b, [g], [])
        # Traffic jam in a busy county, starting with an accident.
        ci = self._busy_county()
        ts = self._sensors([ci], ("traffic_speed", "traffic_flow"))
        a, b = self._at(0.55), self._at(0.75)
        self._effects.append(("jam", ts, a, b, {}))
        cc = self._cameras([ci])[:1]
        for cam in cc:
            self._video_plan.append((a + 1, int(cam), "traffic_accident", 0.95, 2, None))
        inc = self._incident("traffic_jam", "traffic", [ci], a, b, ts, cc)
        self._video_plan = [(t, c, ty, cf, n, inc.incident_id if ty == "traffic_accident" and iid is None and c in cc
                             else iid) for (t, c, ty, cf, n, iid) in self._video_plan]
        # Crowd building up at a venue.
        ci = self._busy_county()
        cs = self._sensors([ci], ("crowd_density",))
        cc = self._cameras([ci])[:2]
        a, b = self._at(0.70), self._at(0.90)
        self._effects.append(("crowd", cs, a, b, {}))
        inc = self._incident("crowd", "safety", [ci], a, b, cs, cc, venue=f"venue-{self.counties[ci].adcode}")
        for j in range(6):
            t = a + (b - a) * (j + 1) / 7
            for cam in cc:
                self._video_plan.append((t, int(cam), "crowd_gathering", 0.8 + 0.02 * j, 50 * (j + 1),
                                         inc.incident_id))

    def _plan_faults(self) -> None:
        n = len(self.sensor_ids)
        k = max(1, n // 200)
        for kind in ("stuck", "spike", "dropout"):
            for s in self.rng.choice(n, size=k, replace=False):
                a = self._at(float(self.rng.uniform(0.05, 0.8)))
                b = a + self._at(0.01 if kind == "spike" else 0.1)
                self._effects.append((kind, np.array([s]), a, b, {}))
                self._incident(f"fault_{kind}", self.cat.metrics[self.s_metric[s]].theme,
                               [int(self.s_county[s])], a, b, [s], [], fault=True)

    def _plan_background_video(self) -> None:
        n = len(self.camera_ids)
        expected = n * self.duration_s / 3600.0 * 0.5  # about one event per camera every 2 h
        k = int(self.rng.poisson(expected)) if n else 0
        types = ("illegal_parking", "street_vending", "garbage_overflow", "fire_smoke")
        pt = np.array([0.5, 0.25, 0.22, 0.03])
        for _ in range(k):
            self._video_plan.append((float(self.rng.uniform(0, self.duration_s)), int(self.rng.integers(n)),
                                     types[int(self.rng.choice(4, p=pt))], float(round(self.rng.uniform(0.6, 0.99), 2)),
                                     None, None))
        self._video_plan.sort(key=lambda v: (v[0], v[1], v[2]))

    # -- values ----------------------------------------------------------------------------
    def _values(self, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Values of every sensor at sim offsets ``t`` (seconds), and a mask of who reports."""
        abs_t = self.start.timestamp() + t
        hour = ((abs_t / 3600.0) + 8) % 24  # local time
        dow = ((abs_t / 86400.0 + 8 / 24 + 3) % 7).astype(int)  # 0 = Monday (epoch was a Thursday)
        day = np.sin(2 * np.pi * (hour - 8) / 24)
        rush = np.exp(-((hour - 8) ** 2) / 2) + np.exp(-((hour - 18) ** 2) / 2)
        pattern = np.where(self.s_traffic, rush, day)
        weekend = np.where(self.s_traffic & (dow >= 5), 0.8, 1.0)
        v = (self.s_base + self.s_daily * pattern) * weekend + rng.normal(0, 1, len(t)) * self.s_noise
        report = np.ones(len(t), dtype=bool)
        for kind, idx, a, b, prm in self._effects:
            if not len(idx):
                continue
            tt = t[idx]
            on = (tt >= a) & (tt < b)
            if not on.any():
                continue
            sel = idx[on]
            x = (tt[on] - a) / max(b - a, 1e-9)  # progress 0..1
            bump = np.sin(np.pi * x)  # rise and fall
            m = self.s_metric[sel]
            if kind == "rain":
                v[sel] += prm["peak"] * bump
            elif kind == "flood":
                v[sel] += np.where(m == "water_level", 1.8, 35.0) * bump
            elif kind == "gas":
                v[sel] = prm["peak"] * np.minimum(1.0, 2 * x)
            elif kind == "jam":
                v[sel] = np.where(m == "traffic_speed", 6 + 3 * (1 - bump), v[sel] * (1 - 0.6 * bump))
            elif kind == "crowd":
                v[sel] += 5.0 * np.minimum(1.0, 1.5 * x)
            elif kind == "stuck":
                v[sel] = np.round(self.s_base[sel], 2)
            elif kind == "spike":
                v[sel] += (self.s_max[sel] - self.s_base[sel]) * 0.7
            elif kind == "dropout":
                report[sel] = False
        return np.clip(v, self.s_min, self.s_max), report

    # -- the stream ------------------------------------------------------------------------
    def iter_messages(self) -> Iterator[Message]:
        """The whole stream in simulated-time order of ticks (pure: no clock, no Kafka)."""
        n_ticks = max(1, int(math.ceil(self.duration_s / self.interval_s)))
        units = [self.cat.metrics[m].unit for m in self.s_metric]
        vplan = self._video_plan
        vi = 0
        singles = np.flatnonzero(self.s_gateway < 0)
        singles = singles[np.argsort(self.s_phase[singles], kind="stable")]  # time order within a tick
        by_gw: dict[int, list[int]] = {}
        for i in np.flatnonzero(self.s_gateway >= 0):
            by_gw.setdefault(int(self.s_gateway[i]), []).append(int(i))
        start_epoch = self.start.timestamp()
        noise = np.random.default_rng([self.seed, 1, self.episode])  # own stream: iterating twice gives the same
        for k in range(n_ticks):
            t = k * self.interval_s + self.s_phase
            values, report = self._values(t, noise)
            tick_end = (k + 1) * self.interval_s
            while vi < len(vplan) and vplan[vi][0] < tick_end:
                yield self._video(vplan[vi])
                vi += 1

            def reading(i: int) -> dict:
                ts = datetime.fromtimestamp(start_epoch + float(t[i]), tz=timezone.utc)
                return {"schema": "reading/1", "event_id": _uid(self.seed, start_epoch, i, k),
                        "sensor_id": self.sensor_ids[i], "metric": self.s_metric[i],
                        "value": round(float(values[i]), 3), "unit": units[i], "ts": _ts(ts),
                        "lon": float(self.s_lon[i]), "lat": float(self.s_lat[i])}

            def at(i: int) -> datetime:
                return self.start + timedelta(seconds=float(t[i]))

            for i in singles:
                if t[i] < self.duration_s and report[i]:
                    yield Message("readings", self.sensor_ids[i], orjson.dumps(reading(int(i))), at(i))
            for g, members in by_gw.items():
                live = [i for i in members if t[i] < self.duration_s and report[i]]
                if live:
                    rs = [reading(i) for i in live]
                    for r in rs:
                        del r["schema"]
                    # A gateway sends its batch once its last reading is taken.
                    yield Message("readings", self.gateways[g], orjson.dumps(
                        {"schema": "readings/1", "gateway_id": self.gateways[g], "readings": rs}),
                        at(max(live, key=lambda i: t[i])))
        while vi < len(vplan):
            if vplan[vi][0] < self.duration_s:
                yield self._video(vplan[vi])
            vi += 1

    def _video(self, plan: tuple) -> Message:
        t, cam, etype, conf, count, incident_id = plan
        ts = self.start + timedelta(seconds=t)
        ev = {"schema": "video_event/1", "event_id": _uid(self.seed, self.start.timestamp(), "v", t, cam, etype),
              "camera_id": self.camera_ids[cam], "type": etype, "confidence": conf, "ts": _ts(ts),
              "lon": float(self.c_lon[cam]), "lat": float(self.c_lat[cam])}
        if count is not None:
            ev["count"] = int(count)
        h = int(hashlib.blake2b(f"{self.seed}{t}{cam}".encode(), digest_size=4).hexdigest(), 16)
        if etype in ("illegal_parking", "traffic_accident"):
            ev["attributes"] = {"plate": f"粤{'ABS'[h % 3]}{h % 100000:05d}", "vehicle_colour": "white"}
        elif etype == "crowd_gathering":
            ev["attributes"] = {"person_id": f"p{h % 10**8:08d}", "direction": "in"}
        elif etype == "street_vending":
            ev["attributes"] = {"note": f"vendor phone 13{h % 10**9:09d}"}
        if incident_id:
            ev["snapshot_uri"] = f"sim://{incident_id}/{self.camera_ids[cam]}/{int(t)}.jpg"
        return Message("video", self.camera_ids[cam], orjson.dumps(ev), ts)

    def truth(self) -> list[dict]:
        return [i.as_json() for i in self.incidents]


# -- outputs ---------------------------------------------------------------------------------
def write_truth(engine, sim: Simulator) -> int:
    """Ground truth into ``sim_incidents`` (replacing this seed's earlier rows of the same ids)."""
    import sqlalchemy as sa

    from ingest.models import sim_incidents

    rows = [dict(incident_id=i.incident_id, type=i.type, theme=i.theme, seed=sim.seed, counties=i.counties,
                 start_ts=i.start, end_ts=i.end, sensor_ids=i.sensor_ids, camera_ids=i.camera_ids, detail=i.detail)
            for i in sim.incidents]
    with engine.begin() as conn:
        if rows:
            conn.execute(sa.delete(sim_incidents).where(sim_incidents.c.incident_id.in_([r["incident_id"] for r in rows])))
            conn.execute(sa.insert(sim_incidents), rows)
    return len(rows)


def write_jsonl(messages, path: str | Path) -> int:
    """The stream as JSON lines: {"topic": "readings"|"video", "key": ..., "value": <message text>}."""
    n = 0
    with open(path, "wb") as f:
        for m in messages:
            f.write(orjson.dumps({"topic": m.topic, "key": m.key, "value": m.value.decode()}) + b"\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[Message]:
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise IngestError(f"cannot read the replay file {path}: {exc}") from exc
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
                yield Message(d["topic"], d["key"], d["value"].encode(), datetime.now(timezone.utc))
            except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
                raise IngestError(f"{path}:{lineno}: not a line written by `tongguan simulate --output` ({exc})") from exc


def make_producer(bootstrap: str):
    from kafka import KafkaProducer

    return KafkaProducer(bootstrap_servers=bootstrap, client_id="tongguan-simulator", acks=1,
                         linger_ms=20, batch_size=512 * 1024, max_request_size=8 * 1024 * 1024)


def produce(messages, settings, *, rate: float | None = None, producer=None, live: bool = False) -> int:
    """Send ``messages`` to Kafka keyed by device id, paced at ``rate`` messages/s (None: flat out).

    ``live``: never send a message before its simulated time (a continuous run catches up with
    the clock, then follows it), so no reading is ever in the future.
    """
    topics = {"readings": settings.topic("readings"), "video": settings.topic("video")}
    own = producer is None
    producer = producer or make_producer(settings.kafka_bootstrap)
    t0 = time.monotonic()
    n = sent = 0
    try:
        for m in messages:
            if live:
                wait = (m.ts - datetime.now(timezone.utc)).total_seconds()
                if wait > 0:
                    producer.flush(timeout=120)
                    time.sleep(wait)
                    t0, n = time.monotonic(), 0  # the rate applies from here, no burst to catch up
            producer.send(topics[m.topic], key=m.key.encode(), value=m.value)
            n += 1
            sent += 1
            if rate and n % 100 == 0:
                ahead = n / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(timeout=120)
    finally:
        if own:
            producer.close()
    return sent
