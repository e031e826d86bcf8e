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

import math
from array import array
from collections import deque
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from statistics import median

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from analytics.calibration import (
    DEFAULT_INTERVAL_S,
    INTERVAL_STEPS,
    SamplingInterval,
    TailCalibrator,
    interval_key,
    key_seconds,
    level_points,
    level_score,
    per_reading,
)
from analytics.errors import AnalyticsError
from analytics.features import (
    LOCAL_TZ_OFFSET_S,
    REPEATS_LEARNED,
    FeatureState,
    frame_features,
    hour_of_day,
    learn,
    series_features,
)
from analytics.levels import LEVELS, rank
from tongguan.yamlfile import read_yaml

ANOMALY_FILE = Path(__file__).with_name("anomaly.yaml")
COMPONENTS = ("spike", "level_shift", "cusum", "stuck", "drift", "time_of_day")
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
    data = read_yaml(p, "anomaly configuration", AnalyticsError)
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
    span = 0.0  # a series of unknown metric (a file, a test rig) has no known resolution
    if metric:
        try:
            from ingest import load_catalogue

            m = load_catalogue().metrics.get(metric)
        except ImportError:  # pragma: no cover
            m = None
        if m is None:
            raise AnalyticsError(f"unknown metric {metric!r}; see ingest/catalogue.yaml for the names")
        span = m.max - m.min
    return MetricConfig(components=tuple(cfg["components"]), floor=max(float(cfg["floor_fraction"]) * span, 1e-9),
                        stuck_ignore_zero=bool(cfg.get("stuck_ignore_zero", False)))


# ---------------------------------------------------------------------------- the composite
CALIBRATED = ("spike", "level_shift", "cusum", "drift", "time_of_day")
# Change-point scoring (component ``cusum``): a two-sided, leaky CUSUM of the reading's residual
# against the exponentially weighted mean of accepted readings (about CUSUM_MEMORY of them; less
# a trained hour-of-day profile), in units of their standard deviation, calibrated like any
# component against its own history. A shift of d sds accumulates to about
# (d - CUSUM_K) / (1 - CUSUM_LEAK), so a small sustained shift (a valve half closed: two sds on a
# flow gauge) is flagged within tens of readings, held while it lasts (nothing is learned in a
# regime), and forgotten within about 1 / (1 - CUSUM_LEAK) readings once the series is back.
# Mean and sd, not median and MAD: a quantised gauge sits on its median while its mean is off it.
CUSUM_K = 0.5
CUSUM_LEAK = 0.97
# The CUSUM's leak on a reading within one sd of its baseline: a shift that is over is released
# within ~20 readings instead of ~100 (SKAB site: after-window false-positive rows 8.2 -> 4.2 % of
# normal rows; 0.93 released too slowly, 0.7 gained nothing more)
CUSUM_RELEASE = 0.85
CUSUM_MEMORY = 120.0  # readings the running mean and variance average over
QUARANTINE = 30  # regime readings kept to re-learn from
# Strong evidence opens a regime at once only when it has lasted this long (seconds): one reading
# of a minute sensor, two of a 1 Hz one (on SKAB's anomaly-free pump recording single 1 Hz
# readings of a vibration channel opened site regimes: 3.4 -> 1.1 false alarms per sensor-day)
STRONG_S = 2.0
DRIFT_WARM_S = 2 * 86400.0


@lru_cache(maxsize=256)
def _points_at(rates: tuple, cuts: tuple, key: int) -> tuple:
    return tuple(level_points(per_reading(dict(rates), key_seconds(key)), dict(cuts)))


@dataclass(frozen=True)
class Decision:
    """How calibrated scores become a regime (``anomaly.yaml`` ``rates_per_day`` and ``decision``).

    ``rates``: each level's rate on normal data per sensor-day; :meth:`points_at` gives the
    p -> score curve of a sensor read every ``key_seconds(key)`` seconds (each level's per-reading
    rate lands on its score cut), ``points`` that of one read every minute. A sensor
    enters an abnormal regime when ``enter_k`` of its last ``enter_m`` readings reach the lowest
    level, or at once on readings at the ``strong`` level that have lasted ``STRONG_S``; it leaves once the mean score of about
    its last ``exit_n`` readings (exponentially weighted) is below ``exit_score``, or when
    ``exit_n`` readings in a row are. While in a regime nothing is learned (baselines and
    calibration are frozen), so a long abnormal regime stays flagged; one that lasts longer than
    both ``relearn_s`` and ``relearn_n`` readings is taken as the new normal and re-learned.
    """

    points: tuple
    low_cut: float
    strong_cut: float
    enter_k: int
    enter_m: int
    exit_n: int
    exit_score: float
    relearn_s: float
    relearn_n: int
    rates: tuple = ()  # ((level, rate per sensor-day), ...)
    cuts: tuple = ()  # ((level, score cut), ...)

    def points_at(self, key: int) -> tuple:
        """The p -> score curve of a sensor whose sampling interval has :func:`interval_key` ``key``."""
        return _points_at(self.rates, self.cuts, key)


