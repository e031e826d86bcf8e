"""Anomaly detectors: estimator contract, each kind of fault, no learning from flagged points."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import estimator_checks_generator

from analytics import (
    AnalyticsError,
    DriftDetector,
    LevelShiftDetector,
    ScoreThresholder,
    SeriesDetector,
    SpikeDetector,
    StuckDetector,
    TimeOfDayDetector,
    frame_features,
)
from analytics.features import FeatureState, learn, series_features

T0 = 1_780_000_000.0


def _name(check) -> str:
    return getattr(check, "func", check).__name__


# scikit-learn's own checks, less the array-API ones (they need SCIPY_ARRAY_API set at import).
CHECKS = [(est, chk) for e in (SpikeDetector(), LevelShiftDetector(), DriftDetector(), StuckDetector(),
                               TimeOfDayDetector())
          for est, chk in estimator_checks_generator(e) if "array_api" not in _name(chk)]


@pytest.mark.parametrize("estimator, check", CHECKS,
                         ids=[f"{type(e).__name__}-{_name(c)}" for e, c in CHECKS])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def series(n=3000, seed=1, noise=0.03):
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * 60.0
    v = 3 + 0.2 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, noise, n)
    return t, v


@pytest.fixture(scope="module")
def trained():
    t, v = series(seed=1)
    return SeriesDetector(metric="water_level", random_state=0).fit(pd.DataFrame({"timestamp": t, "value": v}))


def test_fit_sets_learned_state_and_is_reproducible(trained):
    t, v = series(seed=1)
    again = clone(trained).fit(pd.DataFrame({"timestamp": t, "value": v}))
    assert trained.n_train_ == 3000
    np.testing.assert_array_equal(again.time_of_day_.center_, trained.time_of_day_.center_)
    assert not hasattr(SeriesDetector(), "floor_")  # __init__ stores parameters only


@pytest.mark.parametrize("make", ["trained", "prior"])
def test_faults_are_scored_and_clean_data_is_not(make, trained):
    det = trained if make == "trained" else SeriesDetector(metric="water_level").prior()
    t, v = series(seed=2)
    v[500] += 1.0  # spike
    v[1000:1600] = v[999]  # stuck for 10 h (> 1.5 x the 6 h untrained limit)
    v[2200:] += 0.6  # level shift
    s = det.score_frame(pd.DataFrame({"timestamp": t, "value": v}))["anomaly_score"].to_numpy()
    assert ((0 <= s) & (s <= 1)).all()
    assert s[500] >= 0.9
    assert s[1000:1600].max() >= 0.9
    assert s[2201:2210].max() >= 0.9
    quiet = np.r_[s[20:495], s[510:995], s[1610:2195]]
    assert (quiet >= 0.6).sum() == 0
    # A detector does not learn from what it flags: the new level stays flagged (a closed valve
    # stays a closed valve) until it outlasts the relearn horizon (anomaly.yaml `decision`:
    # 600 readings and 10 minutes), then it is the new normal: no endless alarm.
    assert (s[2201:2790] >= 0.6).all()
    assert (s[2850:] >= 0.6).sum() == 0


def test_flagged_points_are_not_learned():
    det = SeriesDetector(metric="water_level").prior()
    t, v = series(n=300)
    st = det.new_state()
    for ti, vi in zip(t[:200], v[:200]):
        det.step(st, ti, vi)
    before = list(st.features.long)
    score, parts = det.step(st, t[200], 50.0)
    assert score == 1.0 and list(st.features.long) == before


def test_frame_features_equal_streaming_features():
    t, v = series(n=400)
    frame = frame_features(pd.DataFrame({"timestamp": t, "value": v}), floor=0.01)
    st, rows = FeatureState(), []
    for ti, vi in zip(t, v):
        rows.append(series_features(st, ti, vi, 0.01))
        learn(st, ti, vi)
    pd.testing.assert_frame_equal(frame, pd.DataFrame(rows, columns=frame.columns))


def test_stuck_ignores_zero_runs_for_rain():
    det = SeriesDetector(metric="rainfall").prior()
    t = T0 + np.arange(24 * 60) * 60.0
    v = np.zeros(len(t))
    v[-300:] = 7.3  # then frozen on a non-zero value for 5 h... and 2 more
    t2 = np.r_[t, t[-1] + 60.0 * np.arange(1, 200)]
    v2 = np.r_[v, np.full(199, 7.3)]
    s = det.score_frame(pd.DataFrame({"timestamp": t2, "value": v2}))["anomaly_score"].to_numpy()
    assert s[: len(t) - 300].max() == 0.0 and s[-1] > 0.3


def test_thresholder_maps_scores_to_levels():
    th = ScoreThresholder().fit()
    assert list(th.levels([0.0, 0.59, 0.6, 0.95])) == ["", "", "blue", "yellow"]
    with pytest.raises(AnalyticsError):
        ScoreThresholder(cuts={"purple": 0.5}).fit()


def test_training_needs_enough_history():
    with pytest.raises(AnalyticsError, match="at least 50"):
        SeriesDetector(metric="water_level").fit(pd.DataFrame({"timestamp": [T0], "value": [1.0]}))
    with pytest.raises(AnalyticsError, match="unknown metric"):
        SeriesDetector(metric="nope").prior()
