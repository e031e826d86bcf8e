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
DRIFT_HALF_LIFE_S = 6 * 3600.0
LOCAL_TZ_OFFSET_S = 8 * 3600  # China Standard Time: the time of day people live by
# abs first differences -> noise sd (median |N(0, s) - N(0, s)| = 0.6745 * sqrt(2) * s)
DIFF_TO_SD = 1.0 / (0.6745 * math.sqrt(2.0))


@dataclass
class FeatureState:
    """Per-series memory: accepted baselines, raw recent values, run length, slow average."""

    short: deque = field(default_factory=lambda: deque(maxlen=SHORT))
    long: deque = field(default_factory=lambda: deque(maxlen=LONG))
    diffs: deque = field(default_factory=lambda: deque(maxlen=LONG))
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    run_value: float | None = None
    run_start: float | None = None
    ewm: float | None = None
    ewm_t: float | None = None
    reference: float | None = None
    last_accepted: float | None = None
    n: int = 0
    rejected_run: int = 0
    quarantine: list = field(default_factory=list)
    scale_cache: float = 0.0
    scale_n: int = -1

    def noise_scale(self, floor: float) -> float:
        """Robust noise sd from recent first differences; re-estimated every 8 learned readings
        (a median of 120 numbers per reading would dominate the hot path)."""
        if self.scale_n < 0 or self.n - self.scale_n >= 8:
            self.scale_cache = median(self.diffs) * DIFF_TO_SD if len(self.diffs) >= 5 else 0.0
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
        run_s = t - state.run_start
    else:
        state.run_value, state.run_start, run_s = v, t, 0.0
    ref = reference if reference is not None else state.reference
    drift = 0.0
    if state.ewm is not None and ref is not None:
        drift = (state.ewm - ref) / scale
    return {"spike_z": float(spike_z), "shift_z": float(shift_z), "run_s": float(run_s),
            "drift": float(drift), "value": float(v), "hour": hour_of_day(t)}


def learn(state: FeatureState, t: float, v: float) -> None:
    """Admit ``(t, v)`` into the baselines (only readings the detector did not flag)."""
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