@lru_cache(maxsize=4)
def decision_config(path: str | None = None) -> Decision:
    data = _anomaly_config(path)
    cuts = data["thresholds"]
    if "tail_rates" in data:
        raise AnalyticsError("anomaly configuration: tail_rates (per reading) is now rates_per_day "
                             "(normal readings at each level per sensor-day; 1e-4 of minute readings is 0.144)")
    rates = data.get("rates_per_day") or {}
    d = data.get("decision") or {}
    try:
        rates_t = tuple(sorted((k, float(v)) for k, v in rates.items()))
        cuts_t = tuple(sorted((k, float(v)) for k, v in cuts.items()))
        if any(r <= 0 for _, r in rates_t):
            raise ValueError("rates_per_day must be positive")
        points = _points_at(rates_t, cuts_t, interval_key(DEFAULT_INTERVAL_S))
        out = Decision(points=points, low_cut=min(float(c) for c in cuts.values()),
                       strong_cut=max(float(c) for c in cuts.values()),
                       enter_k=int(d.get("enter_k", 3)), enter_m=int(d.get("enter_m", 5)),
                       exit_n=int(d.get("exit_n", 10)), exit_score=float(d.get("exit_score", 0.3)),
                       relearn_s=float(d.get("relearn_minutes", 10.0)) * 60.0, relearn_n=int(d.get("relearn_n", 600)),
                       rates=rates_t, cuts=cuts_t)
    except (KeyError, TypeError, ValueError) as exc:
        raise AnalyticsError(f"anomaly configuration: bad rates_per_day/decision: {exc}") from exc
    if not 1 <= out.enter_k <= out.enter_m <= 30:
        raise AnalyticsError("anomaly configuration: need 1 <= enter_k <= enter_m <= 30")
    return out


@dataclass
class Regime:
    """Hysteresis state of one sensor or site (see :class:`Decision`)."""

    active: bool = False
    since: float = 0.0
    n: int = 0
    hits: int = 0  # bit mask of the last enter_m readings at the lowest level
    calm: float = 0.0  # mean score in the regime, exponentially weighted
    quiet: int = 0  # readings in a row below the exit score
    entered: int = 0  # regimes entered so far
    relearned: int = 0  # regimes so long they were taken as the new normal
    strong_n: int = 0  # readings in a row at the strong level (see STRONG_S)
    returned: int = 0  # regimes ended as a return to the series' long-run level (see :func:`regime_end`)


def regime_end(fs: FeatureState, quarantine, floor: float, season: SeasonProfile | None = None) -> str:
    """How a regime's recent readings (a full quarantine) relate to the levels the series knows:
    ``"returned"``, ``"recovered"`` or ``""`` (still away: the regime goes on).

    ``returned``: a slow onset can be learned before it is confirmed; the return to normal then
    looks like a shift against the learned baseline, and a frozen regime would flag normal readings
    until the long re-learn horizon. The slow (6 h half-life) average barely moves meanwhile: when
    the recent readings are much nearer to it than to the baseline that flags them, the series has
    come back, and its baselines are re-learned at once. So also when the recent readings are
    ordinary for the hour by the online hour-of-day profile (``season``, once it knows the hour).

    ``recovered``: the recent readings are back within the spread of the (frozen) baseline the
    regime left, yet the regime's score has not calmed (the few readings learned before the regime
    was confirmed still sit in the short spike baseline): the regime ends and the short baseline
    restarts from the recent readings."""
    q = median(v for _, v in quarantine)
    center, spread = fs.level_cache[0], max(fs.level_cache[1], fs.noise_scale(floor))
    if fs.ewm is not None and abs(q - fs.ewm) < 0.5 * abs(q - center):
        return "returned"
    # a seasonal series: the frozen trend line goes stale as the day moves on, but the hour's
    # learned profile does not; recent readings ordinary for this hour are the series back
    z = season.z(quarantine[-1][0], q, fs.noise_scale(floor)) if season is not None else None
    if z is not None and z <= SEASON_BACK_Z:
        return "returned"
    if fs.level_n >= 0 and abs(q - center) <= spread:
        return "recovered"
    return ""


