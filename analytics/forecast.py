"""Forecast-based early warning (the 预 in 预警): predict a metric 15-60 minutes ahead from its
recent course and the rain over its county, and warn when the forecast crosses the threshold of
its rule, with the expected time of crossing.

``Forecaster`` is a scikit-learn estimator around ``HistGradientBoostingRegressor`` (one model,
horizon as a feature), with a quantile companion for the upper band. Features come from one pure
function, :func:`forecast_features`, used by training and by the stream alike.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from analytics.errors import AnalyticsError
from analytics.features import LOCAL_TZ_OFFSET_S
from analytics.policy import load_policy

# metric -> the rule level whose threshold the forecast warns about, and the gate: when a
# forecast may warn at all (policy.yaml: forecast; the thresholds live in rules.yaml).
FORECAST_METRICS = load_policy().forecast
LAGS_MIN = (5, 15, 30, 60)
HORIZONS_MIN = (15, 30, 45, 60)
FEATURE_NAMES = ("value", *(f"d{m}" for m in LAGS_MIN), "rain1h", "rain3h", "hour_sin", "hour_cos", "horizon")


def _value_at(times: np.ndarray, values: np.ndarray, i: int, t: float) -> float:
    """The value of the latest reading at or before ``t`` among ``times[:i+1]`` (the oldest if none)."""
    j = int(np.searchsorted(times, t, side="right", sorter=None)) - 1
    return float(values[max(min(j, i), 0)])


def forecast_features(times: np.ndarray, values: np.ndarray, i: int, rain1h: float, rain3h: float) -> list[float]:
    """Features of reading ``i`` of a series (sorted times), from readings ``<= i`` only; the
    horizon is appended per prediction."""
    t, v = float(times[i]), float(values[i])
    row = [v]
    for m in LAGS_MIN:
        row.append(v - _value_at(times, values, i, t - 60 * m))
    h = ((t + LOCAL_TZ_OFFSET_S) % 86400) / 86400 * 2 * math.pi
    row += [rain1h, rain3h, math.sin(h), math.cos(h)]
    return row


def rain_by_area(frame: pd.DataFrame | None) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{area: (times, rain1h, rain3h)}: the mean gauge rain rate of each area over the last 1 h
    and 3 h at every rainfall reading (the same quantity the live core keeps)."""
    out = {}
    if frame is None or not len(frame) or "area" not in frame.columns:
        return out
    for area, g in frame.groupby("area"):
        g = g.sort_values("timestamp")
        s = pd.Series(g["value"].to_numpy(float), index=pd.to_datetime(g["timestamp"].to_numpy(float), unit="s"))
        r1 = s.rolling("3600s").mean().to_numpy()
        r3 = s.rolling("10800s").mean().to_numpy()
        out[str(area)] = (g["timestamp"].to_numpy(float), r1, r3)
    return out


def _rain_at(rain: dict, area: str, t: float) -> tuple[float, float]:
    found = rain.get(area)
    if found is None:
        return 0.0, 0.0
    times, r1, r3 = found
    j = int(np.searchsorted(times, t, side="right")) - 1
    if j < 0 or t - times[j] > 3600:
        return 0.0, 0.0
    return float(r1[j]), float(r3[j])


@dataclass
class ForecastState:
    times: deque = field(default_factory=lambda: deque(maxlen=512))
    values: deque = field(default_factory=lambda: deque(maxlen=512))
    next_t: float = 0.0


