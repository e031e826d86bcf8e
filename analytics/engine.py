"""The detection core: readings and video events in, alert changes out.

One object, no I/O: the live detector (``tongguan detect``) feeds it from Kafka and persists and
publishes its changes; the evaluation feeds it the simulator's stream offline. Per sensor it
keeps the rules' state, the anomaly detector's state and its place; per place and event type the
video windows.

What raises alerts
- rules (``rules.yaml``): raise / escalate / downgrade / clear one alert per (rule, sensor);
- anomaly detectors: a sensor behaving unlike itself, when no rule explains it. With no other
  source agreeing nearby it is marked a possible sensor fault (疑似设备故障);
- forecasts: a metric predicted to cross its rule threshold within the horizon (预警);
- silence: a sensor that stops reporting (设备离线);
- video surges: more events of a type in a cell than its baseline allows.
Multi-source corroboration (多源校核): a flood-theme sensor alert with road-ponding video events
within ``CORROBORATION_M`` metres and ``CORROBORATION_S`` seconds gains confidence and one level.
A sensor's anomaly is corroborated (not a possible fault) by another alerting source nearby, or by
its site — the sensors of its grid cell, or at its very place (one station) — scored jointly:
the Cauchy combination of the other members' latest calibrated tail probabilities
(:class:`analytics.detectors.SitePool`) at or below the lowest level's tail rate.

Readings that arrive out of time order are counted (``time_stats``: ``late``, ``repeated``,
``gaps``); a late one is still scored by its anomaly detector, only the rules (which need time
order) skip it; a repeated timestamp is a replay and is skipped.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from analytics import notes
from analytics.alerts import AlertBook, Change
from analytics.calibration import score_p
from analytics.detectors import (
    ScoreThresholder,
    SeriesDetector,
    SeriesState,
    SitePool,
    decision_config,
)
from analytics.levels import step
from analytics.rules import RuleEngine, SensorState
from analytics.video import SurgeDetector, SurgeWindows, place_of

CORROBORATION_M = 500.0
CORROBORATION_S = 1800.0
ANOMALY_CLEAR_S = 1800.0  # an anomaly alert resolves after this long without flagged readings
NEIGHBOUR_M = 3000.0  # sensors of the same metric this close corroborate each other's anomalies
OFFLINE_MIN_S = 900.0  # silence shorter than this (or 10 intervals) is never "offline"
FLOOD_CORROBORATING_VIDEO = ("road_ponding",)

_THEMES_BY_METRIC: dict[str, str] = {}


def _metric_theme(metric: str) -> str:
    if not _THEMES_BY_METRIC:
        from ingest import load_catalogue

        _THEMES_BY_METRIC.update({m.name: m.theme for m in load_catalogue().metrics.values()})
    return _THEMES_BY_METRIC.get(metric, "citymgmt")


def _metric_label(metric: str) -> tuple[str, str]:
    from ingest import load_catalogue

    m = load_catalogue().metrics.get(metric)
    return (m.label_zh, m.label_en) if m else (metric, metric)


def distance_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Equirectangular distance in metres (plenty for a few kilometres).

    >>> round(distance_m(113.0, 23.0, 113.0, 23.01))
    1112
    """
    x = math.radians(lon2 - lon1) * math.cos(math.radians((lat1 + lat2) / 2))
    y = math.radians(lat2 - lat1)
    return 6_371_000.0 * math.hypot(x, y)


@dataclass
class SensorCtx:
    sensor_id: str
    metric: str
    place: dict
    rules: SensorState | None = None
    detector: SeriesDetector | None = None
    series: SeriesState | None = None
    model: str | None = None
    last_t: float | None = None
    intervals: deque = field(default_factory=lambda: deque(maxlen=9))
    last_flag_t: float | None = None
    rule_alerts: set = field(default_factory=set)
    forecast: object | None = None
    site: str = ""