def decide(reg: Regime, dec: Decision, score: float, t: float,
           interval: float = DEFAULT_INTERVAL_S) -> tuple[float, bool]:
    """Calibrated ``score`` -> (reported score, learn this reading?) of a series read every
    ``interval`` seconds. Pure but for ``reg``.

    >>> dec = decision_config(); reg = Regime()
    >>> [round(decide(reg, dec, s, i)[0], 2) for i, s in enumerate([0.7, 0.1, 0.7, 0.7, 0.1])]
    [0.59, 0.1, 0.59, 0.7, 0.6]
    """
    hit = score >= dec.low_cut
    reg.hits = ((reg.hits << 1) | hit) & ((1 << dec.enter_m) - 1)
    strong = score >= dec.strong_cut
    # strong evidence opens a regime at once when it has lasted STRONG_S: one reading of a
    # sensor read every minute, two of one read every second (one sample of a 1 Hz vibration
    # channel is a glitch, not yet a state of the machine); a strong reading is never learned
    reg.strong_n = reg.strong_n + 1 if strong else 0
    if not reg.active:
        if (strong and reg.strong_n * interval >= STRONG_S) or reg.hits.bit_count() >= dec.enter_k:
            reg.active, reg.since, reg.n, reg.calm, reg.quiet = True, t, 0, score, 0
            reg.entered += 1
        else:
            # not (yet) confirmed: reported just below the lowest level; learned unless strong
            return (min(score, dec.low_cut - 0.01) if hit else score), not strong
    reg.n += 1
    # calm: the exponentially weighted mean score over about exit_n readings (a noisy or
    # quantised signal never gives exit_n quiet readings in a row, yet is plainly back)
    if reg.n > 1:
        reg.calm += (score - reg.calm) / dec.exit_n
    reg.quiet = reg.quiet + 1 if score < dec.exit_score else 0
    if reg.quiet >= dec.exit_n or (reg.n >= dec.exit_n and reg.calm < dec.exit_score):
        reg.active = False
        reg.hits = 0
        return score, True
    return max(score, dec.low_cut), False


