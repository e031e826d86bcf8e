"""Anomaly detectors for sensor behaviour the rules cannot express, as scikit-learn estimators.

Each component detector follows the estimator contract (parameters in ``__init__``, learned state
ending in ``_``, ``fit`` returns ``self``) and scores with ``anomaly_score(X)`` in [0, 1]
(``score_samples`` is its negation, higher = more normal, as in scikit-learn). They deliberately
have no ``predict``: deciding is the thresholder's job. Component inputs
are feature columns from :mod:`analytics.features`.

``SeriesDetector`` combines them over one series of ``(timestamp, value)``: ``step`` scores one
reading from the readings before it, then learns from it only if it was not flagged. The live
detector, ``tongguan analytics detect`` and the evaluation all call ``step``.

Scoring is separate from deciding: ``ScoreThresholder`` turns scores into warning levels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd
import yaml
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from analytics.errors import AnalyticsError
from analytics.features import (
    FeatureState,
    frame_features,
    learn,
    series_features,
)
from analytics.levels import LEVELS, rank

ANOMALY_FILE = Path(__file__).with_name("anomaly.yaml")
COMPONENTS = ("spike", "level_shift", "stuck", "drift", "time_of_day")
MAD_TO_SD = 1.4826
WARMUP = 30  # accepted readings before spikes and shifts are scored


def _ramp(z: np.ndarray | float, low: float, high: float):
    """|z| below ``low`` scores 0, above ``high`` 1, linear between."""
    return np.clip((np.abs(z) - low) / (high - low), 0.0, 1.0)


class _RobustZDetector(BaseEstimator):
    """Robust z-score of each feature column against its training median and MAD; the score is
    the largest column's ramp between ``z_low`` and ``z_high``. Fitting is done twice, the second
    time without the rows the first fit flags, so the detector does not learn from anomalies."""

    def __init__(self, z_low: float = 4.0, z_high: float = 10.0, exclude_above: float = 0.5,
                 min_scale: float = 1e-6):
        self.z_low = z_low
        self.z_high = z_high
        self.exclude_above = exclude_above
        self.min_scale = min_scale

    def _stats(self, X: np.ndarray):
        center = np.median(X, axis=0)
        scale = np.median(np.abs(X - center), axis=0) * MAD_TO_SD
        return center, np.maximum(scale, self.min_scale)

    def fit(self, X, y=None):
        if not self.z_high > self.z_low >= 0:
            raise ValueError("need z_high > z_low >= 0")
        X = validate_data(self, X, dtype=np.float64)
        self.center_, self.scale_ = self._stats(X)
        keep = self.anomaly_score(X) < self.exclude_above
        if keep.sum() >= max(2, X.shape[0] // 2):
            self.center_, self.scale_ = self._stats(X[keep])
        return self

    def prior(self, n_features: int = 1):
        """The state before any training: features taken as already standardised."""
        self.n_features_in_ = n_features
        self.center_ = np.zeros(n_features)
        self.scale_ = np.ones(n_features)
        return self

    def anomaly_score(self, X) -> np.ndarray:
        check_is_fitted(self, "center_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return _ramp((X - self.center_) / self.scale_, self.z_low, self.z_high).max(axis=1)

    def score_one(self, x: float) -> float:
        """Fast scalar form for one feature value (the stream's hot path)."""
        z = abs((x - self.center_[0]) / self.scale_[0])
        return float(min(max((z - self.z_low) / (self.z_high - self.z_low), 0.0), 1.0))

    def score_samples(self, X) -> np.ndarray:
        return -self.anomaly_score(X)



class SpikeDetector(_RobustZDetector):
    """Spikes: one reading far from the median of the few accepted readings before it
    (feature ``spike_z``)."""

    def __init__(self, z_low: float = 5.0, z_high: float = 12.0, exclude_above: float = 0.5,
                 min_scale: float = 1e-6):
        super().__init__(z_low=z_low, z_high=z_high, exclude_above=exclude_above, min_scale=min_scale)


class LevelShiftDetector(_RobustZDetector):
    """Level shifts: the median of the last three readings away from the accepted readings before
    them (feature ``shift_z``); a single spike cannot move a median of three."""

    def __init__(self, z_low: float = 5.0, z_high: float = 12.0, exclude_above: float = 0.5,
                 min_scale: float = 1e-6):
        super().__init__(z_low=z_low, z_high=z_high, exclude_above=exclude_above, min_scale=min_scale)


class DriftDetector(_RobustZDetector):
    """Drift: the slow average wandering from the sensor's reference level (feature ``drift``).
    Trained, it learns how far the slow average normally swings (daily cycles included)."""

    def __init__(self, z_low: float = 6.0, z_high: float = 15.0, exclude_above: float = 0.5,
                 min_scale: float = 1e-6):
        super().__init__(z_low=z_low, z_high=z_high, exclude_above=exclude_above, min_scale=min_scale)

    def prior(self, n_features: int = 1):
        # Untrained, the slow average of a sensor with a daily cycle swings widely: be lenient.
        super().prior(n_features)
        self.scale_ = np.full(n_features, 10.0)
        return self


class StuckDetector(BaseEstimator):
    """Stuck sensors: the same value repeated for longer (feature ``run_s``, seconds) than the
    ``quantile`` of runs seen in training, times ``margin``; never less than ``min_run``. The
    score ramps from 0 at that limit to 1 at 1.5 times it.

    Runs longer than ``min_run`` are rare in healthy history; when they are rarer than
    ``rare_share`` of the rows they are faults in the history and are left out of the quantile
    (the detector does not learn from what it would flag). When they are common, repeating is
    how that sensor reports (an hourly value sent every minute) and the limit rises to match.
    """

    def __init__(self, quantile: float = 0.999, margin: float = 2.0, min_run: float = 1800.0,
                 rare_share: float = 0.01):
        self.quantile = quantile
        self.margin = margin
        self.min_run = min_run
        self.rare_share = rare_share

    def fit(self, X, y=None):
        if not 0 < self.quantile <= 1 or self.margin <= 0:
            raise ValueError("need 0 < quantile <= 1 and margin > 0")
        X = validate_data(self, X, dtype=np.float64)
        limits = []
        for col in X.T:
            long = col > self.min_run
            if 0 < long.mean() < self.rare_share:
                col = col[~long]
            limits.append(max(float(np.quantile(col, self.quantile)) * self.margin, self.min_run))
        self.limit_ = np.array(limits)
        return self

    def prior(self, n_features: int = 1):
        self.n_features_in_ = n_features
        self.limit_ = np.full(n_features, max(self.min_run, 6 * 3600.0))
        return self

    def anomaly_score(self, X) -> np.ndarray:
        check_is_fitted(self, "limit_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return np.clip((X - self.limit_) / (0.5 * self.limit_), 0.0, 1.0).max(axis=1)

    def score_one(self, x: float) -> float:
        lim = self.limit_[0]
        return float(min(max((x - lim) / (0.5 * lim), 0.0), 1.0))

    def score_samples(self, X) -> np.ndarray:
        return -self.anomaly_score(X)



class TimeOfDayDetector(BaseEstimator):
    """Values unusual for the time of day. ``X`` columns: value, hour (0-23, local time); every
    further column is ignored. Learns the median and spread per hour; an hour with fewer than
    ``min_count`` training rows has no profile and scores 0 (no evidence is not an anomaly)."""

    def __init__(self, z_low: float = 5.0, z_high: float = 12.0, min_count: int = 10,
                 min_scale: float = 1e-6):
        self.z_low = z_low
        self.z_high = z_high
        self.min_count = min_count
        self.min_scale = min_scale

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64, ensure_min_features=2)
        v, hour = X[:, 0], np.mod(np.floor(X[:, 1]), 24).astype(int)
        g_med = float(np.median(v))
        g_scale = max(float(np.median(np.abs(v - g_med))) * MAD_TO_SD, self.min_scale)
        center, scale = np.full(24, np.nan), np.full(24, np.inf)
        for h in range(24):
            vh = v[hour == h]
            if len(vh) >= self.min_count:
                center[h] = np.median(vh)
                # an hour's spread is never taken below a quarter of the overall spread
                scale[h] = max(np.median(np.abs(vh - center[h])) * MAD_TO_SD, g_scale / 4, self.min_scale)
        self.center_, self.scale_ = center, scale
        return self

    def anomaly_score(self, X) -> np.ndarray:
        check_is_fitted(self, "center_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        hour = np.mod(np.floor(X[:, 1]), 24).astype(int)
        z = np.nan_to_num((X[:, 0] - self.center_[hour]) / self.scale_[hour], nan=0.0)
        return _ramp(z, self.z_low, self.z_high)

    def score_one(self, value: float, hour: int) -> float:
        if self.scale_[hour] == np.inf:
            return 0.0
        z = abs((value - self.center_[hour]) / self.scale_[hour])
        return float(min(max((z - self.z_low) / (self.z_high - self.z_low), 0.0), 1.0))

    def score_samples(self, X) -> np.ndarray:
        return -self.anomaly_score(X)



# ------------------------------------------------------------------------------ configuration
@dataclass(frozen=True)
class MetricConfig:
    components: tuple[str, ...]
    floor: float
    stuck_ignore_zero: bool


@lru_cache(maxsize=4)
def _anomaly_config(path: str | None = None) -> dict:
    p = Path(path) if path else ANOMALY_FILE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise AnalyticsError(f"cannot read anomaly configuration {p}: {exc}") from exc
    for name, cfg in [("defaults", data.get("defaults") or {}), *(data.get("metrics") or {}).items()]:
        bad = set(cfg.get("components", ())) - set(COMPONENTS)
        if bad:
            raise AnalyticsError(f"{p}: {name}: unknown component(s) {', '.join(sorted(bad))}; "
                                 f"use {', '.join(COMPONENTS)}")
    return data


def metric_config(metric: str | None) -> MetricConfig:
    """Which components run for ``metric`` and its noise floor (from the catalogue's range)."""
    data = _anomaly_config()
    cfg = dict(data.get("defaults") or {})
    cfg.update((data.get("metrics") or {}).get(metric or "", {}))
    span = 1000.0
    if metric:
        try:
            from ingest import load_catalogue

            m = load_catalogue().metrics.get(metric)
        except ImportError:  # pragma: no cover
            m = None
        if m is None:
            raise AnalyticsError(f"unknown metric {metric!r}; see ingest/catalogue.yaml for the names")
        span = m.max - m.min
    return MetricConfig(components=tuple(cfg["components"]), floor=float(cfg["floor_fraction"]) * span,
                        stuck_ignore_zero=bool(cfg.get("stuck_ignore_zero", False)))


# ---------------------------------------------------------------------------- the composite
@dataclass
class SeriesState:
    """Per-series state of a :class:`SeriesDetector`."""

    features: FeatureState = field(default_factory=FeatureState)
    last_t: float | None = None
    tod_offset: float = 0.0  # a level the series adapted to, relative to the trained profile
    prev_shift: float = 0.0


class SeriesDetector(BaseEstimator):
    """All component detectors over one series of readings, with explicit streaming state.

    ``fit(frame)`` takes a ``timestamp,value`` DataFrame of history (with a ``series`` column,
    several sensors' histories at once: a metric-wide model). Untrained use starts from
    ``prior()``: standardised features and a 6 h stuck limit, adapting as readings arrive.
    ``accept_below``: readings scoring at or above it are not learned (the detector does not
    learn from points it flags) — unless ``adapt_after`` of them come in a row, which is a new
    normal (a re-installed sensor, a changed set-point): the baselines restart from them.
    """

    def __init__(self, metric: str | None = None, accept_below: float = 0.3, adapt_after: int = 30,
                 max_train_rows: int = 200_000, random_state: int | None = 0):
        self.metric = metric
        self.accept_below = accept_below
        self.adapt_after = adapt_after
        self.max_train_rows = max_train_rows
        self.random_state = random_state

    def _setup(self) -> None:
        cfg = metric_config(self.metric)
        self.components_ = cfg.components
        self.floor_ = cfg.floor
        self.stuck_ignore_zero_ = cfg.stuck_ignore_zero
        self.spike_ = SpikeDetector()
        self.level_shift_ = LevelShiftDetector()
        self.drift_ = DriftDetector()
        self.stuck_ = StuckDetector()
        self.time_of_day_ = None
        self.reference_ = None

    def prior(self):
        """Ready to score with no training history (see the class docstring)."""
        self._setup()
        for d in (self.spike_, self.level_shift_, self.drift_, self.stuck_):
            d.prior(1)
        self.n_train_ = 0
        return self

    def fit(self, X, y=None):
        frame = _as_frame(X)
        if len(frame) < 50:
            raise AnalyticsError(f"need at least 50 readings to train (got {len(frame)})")
        self._setup()
        if len(frame) > self.max_train_rows:  # the most recent history
            frame = frame.loc[frame["timestamp"].rank(method="first", ascending=False) <= self.max_train_rows]
        F = frame_features(frame, self.floor_)
        if self.stuck_ignore_zero_:
            F.loc[F["value"] == 0, "run_s"] = 0.0
        rng = np.random.default_rng(self.random_state)
        self.spike_.set_params(min_scale=0.5).fit(F[["spike_z"]].to_numpy())
        self.level_shift_.set_params(min_scale=0.5).fit(F[["shift_z"]].to_numpy())
        self.drift_.set_params(min_scale=1.0).fit(F[["drift"]].to_numpy())
        self.stuck_.fit(F[["run_s"]].to_numpy())
        # Refit every component without the rows any of them flags: no learning from anomalies.
        scores = self._frame_scores(F)
        keep = scores < self.accept_below
        if keep.sum() >= 50:
            F = F[keep]
        if len(F) > 50_000:  # the per-hour profile needs no more; subsample reproducibly
            F = F.iloc[np.sort(rng.choice(len(F), 50_000, replace=False))]
        self.spike_.fit(F[["spike_z"]].to_numpy())
        self.level_shift_.fit(F[["shift_z"]].to_numpy())
        self.drift_.fit(F[["drift"]].to_numpy())
        if "time_of_day" in self.components_:
            self.time_of_day_ = TimeOfDayDetector(min_scale=self.floor_).fit(F[["value", "hour"]].to_numpy())
        self.reference_ = float(np.median(frame["value"]))
        self.n_train_ = len(frame)
        return self

    def _frame_scores(self, F: pd.DataFrame) -> np.ndarray:
        parts = []
        if "spike" in self.components_:
            parts.append(self.spike_.anomaly_score(F[["spike_z"]].to_numpy()))
        if "level_shift" in self.components_:
            parts.append(self.level_shift_.anomaly_score(F[["shift_z"]].to_numpy()))
        if "drift" in self.components_:
            parts.append(self.drift_.anomaly_score(F[["drift"]].to_numpy()))
        if "stuck" in self.components_:
            parts.append(self.stuck_.anomaly_score(F[["run_s"]].to_numpy()))
        return np.max(parts, axis=0) if parts else np.zeros(len(F))

    def new_state(self) -> SeriesState:
        # The drift reference is each sensor's own warmed-up level, never the metric's median:
        # sensors of one metric sit at different levels.
        check_is_fitted(self, "floor_")  # once per series, not per reading (the hot path)
        return SeriesState()

    def step(self, state: SeriesState, t: float, v: float) -> tuple[float, dict]:
        """Score reading ``(t, v)`` from the readings before it, then learn from it unless
        flagged. Returns ``(score, {component: score})``; readings out of time order score 0
        and are not learned."""
        if state.last_t is not None and t < state.last_t:
            return 0.0, {}
        state.last_t = t
        fs = state.features
        f = series_features(fs, t, v, self.floor_)
        parts = {}
        comps = self.components_
        warm = fs.n >= WARMUP  # the noise scale needs some history before z-scores mean anything
        if "spike" in comps and warm:
            parts["spike"] = self.spike_.score_one(f["spike_z"])
        if "level_shift" in comps and warm:
            # a shift is a new level that stays: confirmed by two readings in a row
            shift = self.level_shift_.score_one(f["shift_z"])
            parts["level_shift"] = min(shift, state.prev_shift)
            state.prev_shift = shift
        if "drift" in comps and fs.reference is not None:
            parts["drift"] = self.drift_.score_one(f["drift"])
        if "stuck" in comps and not (self.stuck_ignore_zero_ and v == 0):
            parts["stuck"] = self.stuck_.score_one(f["run_s"])
        if self.time_of_day_ is not None:
            parts["time_of_day"] = self.time_of_day_.score_one(v - state.tod_offset, f["hour"])
        score = max(parts.values()) if parts else 0.0
        if score < self.accept_below:
            learn(fs, t, v)
            fs.rejected_run = 0
            fs.quarantine.clear()
        else:
            fs.rejected_run += 1
            fs.quarantine.append((t, v))
            if fs.rejected_run >= self.adapt_after and parts.get("stuck", 0.0) < self.accept_below:
                # A sustained new level: restart the baselines from it (stuck values never are).
                fs.short.clear()
                fs.long.clear()
                for qt, qv in fs.quarantine:
                    learn(fs, qt, qv)
                fs.reference = median(q for _, q in fs.quarantine)
                if self.time_of_day_ is not None:
                    from analytics.features import hour_of_day

                    tod = self.time_of_day_.center_
                    offsets = [q - tod[hour_of_day(qt)] for qt, q in fs.quarantine
                               if np.isfinite(tod[hour_of_day(qt)])]
                    if offsets:
                        state.tod_offset = median(offsets)
                fs.ewm = fs.reference
                fs.quarantine.clear()
                fs.rejected_run = 0
        return float(score), parts

    def score_frame(self, X) -> pd.DataFrame:
        """Scores of a whole ``timestamp,value`` series, streaming (row k uses rows <= k)."""
        frame = _as_frame(X, sort=False)
        from analytics.rules import to_epoch

        st = self.new_state()
        out = []
        for ts, v in zip(frame["timestamp"], frame["value"].to_numpy(dtype=float)):
            score, parts = self.step(st, to_epoch(ts), float(v))
            out.append((score, max(parts, key=parts.get) if score > 0 else ""))
        return pd.DataFrame(out, columns=["anomaly_score", "component"], index=frame.index)


def _as_frame(X, sort: bool = True) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame) or not {"timestamp", "value"} <= set(X.columns):
        raise AnalyticsError("a series detector needs a DataFrame with columns timestamp, value")
    cols = ["timestamp", "value"] + (["series"] if "series" in X.columns else [])
    frame = X[cols].dropna()
    keys = ["series", "timestamp"] if "series" in cols else ["timestamp"]
    return frame.sort_values(keys, kind="stable") if sort else frame


class ScoreThresholder(BaseEstimator):
    """Anomaly score -> warning level. Cut points are parameters (default from ``anomaly.yaml``):
    a score at or above a level's cut gets that level ("" below the lowest).

    >>> ScoreThresholder(cuts={"blue": 0.5, "yellow": 0.8}).fit().levels([0.1, 0.5, 0.95]).tolist()
    ['', 'blue', 'yellow']
    """

    def __init__(self, cuts: dict | None = None):
        self.cuts = cuts

    def fit(self, X=None, y=None):
        cuts = self.cuts if self.cuts is not None else _anomaly_config()["thresholds"]
        bad = set(cuts) - set(LEVELS)
        if bad:
            raise AnalyticsError(f"unknown level(s) in thresholds: {', '.join(sorted(bad))}")
        self.cuts_ = sorted(((float(c), lv) for lv, c in cuts.items()), key=lambda p: rank(p[1]))
        return self

    def level(self, score: float) -> str:
        if not hasattr(self, "cuts_"):
            self.fit()
        best = ""
        for cut, lv in self.cuts_:
            if score >= cut:
                best = lv
        return best

    def levels(self, scores) -> np.ndarray:
        return np.array([self.level(float(s)) for s in np.asarray(scores, dtype=float).ravel()], dtype=object)
