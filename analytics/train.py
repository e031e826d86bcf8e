"""Training: per metric (and per sensor where its history allows) on stored history.

``train_models(frames)`` is pure (DataFrames in, fitted estimators out); ``train_from_db`` reads
``readings`` and writes the registry; ``simulated_history`` gives the evaluation a history from the
simulator (another seed) to train on, and ``episode_history`` gives the demo the history its own
continuous simulation would have streamed the day before it started.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from analytics.detectors import SeriesDetector
from analytics.errors import AnalyticsError

log = logging.getLogger("tongguan.analytics.train")
MIN_METRIC_ROWS = 200
MIN_SENSOR_ROWS = 2000
HISTORY_EPISODES = 1_000_000  # first episode number of a simulated history (see episode_history)
VIDEO = "video"  # the frames key of video-event history: columns place, type, ts  # about 1.5 days of minute readings: enough for a per-hour profile of its own


def train_models(frames: dict[str, pd.DataFrame], *, per_sensor: bool = True, random_state: int = 0,
                 kinds: tuple[str, ...] | list[str] | None = None) -> dict:
    """{(kind, metric, sensor_id or ""): (model, info)} from {metric: frame(series, timestamp,
    value)} — plus the forecasters for the metrics that have one and the rainfall they need."""
    kinds = set(kinds or ("anomaly", "forecast", "surge"))
    out = {}
    video = frames.get(VIDEO)
    if video is not None and len(video) and "surge" in kinds:
        from analytics.video import SurgeDetector

        surge = SurgeDetector().fit(video)
        out[("surge", VIDEO, "")] = (surge, {"n_train": surge.n_events_})
    for metric, frame in sorted(frames.items()):
        if metric == VIDEO or "anomaly" not in kinds:
            continue
        if len(frame) < MIN_METRIC_ROWS:
            log.info("%s: %d readings, too few to train (need %d)", metric, len(frame), MIN_METRIC_ROWS)
            continue
        det = SeriesDetector(metric=metric, random_state=random_state).fit(frame)
        out[("anomaly", metric, "")] = (det, {"n_train": det.n_train_, "sensors": int(frame["series"].nunique())})
        if per_sensor:
            for sid, g in frame.groupby("series"):
                if len(g) >= MIN_SENSOR_ROWS:
                    d = SeriesDetector(metric=metric, random_state=random_state).fit(g.drop(columns="series"))
                    out[("anomaly", metric, str(sid))] = (d, {"n_train": d.n_train_})
    if "forecast" in kinds:
        from analytics.forecast import FORECAST_METRICS, Forecaster, rain_by_area

        rain = rain_by_area(frames.get("rainfall"))
        for metric in FORECAST_METRICS:
            frame = frames.get(metric)
            if frame is None or len(frame) < MIN_METRIC_ROWS:
                continue
            fc = Forecaster(metric=metric, random_state=random_state).fit(frame, rain=rain)
            out[("forecast", metric, "")] = (fc, {"n_train": fc.n_train_, **fc.scores_})
    return out


def history_frames(engine, *, days: float = 7.0, metrics: list[str] | None = None,
                   until: datetime | None = None) -> dict[str, pd.DataFrame]:
    """{metric: DataFrame(series, timestamp, value, area)} of the last ``days`` in ``readings``."""
    until = until or datetime.now(UTC)
    since = until - timedelta(days=days)
    q = sa.text("""SELECT metric, sensor_id AS series, extract(epoch FROM ts) AS timestamp, value, county AS area
                   FROM readings WHERE ts >= :since AND ts < :until
                   AND (CAST(:metrics AS text[]) IS NULL OR metric = ANY(CAST(:metrics AS text[])))
                   ORDER BY metric, sensor_id, ts""")
    qv = sa.text("""SELECT camera_id, type, extract(epoch FROM ts) AS ts, ST_X(geom) AS lon, ST_Y(geom) AS lat,
                           county, grid_id FROM video_events WHERE ts >= :since AND ts < :until""")
    with engine.connect() as conn:
        df = pd.read_sql_query(q, conn, params={"since": since, "until": until, "metrics": metrics})
        dv = pd.read_sql_query(qv, conn, params={"since": since, "until": until})
    out = {m: g.drop(columns="metric").reset_index(drop=True) for m, g in df.groupby("metric")}
    if len(dv):
        from analytics.video import place_of

        out[VIDEO] = pd.DataFrame({"place": [place_of(r.lon, r.lat, (r.county or "").strip(), r.grid_id)
                                             for r in dv.itertuples()], "type": dv["type"], "ts": dv["ts"]})
    return out


def train_from_db(engine, home, *, days: float = 7.0, metrics: list[str] | None = None,
                  per_sensor: bool = True, random_state: int = 0, kinds: list[str] | None = None) -> list[dict]:
    """Train on stored history and register every model; returns what was saved."""
    frames = history_frames(engine, days=days, metrics=metrics)
    if not frames:
        raise AnalyticsError(f"no readings in the last {days:g} days to train on; run the simulator and "
                             "the store worker first (`tongguan simulate`, `tongguan ingest`)")
    return train_and_register(engine, home, frames, per_sensor=per_sensor, random_state=random_state, kinds=kinds)


def train_and_register(engine, home, frames: dict[str, pd.DataFrame], *, per_sensor: bool = True,
                       random_state: int = 0, kinds: list[str] | None = None) -> list[dict]:
    """Train on history frames and register every model; returns what was saved."""
    from analytics.registry import save_model

    saved = []
    for (kind, metric, sensor), (model, info) in train_models(frames, per_sensor=per_sensor, random_state=random_state,
                                                               kinds=kinds).items():
        version = save_model(engine, home, kind, metric, model, sensor_id=sensor, metrics=info,
                             n_train=info.get("n_train", 0))
        saved.append({"kind": kind, "metric": metric, "sensor_id": sensor, "version": version, **info})
    return saved


# Stand-in counties for offline runs: real Guangzhou and Foshan adcodes on 0.1-degree squares
# (the evaluation needs places and neighbours, not real boundaries, and must run without a database).
STAND_IN = [("440103", "440100"), ("440104", "440100"), ("440105", "440100"), ("440106", "440100"),
            ("440111", "440100"), ("440112", "440100"), ("440113", "440100"), ("440114", "440100"),
            ("440115", "440100"), ("440117", "440100"), ("440118", "440100"), ("440604", "440600"),
            ("440605", "440600"), ("440606", "440600"), ("440607", "440600"), ("440608", "440600")]


def stand_in_counties():
    from shapely.geometry import box

    from ingest.simulator import County

    out = []
    for i, (adcode, city) in enumerate(STAND_IN):
        x0, y0 = 113.0 + 0.1 * (i % 4), 22.8 + 0.1 * (i // 4)
        out.append(County(adcode, city, "440000", box(x0, y0, x0 + 0.1, y0 + 0.1)))
    return out


def simulated_history(*, seed: int, days: float, sensors: int, start: datetime, interval_s: float = 60.0,
                      cameras: int = 80, counties=None, incidents: bool = True, faults: bool = True) -> dict[str, pd.DataFrame]:
    """A history from the simulator (by default with its incidents and faults, like any stored
    history), as training frames."""
    from ingest.simulator import Simulator

    sim = Simulator(seed=seed, counties=counties or stand_in_counties(), start=start, duration_s=days * 86400.0,
                    interval_s=interval_s, sensors=sensors, cameras=cameras, incidents=incidents, faults=faults)
    return _frames_of([sim])


def episode_history(*, seed: int, episodes: int, sensors: int, cameras: int, interval_s: float, end: datetime,
                    counties, episode_s: float = 3600.0) -> dict[str, pd.DataFrame]:
    """The history a continuous simulation (``simulate --duration 0``, the demo's) of ``seed``
    would have streamed in the ``episodes`` episodes before ``end``: the same devices, its own
    incidents. Their episode numbers start at ``HISTORY_EPISODES`` (the stream itself plays 0, 1,
    2, …), so no hour of the history is an hour the stream will play."""
    from ingest.simulator import Simulator

    if episodes < 1:
        raise AnalyticsError(f"need at least one episode of history (got {episodes})")
    sims = [Simulator(seed=seed, episode=HISTORY_EPISODES + j, counties=counties,
                      start=end - timedelta(seconds=(episodes - j) * episode_s), duration_s=episode_s,
                      interval_s=interval_s, sensors=sensors, cameras=cameras)
            for j in range(episodes)]
    return _frames_of(sims)


def _frames_of(sims) -> dict[str, pd.DataFrame]:
    """Training frames ({metric: series, timestamp, value, area} and the video events) of what
    simulators stream."""
    import orjson

    from analytics.video import place_of

    rows, video = [], []
    for sim in sims:
        county_of = {sid: sim.counties[int(sim.s_county[i])].adcode for i, sid in enumerate(sim.sensor_ids)}
        cam_county = {cid: sim.counties[int(sim.c_county[i])].adcode for i, cid in enumerate(sim.camera_ids)}
        for msg in sim.iter_messages():
            d = orjson.loads(msg.value)
            if msg.topic != "readings":
                video.append((place_of(d["lon"], d["lat"], cam_county[d["camera_id"]]), d["type"],
                              datetime.fromisoformat(d["ts"]).timestamp()))
                continue
            for r in d.get("readings") or [d]:
                rows.append((r["metric"], r["sensor_id"], datetime.fromisoformat(r["ts"]).timestamp(), r["value"],
                             county_of[r["sensor_id"]]))
    df = pd.DataFrame(rows, columns=["metric", "series", "timestamp", "value", "area"])
    out = {m: g.drop(columns="metric").reset_index(drop=True) for m, g in df.groupby("metric")}
    out[VIDEO] = pd.DataFrame(video, columns=["place", "type", "ts"])
    return out