def _local_day_hour(t: float) -> tuple[int, int]:
    local = t + LOCAL_TZ_OFFSET_S
    day = int(local // 86400)
    return day, int((local % 86400) // 3600)


SEASON_BINS = 48  # hour of day x (weekday, weekend)
SEASON_DAYS = 3  # distinct days a bin needs before it is scored
SEASON_MEMORY = 2000.0  # readings per bin the profile averages over, at most
SEASON_BACK_Z = 2.0  # a regime's recent median this close to the hour's profile is the series back


class SeasonProfile:
    """Hour-of-day (weekdays and weekends apart) level and spread, learned online from accepted
    readings: exponentially weighted mean and mean absolute deviation per bin, scored only once a
    bin has seen ``SEASON_DAYS`` different days. ``4 * SEASON_BINS`` doubles."""

    __slots__ = ("count", "days", "last_day", "mad", "mean")

    def __init__(self) -> None:
        z = bytes(8 * SEASON_BINS)
        self.mean, self.mad, self.count = array("d", z), array("d", z), array("d", z)
        self.days = array("i", bytes(4 * SEASON_BINS))
        self.last_day = array("i", [-1] * SEASON_BINS)

    @property
    def nbytes(self) -> int:
        return 8 * 3 * SEASON_BINS + 4 * 2 * SEASON_BINS

    @staticmethod
    def bin(t: float) -> tuple[int, int]:
        day, hour = _local_day_hour(t)
        weekend = (day + 3) % 7 >= 5  # day 0 (1970-01-01) was a Thursday
        return 24 * weekend + hour, day

    def learn(self, t: float, v: float) -> None:
        b, day = self.bin(t)
        c = self.count[b] + 1.0
        self.count[b] = c
        a = 1.0 / min(c, SEASON_MEMORY)
        d = v - self.mean[b]
        self.mean[b] += a * d
        self.mad[b] += a * (abs(d) - self.mad[b]) if c > 1 else 0.0
        if day != self.last_day[b]:
            self.last_day[b] = day
            self.days[b] += 1

    def z(self, t: float, v: float, noise: float) -> float | None:
        b, _ = self.bin(t)
        if self.days[b] < SEASON_DAYS:
            return None
        return abs(v - self.mean[b]) / max(self.mad[b] * 1.2533, noise)  # mean |dev| -> sd


@dataclass
class SeriesState:
    """Per-series state of a :class:`SeriesDetector` (bounded: see :meth:`nbytes`)."""

    features: FeatureState = field(default_factory=FeatureState)
    last_t: float | None = None
    first_t: float | None = None  # when the drift reference was set
    tod_offset: float = 0.0  # a level the series adapted to, relative to the trained profile
    calibrators: dict = field(default_factory=lambda: {c: TailCalibrator() for c in CALIBRATED})
    season: SeasonProfile = field(default_factory=SeasonProfile)
    regime: Regime = field(default_factory=Regime)
    quarantine: deque = field(default_factory=lambda: deque(maxlen=QUARANTINE))
    # messy time, counted: readings earlier than the one before, at the same time, after a gap
    late: int = 0
    repeated: int = 0
    gaps: int = 0
    interval: SamplingInterval = field(default_factory=SamplingInterval)  # learned time between readings
    points: tuple = ()  # the p -> score curve at that interval (Decision.points_at)
    points_key: int | None = None
    cusum_hi: float = 0.0
    cusum_lo: float = 0.0
    cusum_mu: float = 0.0  # exponentially weighted mean and variance of accepted readings
    cusum_var: float = 0.0  # (less the trained hour-of-day profile), over about CUSUM_MEMORY
    cusum_n: int = 0

    def nbytes(self) -> int:
        """Upper bound of the memory this state holds, in bytes (CPython 3.11, 64-bit)."""
        fs = self.features
        floats = 24 + 8  # a float object plus its slot in a deque
        deques = sum(d.maxlen for d in (fs.short, fs.long, fs.diffs, fs.recent)) * floats + 4 * 640
        quarantine = self.quarantine.maxlen * (56 + 2 * floats) + 640
        cal = sum(c.nbytes + 64 for c in self.calibrators.values()) + 232
        interval = 4 * 32 + 72
        return deques + quarantine + cal + interval + self.season.nbytes + 5 * 64 + 2 * 600  # + objects, dicts

    def time_counts(self) -> dict:
        return {"late": self.late, "repeated": self.repeated, "gaps": self.gaps}


class SeriesDetector(BaseEstimator):
    """All component detectors over one series of readings, with explicit streaming state.

    Each reading gets raw component scores (robust z of a spike against the last few accepted
    readings, of a level against the accepted long window, of the slow average's drift, of the
    hour-of-day profile learned online; the stuck run length), each raw score is calibrated to a
    tail probability against the series' own history of that score (:mod:`analytics.calibration`),
    the smallest (Bonferroni-corrected) is mapped to the 0..1 score, and :func:`decide` applies
    the hysteresis and decides what is learned. No training is needed.

    ``cusum=True`` adds the change-point component ``cusum`` (see ``CUSUM_K``) when the metric
    has a level component; :class:`SiteDetector` turns it on for its channels.

    ``fit(frame)`` (``tongguan analytics train``) may improve a metric: it learns the stuck limit
    and an hour-of-day profile from history (with a ``series`` column, several sensors at once).
    """

    def __init__(self, metric: str | None = None, accept_below: float = 0.3, adapt_after: int = 30,
                 max_train_rows: int = 200_000, random_state: int | None = 0, cusum: bool = False):
        self.metric = metric
        self.cusum = cusum
        self.accept_below = accept_below
        self.adapt_after = adapt_after
        self.max_train_rows = max_train_rows
        self.random_state = random_state

    def _setup(self) -> None:
        cfg = metric_config(self.metric)
        self.components_ = cfg.components
        if self.cusum and "cusum" not in cfg.components and "level_shift" in cfg.components:
            self.components_ = (*cfg.components, "cusum")
        self.floor_ = cfg.floor
        self.stuck_ignore_zero_ = cfg.stuck_ignore_zero
        self.decision_ = decision_config()
        self.calibrated_ = tuple(c for c in CALIBRATED if c in self.components_)
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
        # Refit without the rows any component flags: no learning from anomalies in the history.
        keep = self._frame_scores(F) < 0.3
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

    def raw_scores(self, state: SeriesState, t: float, v: float) -> tuple[dict, dict]:
        """(raw component scores, features) of reading ``(t, v)``; updates only the raw parts of
        the state (recent values, run length), never what is learned."""
        fs = state.features
        f = series_features(fs, t, v, self.floor_)
        comps = self.components_
        raw = {}
        if fs.n >= WARMUP:  # the noise scale needs some history before z-scores mean anything
            if "spike" in comps:
                raw["spike"] = abs(f["spike_z"])
            if "level_shift" in comps:
                center, spread = fs.level_baseline(self.floor_)
                raw["level_shift"] = abs(median(fs.recent) - center) / spread
            if "cusum" in comps and state.cusum_n >= 5:
                # (never below half the short-term noise: a flat stretch does not make the next wobble huge)
                sd = max(math.sqrt(state.cusum_var), 0.5 * fs.noise_scale(self.floor_), self.floor_)
                e = (v - self._season_of(state, f["hour"]) - state.cusum_mu) / sd
                # a reading back near the baseline forgets faster: the stale sum of a shift that
                # is over (a valve open again) is released within tens of readings, not ~100
                leak = CUSUM_LEAK if abs(e) >= 1.0 else CUSUM_RELEASE
                hi = state.cusum_hi = max(0.0, leak * state.cusum_hi + e - CUSUM_K)
                lo = state.cusum_lo = max(0.0, leak * state.cusum_lo - e - CUSUM_K)
                raw["cusum"] = max(hi, lo)
            if "drift" in comps and fs.reference is not None:
                # the slow average swings with the daily cycle: its normal range is only known
                # once the calibration has seen whole days
                if state.first_t is None:
                    state.first_t = t
                elif t - state.first_t >= DRIFT_WARM_S:
                    raw["drift"] = abs(f["drift"])
            if "time_of_day" in comps:
                tod = self.time_of_day_
                if tod is not None:
                    h = f["hour"]
                    z = None if tod.scale_[h] == np.inf else abs(v - state.tod_offset - tod.center_[h]) / tod.scale_[h]
                else:
                    z = state.season.z(t, v, fs.noise_scale(self.floor_))
                if z is not None:
                    raw["time_of_day"] = float(z)
        return raw, f

    def _season_of(self, state: SeriesState, hour: int) -> float:
        """The trained hour-of-day level (0 untrained): the CUSUM follows what is left after it."""
        tod = self.time_of_day_
        if tod is None or "time_of_day" not in self.components_:
            return 0.0
        c = tod.center_[hour]
        return float(c) + state.tod_offset if np.isfinite(c) else 0.0

    def learn_cusum(self, state: SeriesState, t: float, v: float) -> None:
        """Admit an accepted reading into the CUSUM's baseline (mean and variance)."""
        if "cusum" not in self.components_ or state.features.run_n > REPEATS_LEARNED:
            return
        y = v - self._season_of(state, hour_of_day(t))
        n = state.cusum_n = state.cusum_n + 1
        a = 1.0 / min(n, CUSUM_MEMORY)
        d = y - state.cusum_mu
        state.cusum_mu += a * d
        state.cusum_var += a * ((1.0 - a) * d * d - state.cusum_var) if n > 1 else 0.0

    def step(self, state: SeriesState, t: float, v: float) -> tuple[float, dict]:
        """Score reading ``(t, v)`` from the readings before it, then learn from it unless the
        series is in an abnormal regime. Returns ``(score, {component: score})``.

        Messy time is scored, never refused: a reading earlier than the one before (a clock
        resync) is scored at the latest time seen and counted in ``state.late``; one at the same
        time in ``state.repeated`` (an exact replay is not learned twice); a jump of more than ten
        typical intervals in ``state.gaps``."""
        last = state.last_t
        replay = False
        if last is not None:
            dt = t - last
            if dt < 0:
                state.late += 1
                t = last
            elif dt == 0:
                state.repeated += 1
                replay = v == state.features.last_accepted
            else:
                iv = state.interval
                if iv.n and dt > 10 * iv.seconds:
                    state.gaps += 1
                iv.add(dt)
        state.last_t = t
        raw, f = self.raw_scores(state, t, v)
        dec = self.decision_
        if state.points_key != state.interval.key:  # rates are per sensor-day: per reading at its interval
            state.points_key = state.interval.key
            state.points = dec.points_at(state.points_key)
        points = state.points
        cals = state.calibrators
        parts = {}
        k = len(raw)
        for c, x in raw.items():
            # Bonferroni over the components: the combined score keeps the configured tail rates
            parts[c] = level_score(min(1.0, cals[c].p(x) * k), points)
        if "stuck" in self.components_ and not (self.stuck_ignore_zero_ and v == 0):
            parts["stuck"] = self.stuck_.score_one(f["run_s"])
        score = max(parts.values()) if parts else 0.0
        reg = state.regime
        if any(cals[c].prior for c in raw):
            # cold start: the series' own score history is still being gathered; its scores are
            # shown but raise no level and freeze nothing (a regime entered on a guess would stick)
            reported, learn_ok = min(score, dec.low_cut - 0.01), True
        else:
            reported, learn_ok = decide(reg, dec, score, t, state.interval.seconds)
        if learn_ok:
            state.quarantine.clear()
            if not replay:
                fs = state.features
                learn(fs, t, v)
                self.learn_cusum(state, t, v)
                if fs.run_n <= REPEATS_LEARNED:
                    for c, x in raw.items():
                        cals[c].add(x)
                    if "time_of_day" in self.components_:
                        state.season.learn(t, v)
        else:
            state.quarantine.append((t, v))
            if parts.get("stuck", 0.0) >= dec.low_cut:
                pass  # a stuck value is never the new normal
            elif reg.n >= dec.relearn_n and t - reg.since >= dec.relearn_s:
                self._relearn(state)
            elif len(state.quarantine) == QUARANTINE:
                end = regime_end(state.features, state.quarantine, self.floor_,
                                 state.season if "time_of_day" in self.components_ and self.time_of_day_ is None else None)
                if end == "returned":
                    self._relearn(state, returned=True)
                elif end == "recovered":
                    fs = state.features
                    fs.short.clear()
                    fs.short.extend(q for _, q in list(state.quarantine)[-fs.short.maxlen:])
                    state.quarantine.clear()
                    state.cusum_hi = state.cusum_lo = 0.0
                    reg.active, reg.hits, reg.calm = False, 0, 0.0
        return float(reported), parts

    def _relearn(self, state: SeriesState, returned: bool = False) -> None:
        """A regime far longer than any incident: the new normal (a re-installed sensor, a
        changed set-point). The baselines restart from the regime's recent readings; counted in
        ``state.regime.relearned``. Stuck values never are. With ``returned`` (the series came
        back, :func:`regime_end`) only the short-term baselines restart; the drift reference, the
        slow average and the hour-of-day profile are kept; counted in ``state.regime.returned``."""
        fs = state.features
        state.cusum_hi = state.cusum_lo = 0.0  # measured against baselines that restart now
        state.cusum_n = 0
        fs.short.clear()
        fs.long.clear()
        fs.diffs.clear()
        fs.last_accepted = None
        fs.scale_n = fs.level_n = -1
        for qt, qv in state.quarantine:
            learn(fs, qt, qv)
            self.learn_cusum(state, qt, qv)
        reg = state.regime
        if returned:  # back to normal: what the series knows of its long-run levels still holds
            state.quarantine.clear()
            reg.active, reg.hits, reg.calm = False, 0, 0.0
            reg.returned += 1
            return
        fs.reference = median(q for _, q in state.quarantine)
        if self.time_of_day_ is not None:
            tod = self.time_of_day_.center_
            offsets = [q - tod[hour_of_day(qt)] for qt, q in state.quarantine if np.isfinite(tod[hour_of_day(qt)])]
            if offsets:
                state.tod_offset = median(offsets)
        else:
            state.season = SeasonProfile()
        fs.ewm = fs.reference
        state.quarantine.clear()
        reg.active, reg.hits, reg.calm = False, 0, 0.0
        reg.relearned += 1

    def score_frame(self, X) -> pd.DataFrame:
        """Scores of a whole ``timestamp,value`` series, streaming (row k uses rows <= k)."""
        frame = _as_frame(X, sort=False)
        from analytics.rules import to_epoch

        st = self.new_state()
        out = []
        for ts, v in zip(frame["timestamp"], frame["value"].to_numpy(dtype=float)):
            score, parts = self.step(st, to_epoch(ts), float(v))
            out.append((score, max(parts, key=parts.get) if score > 0 and parts else ""))
        return pd.DataFrame(out, columns=["anomaly_score", "component"], index=frame.index)


# ------------------------------------------------------------------------------------ sites
SITE_REFRESH = 32  # accepted rows between re-inverting a site's covariance
SITE_SHRINK = 0.2  # largest weight of the identity in the shrinkage covariance of a site's residuals
SITE_MEMORY = 2000.0  # rows the covariance averages over, at most
# The smallest spread a channel's level residual is given in the joint score, in units of its
# short-term noise (a fitted tail is never narrower than a quarter of it either: PRIOR_MIN_SCALE).
# A quantised channel that mostly sits on its median (SKAB's flow gauge) has residuals ~0 on normal
# rows (sd 0.01): its next one-step move counted as a 100-sd excursion, so the site's T² on normal
# rows ran in the thousands (calibration anchor 8,879 on valve1/0, 5.4 with the floor) and hid
# every other channel. (0.5 made the joint score of a broken three-channel relation weaker than
# its one channel's own score.)
SITE_MIN_SD = 0.25
# Readings of each channel's own calibration history before the site decides. A tail fitted to
# fewer is mostly the prior's guess, and a site regime entered on a guess sticks (nothing is
# learned inside it): at 25 a slowly trending channel (a pump's temperature) opened regimes in
# its first minutes and held them (SKAB, site with CUSUM: FAR 82 % at 25, 32 % at 100, 24 % at 200).
SITE_TRUST = 200.0


@dataclass
class SiteState:
    """Per-site state of a :class:`SiteDetector`: each channel's series state, the running mean and
    second moment of the channels' standardised level residuals on accepted rows, the cached
    inverse of their shrinkage covariance, the joint score's calibrator and the site's regime."""

    channels: list
    mean: list
    second: list  # k x k, row-major
    inverse: list  # k x k, row-major; identity until estimated
    rows: float = 0.0
    since_inverse: int = 0
    calibrator: TailCalibrator = field(default_factory=TailCalibrator)
    regime: Regime = field(default_factory=Regime)
    last_t: float | None = None
    late: int = 0
    repeated: int = 0
    gaps: int = 0
    missing: int = 0
    opener: str | None = None  # the part that opened the current regime
    opener_quiet: int = 0  # rows in a row that part has been below the exit score
    interval: SamplingInterval = field(default_factory=SamplingInterval)  # learned time between rows
    points: tuple = ()
    points_key: int | None = None

    def nbytes(self) -> int:
        k = len(self.channels)
        return sum(c.nbytes() for c in self.channels) + (3 * k * k + k) * 32 + self.calibrator.nbytes + 1024

    def time_counts(self) -> dict:
        return {"late": self.late, "repeated": self.repeated, "gaps": self.gaps, "missing": self.missing}


class SiteDetector(BaseEstimator):
    """Co-located channels (one station, one grid cell, a configured group: SKAB's eight pump
    channels) scored jointly through the same path as one series.

    Each row: every channel's raw components as in :class:`SeriesDetector`, and the vector of its
    standardised level residuals (the median of the last readings against the accepted long
    window). The joint raw score is Hotelling's T² of that vector under a shrinkage covariance
    (toward the identity, ``SITE_SHRINK`` at most, less as rows accumulate) estimated on accepted rows only; it is calibrated like
    any component, combined (Bonferroni) with the channels' own calibrated components, and one
    site regime decides what every channel learns. Each channel also runs the ``cusum``
    component (a sustained small shift of one channel: SKAB's valve closures), and the site
    decides only once every channel's calibration has ``SITE_TRUST`` readings. A site regime
    ends once the part that opened it (a channel, or ``joint``) has been below the exit score for
    ``exit_n`` rows in a row; channels still away from their frozen baselines then restart their
    short-term baselines from the regime's recent readings (counted in ``regime.returned``).
    A missing channel value (``None`` or NaN)
    counts as at its baseline and is counted in ``state.missing``.
    """

    def __init__(self, channels: tuple = (), metrics: tuple | None = None):
        self.channels = channels
        self.metrics = metrics

    def prior(self):
        if not self.channels:
            raise AnalyticsError("a site needs at least one channel")
        metrics = self.metrics or (None,) * len(self.channels)
        if len(metrics) != len(self.channels):
            raise AnalyticsError("give one metric per channel (or none)")
        self.detectors_ = [SeriesDetector(metric=m, cusum=True).prior() for m in metrics]
        self.decision_ = decision_config()
        return self

    def new_state(self) -> SiteState:
        if not hasattr(self, "detectors_"):
            raise AnalyticsError("call prior() first: a site learns online, from its own rows")
        k = len(self.detectors_)
        ident = [1.0 if i == j else 0.0 for i in range(k) for j in range(k)]
        return SiteState(channels=[d.new_state() for d in self.detectors_], mean=[0.0] * k,
                         second=list(ident), inverse=list(ident))

    def _reinvert(self, st: SiteState) -> None:
        k = len(st.mean)
        m = np.array(st.mean)
        cov = np.array(st.second).reshape(k, k) - np.outer(m, m)
        sd = np.sqrt(np.clip(np.diag(cov), 1e-12, None))
        corr = cov / np.outer(sd, sd)
        lam = min(SITE_SHRINK, SITE_SHRINK * 20 * k / max(st.rows, 1.0))  # less as rows accumulate
        shrunk = (1.0 - lam) * corr + lam * np.eye(k)
        sd = np.maximum(sd, SITE_MIN_SD)
        inv = np.linalg.pinv(shrunk) / np.outer(sd, sd)
        st.inverse = inv.ravel().tolist()
        st.since_inverse = 0

    def step(self, state: SiteState, t: float, values) -> tuple[float, dict]:
        """Score one row of channel values (in ``channels`` order). Returns ``(score, parts)``
        with parts ``{"joint": score, channel: its highest component score}``."""
        if len(values) != len(self.detectors_):
            raise AnalyticsError(f"expected {len(self.detectors_)} values, got {len(values)}")
        last = state.last_t
        if last is not None:
            if t < last:
                state.late += 1
                t = last
            elif t == last:
                state.repeated += 1
            else:
                iv = state.interval
                if iv.n and t - last > 10 * iv.seconds:
                    state.gaps += 1
                iv.add(t - last)
        state.last_t = t
        dec = self.decision_
        k = len(self.detectors_)
        # the rates are per sensor-day: a site of k sensors raises one stream of alarms for all of
        # them, k sensor-days a day (its curve is that of one sensor read k times as rarely)
        key = state.interval.key + round(INTERVAL_STEPS * math.log2(k))
        if state.points_key != key:
            state.points_key = key
            state.points = dec.points_at(key)
        points = state.points
        r = [0.0] * k
        raws, ps, cold = [], [], False
        names = self.channels
        parts = {}
        n_comp = 0
        for i, (det, cs, v) in enumerate(zip(self.detectors_, state.channels, values)):
            if v is None or math.isnan(v):
                state.missing += 1
                raws.append(None)
                continue
            v = float(v)
            cs.last_t = t
            raw, _ = det.raw_scores(cs, t, v)
            raws.append((raw, v))
            fs = cs.features
            if fs.n >= WARMUP:
                # in units of the channel's short-term noise (steadier than the window's spread,
                # which swings with the wander the covariance is there to explain)
                # (against the window's plain median: the shared wander is the covariance's to
                # explain, not each channel's trend line)
                fs.level_baseline(det.floor_)
                r[i] = (median(fs.recent) - fs.window_median()) / fs.noise_scale(det.floor_)
            pmin = 1.0
            for c, x in raw.items():
                cal = cs.calibrators[c]
                cold = cold or cal.count() < SITE_TRUST
                p = cal.p(x)
                pmin = min(pmin, p)
                n_comp += 1
            ps.append((names[i], pmin))
        # Hotelling's T² of the residual vector (plain floats: k is small, rows are many)
        inv = state.inverse
        d = [r[i] - state.mean[i] for i in range(k)]
        t2 = 0.0
        for i in range(k):
            row = inv[i * k:(i + 1) * k]
            t2 += d[i] * sum(row[j] * d[j] for j in range(k))
        joint_raw = math.sqrt(max(t2, 0.0) / k)
        cold = cold or state.calibrator.prior or state.rows < 4 * k
        m = n_comp + 1
        parts["joint"] = level_score(min(1.0, state.calibrator.p(joint_raw) * 2), points)
        for name, p in ps:
            parts[name] = level_score(min(1.0, p * 2 * m), points)
        score = max(parts.values())
        ended = False
        if cold:
            reported, learn_ok = min(score, dec.low_cut - 0.01), True
        else:
            reg = state.regime
            was_active = reg.active
            reported, learn_ok = decide(reg, dec, score, t, state.interval.seconds)
            if reg.active and not was_active:
                state.opener, state.opener_quiet = max(parts, key=parts.get), 0
            elif reg.active and state.opener is not None:
                # the evidence that opened the regime is gone (the valve is open again): the
                # regime ends, and channels still away from their frozen baselines (a temperature
                # that moved meanwhile) restart their short-term baselines from the regime's readings
                state.opener_quiet = state.opener_quiet + 1 if parts.get(state.opener, 0.0) < dec.exit_score else 0
                if state.opener_quiet >= dec.exit_n:
                    ended = True
        if ended:
            reg = state.regime
            for det, cs, item in zip(self.detectors_, state.channels, raws):
                if item is not None:
                    cs.quarantine.append((t, item[1]))
                if cs.quarantine:
                    det._relearn(cs, returned=True)
            reg.active, reg.hits, reg.calm = False, 0, 0.0
            reg.returned += 1
            state.opener = None
        elif learn_ok:
            for det, cs, item in zip(self.detectors_, state.channels, raws):
                cs.quarantine.clear()
                if item is None:
                    continue
                raw, v = item
                learn(cs.features, t, v)
                det.learn_cusum(cs, t, v)
                if cs.features.run_n <= REPEATS_LEARNED:
                    for c, x in raw.items():
                        cs.calibrators[c].add(x)
            if state.rows >= 4 * k:
                state.calibrator.add(joint_raw)
            n = state.rows = state.rows + 1.0
            a = 1.0 / min(n, SITE_MEMORY)
            mean, second = state.mean, state.second
            for i in range(k):
                mean[i] += a * (r[i] - mean[i])
                ri = r[i]
                base = i * k
                for j in range(k):
                    second[base + j] += a * (ri * r[j] - second[base + j])
            state.since_inverse += 1
            if state.since_inverse >= SITE_REFRESH:
                self._reinvert(state)
        else:
            for cs, item in zip(state.channels, raws):
                if item is not None:
                    cs.quarantine.append((t, item[1]))
                    # a spike is one reading far from the few before it: inside a regime its
                    # baseline follows the readings (frozen, it held the readings learned at the
                    # onset and flagged a channel back at its level as a spike for ever); the
                    # level, CUSUM and joint parts stay measured against the frozen baselines
                    cs.features.short.append(item[1])
            reg = state.regime
            if reg.n >= dec.relearn_n and t - reg.since >= dec.relearn_s:
                for det, cs in zip(self.detectors_, state.channels):
                    if cs.quarantine:
                        det._relearn(cs)
                reg.active, reg.hits, reg.calm = False, 0, 0.0
                reg.relearned += 1
        return float(reported), parts


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


class SitePool:
    """The latest calibrated tail probability of every member of every site (live sensors
    arrive one reading at a time, so a site is judged on its members' most recent readings),
    and their combination by the Cauchy rule (valid under the dependence co-located sensors have).
    Memory: one (time, p) pair per sensor.

    >>> pool = SitePool(max_age=600)
    >>> pool.update("grid:1", "a", 0.0, 1e-5); pool.update("grid:1", "b", 10.0, 1e-4)
    >>> p, n = pool.combined("grid:1", 20.0, exclude="c"); n, p < 1e-4
    (2, True)
    >>> pool.combined("grid:1", 2000.0)
    (1.0, 0)
    """

    def __init__(self, max_age: float = 1800.0):
        self.max_age = max_age
        self.sites: dict[str, dict[str, tuple[float, float]]] = {}

    def update(self, site: str, member: str, t: float, p: float) -> None:
        self.sites.setdefault(site, {})[member] = (t, p)

    def combined(self, site: str, t: float, exclude: str | None = None) -> tuple[float, int]:
        """(combined p, members counted) of the site's fresh members other than ``exclude``."""
        members = self.sites.get(site) or {}
        ps = [p for m, (tm, p) in members.items() if m != exclude and t - tm <= self.max_age]
        if not ps:
            return 1.0, 0
        stat = sum(math.tan((0.5 - max(min(p, 1.0 - 1e-12), 1e-15)) * math.pi) for p in ps) / len(ps)
        return max(0.5 - math.atan(stat) / math.pi, 0.0), len(ps)