class DetectorCore:
    """See the module docstring. ``locate(sensor_or_camera_id, lon, lat) -> {county, city,
    province, grid_id}`` assigns places (geo.RegionIndex live; the simulator's own placement
    offline). ``anomaly_models``: {(metric, sensor_id or ""): (SeriesDetector, version)}."""

    def __init__(self, *, locate: Callable[[str, float, float], dict], rules: RuleEngine | None = None,
                 anomaly_models: Mapping | None = None, forecasters: Mapping | None = None,
                 surge: SurgeDetector | None = None, thresholder: ScoreThresholder | None = None,
                 anomalies: bool = True):
        self.locate = locate
        self.rules = rules or RuleEngine()
        self.anomaly_models = dict(anomaly_models or {})
        self.forecasters = dict(forecasters or {})
        self.surge = surge or SurgeDetector().prior()
        self.thresholder = thresholder or ScoreThresholder().fit()
        self.anomalies = anomalies
        self.book = AlertBook()
        self.sensors: dict[str, SensorCtx] = {}
        self.windows = SurgeWindows()
        self.video_recent: deque = deque()  # (t, lon, lat, type, camera_id)
        self.now = 0.0  # stream time: the latest timestamp seen
        self._priors: dict[str, SeriesDetector] = {}
        self._area_rain: dict[str, deque] = {}
        self._forecast_due: list[SensorCtx] = []
        self.sites = SitePool(max_age=CORROBORATION_S)
        self.time_stats = {"late": 0, "repeated": 0, "gaps": 0}
        dec = decision_config()
        self.decision = dec
        self._points, self._site_p = dec.points, score_p(dec.low_cut, dec.points)

    # ------------------------------------------------------------------------------ sensors
    def _ctx(self, r: Mapping) -> SensorCtx:
        sid = r["sensor_id"]
        ctx = self.sensors.get(sid)
        if ctx is None or ctx.metric != r["metric"]:
            place = dict(self.locate(sid, r["lon"], r["lat"]))
            place.update(lon=float(r["lon"]), lat=float(r["lat"]))
            ctx = SensorCtx(sensor_id=sid, metric=r["metric"], place=place)
            grid = place.get("grid_id")
            ctx.site = f"grid:{grid}" if grid else f"at:{place['lon']:.4f},{place['lat']:.4f}"
            ctx.rules = self.rules.new_state({**r, **place})
            if self.anomalies:
                found = self.anomaly_models.get((ctx.metric, sid)) or self.anomaly_models.get((ctx.metric, ""))
                if found:
                    ctx.detector, version = found
                    ctx.model = f"model:anomaly/{ctx.metric}@v{version}"
                else:
                    ctx.detector = self._priors.get(ctx.metric)
                    if ctx.detector is None:
                        ctx.detector = self._priors[ctx.metric] = SeriesDetector(metric=ctx.metric).prior()
                    ctx.model = f"model:anomaly/{ctx.metric}@prior"
                ctx.series = ctx.detector.new_state()
            fc = self.forecasters.get((ctx.metric, sid)) or self.forecasters.get((ctx.metric, ""))
            if fc:
                ctx.forecast = (fc[0], fc[1], fc[0].new_state())
            self.sensors[sid] = ctx
        return ctx

    def on_reading(self, r: Mapping) -> None:
        """One validated reading: ``sensor_id, metric, value, ts`` (epoch s), ``lon, lat``."""
        ctx = self._ctx(r)
        t, v = float(r["ts"]), float(r["value"])
        if ctx.last_t is not None:
            if t <= ctx.last_t:
                if t == ctx.last_t:
                    self.time_stats["repeated"] += 1  # a replay: already seen
                else:
                    self.time_stats["late"] += 1
                    if ctx.detector is not None:
                        self._anomaly(ctx, t, v)
                return
            if len(ctx.intervals) >= 3 and t - ctx.last_t > 10 * sorted(ctx.intervals)[len(ctx.intervals) // 2]:
                self.time_stats["gaps"] += 1
            ctx.intervals.append(t - ctx.last_t)
            self._back_online(ctx, t)
        ctx.last_t = t
        self.now = max(self.now, t)
        if ctx.metric == "rainfall":
            self._area_rain.setdefault(ctx.place.get("county", ""), deque(maxlen=4096)).append((t, v))
        _, events = self.rules.update(ctx.rules, {"sensor_id": ctx.sensor_id, "metric": ctx.metric,
                                                  "value": v, "ts": t})
        for ev in events:
            self._rule_event(ctx, ev)
        for rid in ctx.rule_alerts:
            self.book.touch(f"rule:{rid}|sensor:{ctx.sensor_id}", t)
        if ctx.forecast is not None:
            self._forecast(ctx, t, v)
        if ctx.detector is not None:
            self._anomaly(ctx, t, v)

    def _rule_event(self, ctx: SensorCtx, ev) -> None:
        rule = ev.rule
        key = f"rule:{rule.id}|sensor:{ctx.sensor_id}"
        if ev.kind == "clear":
            ctx.rule_alerts.discard(rule.id)
            self.book.resolve(key, ev.ts, note=notes.cleared(rule.title_zh, rule.title_en))
            return
        ctx.rule_alerts.add(rule.id)
        detail = {"title_en": rule.title_en, "sensor_id": ctx.sensor_id, "metric": ctx.metric,
                  "value": round(ev.value, 4), "condition": ev.condition, "rule": rule.id,
                  "standard": rule.source, "kind": "rule"}
        was_new = key not in self.book.active
        self.book.raise_(key, ts=ev.ts, level=ev.level, source=ev.source, theme=rule.theme,
                         title=rule.title_zh, detail=detail, subject=f"sensor:{ctx.sensor_id}",
                         place=ctx.place, confidence=0.7, note=notes.both(ev.condition_zh, ev.condition))
        # A rule now explains the deviation: an open anomaly alert on the sensor is superseded.
        self.book.resolve(f"anomaly|sensor:{ctx.sensor_id}", ev.ts, note=notes.explained(rule.title_zh, rule.title_en))
        if was_new and rule.theme == "flood":
            self._corroborate_flood(key, ctx, ev.ts)

    def _anomaly(self, ctx: SensorCtx, t: float, v: float) -> None:
        score, parts = ctx.detector.step(ctx.series, t, v)
        # the site's members are judged on their own calibrated rarity, flagged or not
        # (a score back to a tail probability through the curve of the sensor's own sampling interval)
        points = ctx.series.points or self._points
        self.sites.update(ctx.site, ctx.sensor_id, t, score_p(max(parts.values()) if parts else 0.0, points))
        key = f"anomaly|sensor:{ctx.sensor_id}"
        level = self.thresholder.level(score) if score > 0 else ""
        if not level:
            if key in self.book.active and ctx.last_flag_t is not None and t - ctx.last_flag_t >= ANOMALY_CLEAR_S:
                self.book.resolve(key, t, note=notes.READINGS_NORMAL)
            return
        ctx.last_flag_t = t
        if ctx.rule_alerts:
            return  # the rules already alert on this sensor; its deviation is explained
        component = max(parts, key=parts.get) if parts else "regime"
        agreeing = self._neighbour_alerting(ctx, t)
        site_p, site_n = self.sites.combined(ctx.site, t, exclude=ctx.sensor_id)
        site_cut = self._site_p if points is self._points else score_p(self.decision.low_cut, points)
        corroborated = bool(agreeing) or (site_n > 0 and site_p <= site_cut)
        zh, en = _metric_label(ctx.metric)
        detail = {"title_en": f"Unusual {en} readings ({component.replace('_', ' ')})", "sensor_id": ctx.sensor_id,
                  "metric": ctx.metric, "value": v, "score": round(score, 3), "component": component,
                  "components": {k: round(x, 3) for k, x in parts.items()}, "kind": "anomaly"}
        if site_n:
            detail.update(site=ctx.site, site_p=float(f"{site_p:.3g}"), site_members=site_n)
        if not corroborated:
            detail["possible_fault"] = True
        self.book.raise_(key, ts=t, level=level, source=ctx.model, theme=_metric_theme(ctx.metric),
                         title=f"{zh}读数异常" + ("(疑似设备故障)" if not corroborated else ""), detail=detail,
                         subject=f"sensor:{ctx.sensor_id}", place=ctx.place,
                         confidence=0.6 if corroborated else 0.3)
        # the others' anomalies, marked possible faults when they were alone, are not alone now
        for other in agreeing:
            a = self.book.active.get(other)
            if a is not None and a.detail.get("possible_fault"):
                a.title = a.title.replace("(疑似设备故障)", "")
                self.book.corroborate(other, ts=t, confidence=0.6, level=None,
                                      note=notes.sensor_agrees(ctx.sensor_id))

    def _neighbour_alerting(self, ctx: SensorCtx, t: float) -> list[str]:
        """Keys of active alerts that make this sensor's anomaly credible: another sensor of the
        same metric within ``NEIGHBOUR_M``, or another source of the same theme in the same
        county (a traffic-accident camera for a speed drop), seen within ``CORROBORATION_S``."""
        theme, county, me = _metric_theme(ctx.metric), ctx.place.get("county"), f"sensor:{ctx.sensor_id}"
        keys = []
        for key, a in self.book.active.items():
            if a.subject == me or t - a.last_seen > CORROBORATION_S or key.startswith("offline|"):
                continue
            near = (a.detail.get("metric") == ctx.metric and a.lon is not None
                    and distance_m(ctx.place["lon"], ctx.place["lat"], a.lon, a.lat) <= NEIGHBOUR_M)
            if near or (county and a.adcode == county and a.theme == theme):
                keys.append(key)
        return keys

    def _forecast(self, ctx: SensorCtx, t: float, v: float) -> None:
        model, version, state = ctx.forecast
        if model.observe(state, t, v):
            self._forecast_due.append(ctx)

    def run_forecasts(self) -> None:
        """The forecasts that fell due since the last call, one model call per metric."""
        due, self._forecast_due = self._forecast_due, []
        by_model: dict[int, list[SensorCtx]] = {}
        for ctx in due:
            by_model.setdefault(id(ctx.forecast[0]), []).append(ctx)
        for group in by_model.values():
            model, version = group[0].forecast[0], group[0].forecast[1]
            ready, rows = [], []
            for c in group:
                st = c.forecast[2]
                rain = self.area_rain(c.place.get("county", ""), st.times[-1])
                if model.gated(st.values[-1], rain):
                    ready.append(c)
                    rows.append(model.features_now(st, rain))
                else:
                    self._forecast_result(c, model, version, None)
            if not ready:
                continue
            group = ready
            med, up = model.predict_paths(rows)
            for k, ctx in enumerate(group):
                self._forecast_result(ctx, model, version, model.warning(ctx.forecast[2], med[k], up[k]))

    def _forecast_result(self, ctx: SensorCtx, model, version, warning: dict | None) -> None:
        state = ctx.forecast[2]
        t, v = state.times[-1], state.values[-1]
        key = f"forecast:{ctx.metric}|sensor:{ctx.sensor_id}"
        if warning is None:
            if key in self.book.active and t - self.book.active[key].last_seen >= 900:
                self.book.resolve(key, t, note=notes.FORECAST_BELOW)
            return
        if ctx.rule_alerts:
            return  # the threshold is already crossed and alerting: the forecast adds nothing
        zh, en = _metric_label(ctx.metric)
        detail = {"title_en": f"{en} forecast to reach {warning['threshold']:g} in "
                              f"{warning['minutes']:.0f} min", "sensor_id": ctx.sensor_id,
                  "metric": ctx.metric, "value": v, "kind": "forecast", **warning}
        self.book.raise_(key, ts=t, level=warning["level"], source=f"model:forecast/{ctx.metric}@v{version}",
                         theme=_metric_theme(ctx.metric),
                         title=f"{zh}预计{warning['minutes']:.0f}分钟内超过{warning['threshold']:g}",
                         detail=detail, subject=f"sensor:{ctx.sensor_id}", place=ctx.place, confidence=0.5)

    def area_rain(self, county: str, t: float) -> tuple[float, float]:
        """Mean rain rate (mm/h) of the county's gauges over the last 1 h and 3 h."""
        q = self._area_rain.get(county)
        if not q:
            return 0.0, 0.0
        s1 = n1 = s3 = n3 = 0
        for ts, v in reversed(q):
            if ts < t - 3 * 3600:
                break
            s3 += v
            n3 += 1
            if ts >= t - 3600:
                s1 += v
                n1 += 1
        return (s1 / n1 if n1 else 0.0), (s3 / n3 if n3 else 0.0)

    # -------------------------------------------------------------------------- silence
    def _offline_after(self, ctx: SensorCtx) -> float:
        typical = sorted(ctx.intervals)[len(ctx.intervals) // 2] if ctx.intervals else 60.0
        return max(OFFLINE_MIN_S, 10 * typical)

    def _back_online(self, ctx: SensorCtx, t: float) -> None:
        key = f"offline|sensor:{ctx.sensor_id}"
        if key in self.book.active:
            self.book.resolve(key, t, note=notes.REPORTING_AGAIN)

    def tick(self, now: float | None = None) -> None:
        """Time-driven work at stream time ``now``: due forecasts, silent sensors, expired
        anomaly alerts."""
        now = self.now if now is None else now
        if self._forecast_due:
            self.run_forecasts()
        for ctx in self.sensors.values():
            if ctx.last_t is None or len(ctx.intervals) < 3:
                continue
            key = f"offline|sensor:{ctx.sensor_id}"
            silent = now - ctx.last_t
            after = self._offline_after(ctx)
            if silent >= after and key not in self.book.active:
                zh, en = _metric_label(ctx.metric)
                # offline since the silence grew long, in stream time: the same alert whenever the
                # tick that notices it runs (a replay, a restart, a busy worker tick at other moments)
                self.book.raise_(key, ts=ctx.last_t + after, level="blue", source="rule:offline", theme=_metric_theme(ctx.metric),
                                 title=f"{zh}传感器离线", detail={
                                     "title_en": f"{en} sensor offline", "sensor_id": ctx.sensor_id,
                                     "metric": ctx.metric, "silent_s": round(silent), "kind": "offline",
                                     "last_reading": ctx.last_t},
                                 subject=f"sensor:{ctx.sensor_id}", place=ctx.place, confidence=0.9)
            akey = f"anomaly|sensor:{ctx.sensor_id}"
            if akey in self.book.active and ctx.last_flag_t is not None and now - ctx.last_flag_t >= ANOMALY_CLEAR_S:
                self.book.resolve(akey, now, note=notes.READINGS_NORMAL)

    # ---------------------------------------------------------------------------- video
    def on_video(self, e: Mapping) -> None:
        """One validated video event: ``camera_id, type, ts`` (epoch s), ``lon, lat``, ``count``?"""
        t = float(e["ts"])
        self.now = max(self.now, t)
        place = dict(self.locate(e["camera_id"], e["lon"], e["lat"]))
        place.update(lon=float(e["lon"]), lat=float(e["lat"]))
        etype = e["type"]
        self.video_recent.append((t, place["lon"], place["lat"], etype, e["camera_id"]))
        while self.video_recent and self.video_recent[0][0] < t - CORROBORATION_S:
            self.video_recent.popleft()
        cell = place_of(place["lon"], place["lat"], place.get("county", ""), place.get("grid_id"))
        n = self.windows.add(cell, etype, t)
        surge, expected, p = self.surge.assess(cell, etype, t, n)
        if surge:
            from analytics.policy import load_policy
            from ingest import load_catalogue

            vt = load_catalogue().video_event_types.get(etype)
            zh, en, theme = (vt.label_zh, vt.label_en, vt.theme) if vt else (etype, etype, "citymgmt")
            ratio = n / max(expected, 1e-6)
            level = load_policy().surge_level(p, n)
            self.book.raise_(f"video:surge:{etype}|grid:{cell}", ts=t, level=level, source="model:surge",
                             theme=theme, title=f"{zh}事件激增", detail={
                                 "title_en": f"Surge of {en} events", "type": etype, "cell": cell,
                                 "count": n, "expected": round(expected, 3), "p_value": p,
                                 "ratio": round(ratio, 1), "kind": "surge", "camera_id": e["camera_id"],
                                 "people": e.get("count")},
                             subject=f"grid:{cell}", place=place, confidence=min(0.95, 0.5 + 0.05 * n))
        self._video_count(e, place, t)
        if etype in FLOOD_CORROBORATING_VIDEO:
            for key, a in list(self.book.active.items()):
                if a.theme == "flood" and key.startswith("rule:") and not a.detail.get("corroborated") \
                        and a.lon is not None and distance_m(a.lon, a.lat, place["lon"], place["lat"]) <= CORROBORATION_M \
                        and abs(t - a.last_seen) <= CORROBORATION_S:
                    self.book.corroborate(key, ts=t, confidence=0.9, level=step(a.level),
                                          note=notes.ponding_seen(e['camera_id']))

    def _video_count(self, e: Mapping, place: dict, t: float) -> None:
        """Events that count something (people in a crowd) have levels of their own."""
        from analytics.video import SURGE_POLICY

        levels = SURGE_POLICY.get(e["type"], {}).get("count_levels")
        n = e.get("count")
        if not levels or n is None:
            return
        level = None
        for lv, cut in levels.items():
            if n >= cut:
                level = lv
        if level is None:
            return
        from ingest import load_catalogue

        vt = load_catalogue().video_event_types.get(e["type"])
        zh, en, theme = (vt.label_zh, vt.label_en, vt.theme) if vt else (e["type"], e["type"], "safety")
        self.book.raise_(f"video:count:{e['type']}|camera:{e['camera_id']}", ts=t, level=level,
                         source="rule:video-count", theme=theme, title=f"{zh}: 约{n}人", detail={
                             "title_en": f"{en}: about {n} people", "type": e["type"], "people": n,
                             "camera_id": e["camera_id"], "kind": "video_count"},
                         subject=f"camera:{e['camera_id']}", place=place, confidence=0.7)

    def _corroborate_flood(self, key: str, ctx: SensorCtx, t: float) -> None:
        for vt, lon, lat, etype, cam in self.video_recent:
            if etype in FLOOD_CORROBORATING_VIDEO and abs(t - vt) <= CORROBORATION_S \
                    and distance_m(ctx.place["lon"], ctx.place["lat"], lon, lat) <= CORROBORATION_M:
                a = self.book.active[key]
                self.book.corroborate(key, ts=t, confidence=0.9, level=step(a.level),
                                      note=notes.ponding_seen(cam))
                return

    def drain(self) -> list[Change]:
        return self.book.drain()
