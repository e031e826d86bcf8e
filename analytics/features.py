"""Feature building for the anomaly detectors, one code path for the stream and for training.

``series_features(state, t, v)`` is the streaming form (one reading -> a dict of features, using
only the readings before it); ``learn(state, t, v)`` admits a reading into the baselines (the
detector calls it only for readings it did not flag). ``frame_features(df)`` is the training form
(DataFrame -> DataFrame): it runs the streaming form over the rows, so offline and live features
are identical by construction.

>>> st = FeatureState()
>>> for i in range(30):
...     f = series_features(st, 60.0 * i, 10.0 + (i % 2) * 0.1)
...     learn(st, 60.0 * i, 10.0 + (i % 2) * 0.1)
>>> f = series_features(st, 1800.0, 30.0)
>>> f["spike_z"] > 50, f["shift_z"] < 1, f["run_s"]
(True, True, 0.0)
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from statistics import median

import numpy as np
import pandas as pd

FEATURES = ("spike_z", "shift_z", "run_s", "drift", "value", "hour")
SHORT = 5  # readings in the local baseline a spike is measured against
RECENT = 3  # raw readings whose median shows a level shift (one spike cannot move it)
LONG = 120  # readings in the long baseline and the noise estimate
REPEATS_LEARNED = 10
DRIFT_HALF_LIFE_S = 6 * 3600.0
LOCAL_TZ_OFFSET_S = 8 * 3600  # China Standard Time: the time of day people live by
# abs first differences -> noise sd (median |N(0, s) - N(0, s)| = 0.6745 * sqrt(2) * s)
DIFF_TO_SD = 1.0 / (0.6745 * math.sqrt(2.0))
MEAN_DIFF_TO_SD = math.sqrt(math.pi) / 2.0


@dataclass
class FeatureState:
    """Per-series memory: accepted baselines, raw recent values, run length, slow average."""

    short: deque = field(default_factory=lambda: deque(maxlen=SHORT))
    long: deque = field(default_factory=lambda: deque(maxlen=LONG))
    diffs: deque = field(default_factory=lambda: deque(maxlen=LONG))
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    run_value: float | None = None
    run_start: float | None = None
    run_n: int = 0  # readings repeating run_value
    ewm: float | None = None
    ewm_t: float | None = None
    reference: float | None = None
    last_accepted: float | None = None
    n: int = 0
    rejected_run: int = 0
    quarantine: list = field(default_factory=list)
    scale_cache: float = 0.0
    scale_n: int = -1

    level_cache: tuple = (0.0, 0.0, 0.0)
    level_n: int = -1

    def level_baseline(self, floor: float) -> tuple[float, float]:
        """(expected level now, robust spread) from the accepted long window, refreshed every 8
        learned readings: a robust line through the window (slope from the medians of its two
        halves) projected to the newest reading, so a daily cycle's slope or a slow normal drift is
        not taken for a level shift; the spread of the window about that line is never taken
        below the short-term noise."""
        if self.level_n < 0 or self.n - self.level_n >= 8:
            vals = list(self.long)
            n = len(vals)
            if n >= 5:
                half = n // 2
                slope = (median(vals[n - half:]) - median(vals[:half])) / (n - half)
                c = (n - 1) / 2.0
                res = [x - slope * (i - c) for i, x in enumerate(vals)]
                a = median(res)
                spread = median([abs(r - a) for r in res]) * 1.4826
                self.level_cache = (a + slope * (n - c), spread, median(vals))
                self.level_n = self.n
        m, spread, _ = self.level_cache
        return m, max(spread, self.noise_scale(floor))

    def window_median(self) -> float:
        """The plain median of the accepted long window (as of the last :meth:`level_baseline`)."""
        return self.level_cache[2]

    def noise_scale(self, floor: float) -> float:
        """Robust noise sd from recent first differences; re-estimated every 8 learned readings
        (a median of 120 numbers per reading would dominate the hot path)."""
        if self.scale_n < 0 or self.n - self.scale_n >= 8:
            # the median ignores spikes; half the mean keeps a quantised signal (most differences
            # exactly 0) from claiming no noise at all (E|x1 - x2| = 2 sd / sqrt(pi))
            # and never below the sensor's resolution, learned as the lower quartile of its non-zero
            # steps: a quantised signal (a gauge in steps of 0.33) moving one step is not an anomaly of
            # many sds (for a continuous signal this quartile is about 0.45 sd, so it changes nothing)
            if len(self.diffs) >= 5:
                steps = sorted(d for d in self.diffs if d > 0)
                self.scale_cache = max(median(self.diffs) * DIFF_TO_SD,
                                       0.5 * MEAN_DIFF_TO_SD * sum(self.diffs) / len(self.diffs),
                                       steps[len(steps) // 4] if steps else 0.0)
            else:
                self.scale_cache = 0.0
            self.scale_n = self.n if len(self.diffs) >= 5 else -1
        return max(self.scale_cache, floor)


def hour_of_day(t: float) -> int:
    """Local (UTC+8) hour of day of an epoch time.

    >>> hour_of_day(0.0)
    8
    """
    return int(((t + LOCAL_TZ_OFFSET_S) % 86400) // 3600)


def series_features(state: FeatureState, t: float, v: float, floor: float = 1e-6,
                    reference: float | None = None) -> dict:
    """Features of reading ``(t, v)`` given the state built from the readings before it.

    ``floor`` is the smallest credible noise scale (the metric's resolution); ``reference`` is the
    expected value at this time of day when a trained profile knows it (for drift).
    Updates only the raw parts of the state (run length, recent values), never the baselines.
    """
    scale = state.noise_scale(floor)
    if state.short:
        spike_z = (v - median(state.short)) / scale
    else:
        spike_z = 0.0
    state.recent.append(v)
    if len(state.short) == SHORT and len(state.recent) == RECENT:
        # a step, not a ramp: the last three raw readings against the accepted ones before them
        shift_z = (median(state.recent) - median(state.short)) / scale
    else:
        shift_z = 0.0
    if state.run_value is not None and abs(v - state.run_value) <= 1e-9 * max(1.0, abs(v)):
        run_s = max(t - state.run_start, 0.0)
        state.run_n += 1
    else:
        state.run_value, state.run_start, run_s, state.run_n = v, t, 0.0, 0
    ref = reference if reference is not None else state.reference
    drift = 0.0
    if state.ewm is not None and ref is not None:
        drift = (state.ewm - ref) / scale
    return {"spike_z": float(spike_z), "shift_z": float(shift_z), "run_s": float(run_s),
            "drift": float(drift), "value": float(v), "hour": hour_of_day(t)}


def learn(state: FeatureState, t: float, v: float) -> None:
    """Admit ``(t, v)`` into the baselines (only readings the detector did not flag). A value
    repeated more than ``REPEATS_LEARNED`` times says nothing new about the sensor's level or
    noise (a frozen sensor would otherwise teach the baselines that it has none)."""
    if state.run_n > REPEATS_LEARNED:
        return
    if state.last_accepted is not None:
        state.diffs.append(abs(v - state.last_accepted))
    state.last_accepted = v
    state.short.append(v)
    state.long.append(v)
    state.n += 1
    if state.n == LONG and state.reference is None:
        state.reference = median(state.long)  # the sensor's level once warmed up
    if state.ewm is None:
        state.ewm, state.ewm_t = v, t
    else:
        dt = max(t - state.ewm_t, 0.0)
        a = 1.0 - 0.5 ** (dt / DRIFT_HALF_LIFE_S)
        state.ewm += a * (v - state.ewm)
        state.ewm_t = t


def frame_features(frame: pd.DataFrame, floor: float = 1e-6) -> pd.DataFrame:
    """Training form: ``timestamp,value`` rows (sorted by time) -> one row of FEATURES each.
    With a ``series`` column (e.g. the sensor id), each series is featurised on its own.

    Every reading is admitted to the baselines: training history is mostly normal, and the
    detectors' robust statistics shrug off the rest.
    """
    if "series" in frame.columns:
        parts = [frame_features(g.drop(columns="series"), floor) for _, g in frame.groupby("series", sort=True)]
        return pd.concat(parts).loc[frame.index] if parts else pd.DataFrame(columns=list(FEATURES))
    ts = _epoch_seconds(frame["timestamp"])
    vals = frame["value"].to_numpy(dtype=float)
    st = FeatureState()
    rows = []
    for t, v in zip(ts, vals):
        rows.append(series_features(st, t, v, floor))
        learn(st, t, v)
    return pd.DataFrame(rows, columns=list(FEATURES), index=frame.index)


def _epoch_seconds(col: pd.Series) -> np.ndarray:
    if np.issubdtype(col.dtype, np.number):
        return col.to_numpy(dtype=float)
    dt = pd.to_datetime(col, utc=True)
    return (dt - pd.Timestamp("1970-01-01", tz="UTC")).dt.total_seconds().to_numpy()