class Forecaster(BaseEstimator):
    """Predicts ``value(t + h) - value(t)`` for h in ``horizons`` minutes; see the module docstring.

    ``every_s``: the stream predicts at most this often per sensor (forecasts are expensive and
    change slowly); training samples readings at the same spacing.
    """

    def __init__(self, metric: str = "ponding_depth", horizons: tuple = HORIZONS_MIN, quantile: float = 0.9,
                 every_s: float = 300.0, max_iter: int = 150, random_state: int | None = 0):
        self.metric = metric
        self.horizons = horizons
        self.quantile = quantile
        self.every_s = every_s
        self.max_iter = max_iter
        self.random_state = random_state

    # ----------------------------------------------------------------------- training
    def _samples(self, frame: pd.DataFrame, rain: dict):
        X, y = [], []
        for sid, g in frame.groupby("series"):
            g = g.sort_values("timestamp")
            times, values = g["timestamp"].to_numpy(float), g["value"].to_numpy(float)
            area = str(g["area"].iloc[0]) if "area" in g.columns else ""
            last = -math.inf
            for i in range(len(times)):
                if times[i] - last < self.every_s or times[i] - times[0] < 3600:
                    continue
                last = times[i]
                base = forecast_features(times, values, i, *_rain_at(rain, area, times[i]))
                for h in self.horizons:
                    j = int(np.searchsorted(times, times[i] + 60 * h)) - 1
                    if j <= i or times[j] < times[i] + 60 * h - 2 * self.every_s:
                        continue
                    X.append(base + [h])
                    y.append(values[j] - values[i])
        return np.asarray(X, float), np.asarray(y, float)

    def fit(self, X: pd.DataFrame, y=None, rain: dict | None = None):
        """``X``: frame(series, timestamp, value[, area]) of history; ``rain``: from
        :func:`rain_by_area` of the rainfall history (areas matched on ``area``)."""
        if not isinstance(X, pd.DataFrame) or not {"series", "timestamp", "value"} <= set(X.columns):
            raise AnalyticsError("a forecaster trains on a DataFrame with columns series, timestamp, value")
        cfg = FORECAST_METRICS.get(self.metric)
        if cfg is None:
            raise AnalyticsError(f"no forecast is defined for {self.metric!r}; see forecast in analytics/policy.yaml")
        Xs, ys = self._samples(X, rain or {})
        if len(ys) < 50:
            raise AnalyticsError(f"{self.metric}: too little history to train a forecast ({len(ys)} samples)")
        rng = np.random.default_rng(self.random_state)
        test = rng.random(len(ys)) < 0.2
        kw = dict(max_iter=self.max_iter, learning_rate=0.1, random_state=self.random_state)
        _single_thread()
        if True:
            self.median_ = HistGradientBoostingRegressor(loss="squared_error", **kw).fit(Xs[~test], ys[~test])
            self.upper_ = HistGradientBoostingRegressor(loss="quantile", quantile=self.quantile, **kw).fit(
                Xs[~test], ys[~test])
            pred = self.median_.predict(Xs[test]) if test.any() else np.zeros(0)
        naive = np.abs(ys[test]).mean() if test.any() else float("nan")
        self.scores_ = {"mae": round(float(np.abs(pred - ys[test]).mean()), 4) if test.any() else None,
                        "mae_persistence": round(float(naive), 4), "samples": len(ys)}
        self.rule_, self.level_, self.gate_ = cfg["rule"], cfg["level"], dict(cfg.get("gate") or {})
        self._threshold()
        self.n_train_ = len(X)
        return self

    def _threshold(self) -> None:
        from analytics.rules import load_rules

        rule = {r.id: r for r in load_rules()}.get(self.rule_)
        spec = next((s for s in rule.levels if s.level == self.level_), None) if rule else None
        if spec is None:
            raise AnalyticsError(f"forecast of {self.metric}: rule {self.rule_} has no {self.level_} level")
        c = spec.conditions[0]
        self.threshold_, self.agg_, self.window_ = c.threshold, c.agg, c.window

    # ------------------------------------------------------------------------ stream
    def new_state(self) -> ForecastState:
        return ForecastState()

    def predict_paths(self, rows: list[list[float]]) -> tuple[np.ndarray, np.ndarray]:
        """Median and upper forecast of the change, shape (len(rows), len(horizons)): one call
        for many sensors, because a boosted model's per-call overhead dwarfs its per-row cost."""
        check_is_fitted(self, "median_")
        _single_thread()
        X = np.array([r + [h] for r in rows for h in self.horizons], float)
        k = len(self.horizons)
        return self.median_.predict(X).reshape(-1, k), self.upper_.predict(X).reshape(-1, k)

    def observe(self, state: ForecastState, t: float, v: float) -> bool:
        """Feed one reading; True when a forecast is due for this sensor."""
        state.times.append(t)
        state.values.append(v)
        if t < state.next_t or len(state.times) < 5:
            return False
        state.next_t = t + self.every_s
        return True

    def features_now(self, state: ForecastState, rain: tuple[float, float]) -> list[float]:
        times, values = np.fromiter(state.times, float), np.fromiter(state.values, float)
        return forecast_features(times, values, len(times) - 1, *rain)

    def gated(self, value: float, rain: tuple[float, float]) -> bool:
        """Whether the conditions for this forecast to warn hold (see FORECAST_METRICS)."""
        g = self.gate_
        return rain[1] >= g.get("rain3h_min", -math.inf) and value >= g.get("value_min", -math.inf)

    def warning(self, state: ForecastState, med: np.ndarray, up: np.ndarray) -> dict | None:
        """The warning for one sensor's predicted path, or None when it stays below the threshold."""
        t, v = state.times[-1], state.values[-1]
        if self.agg_ == "rise":  # the rule measures a rise over its window: against the window's minimum
            base = min(x for tx, x in zip(state.times, state.values) if tx >= t - self.window_)
            current, path = v - base, v + med - base
        else:
            current, path = v, v + med
        if current > self.threshold_:
            return None  # already past it: the rule itself alerts now
        for k, h in enumerate(self.horizons):
            if path[k] > self.threshold_:
                prev = current if k == 0 else path[k - 1]
                h0 = 0 if k == 0 else self.horizons[k - 1]
                frac = (self.threshold_ - prev) / max(path[k] - prev, 1e-9)
                minutes = h0 + frac * (h - h0)
                return {"level": self.level_, "threshold": self.threshold_, "minutes": round(float(minutes), 1),
                        "expected_crossing": t + 60 * float(minutes), "rule": self.rule_,
                        "forecast": {str(hh): round(float(v + m), 3) for hh, m in zip(self.horizons, med)},
                        "upper": {str(hh): round(float(v + u), 3) for hh, u in zip(self.horizons, up)}}
        return None


_THREADS_SET = False


def _single_thread() -> None:
    """Limit native thread pools to one thread, once per process: OpenMP workers spinning on a
    busy 2-core machine make small boosted-tree calls tens of times slower."""
    global _THREADS_SET
    if not _THREADS_SET:
        threadpool_limits(1)
        _THREADS_SET = True
