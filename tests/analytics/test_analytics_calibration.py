"""Calibrated scores (issue 11): configured tail rates hold on normal data, flagged regimes stay
flagged, messy time is scored and counted, sites are scored jointly, scoring is streaming."""

import dataclasses
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics import SeriesDetector
from analytics.calibration import TailCalibrator, level_points, level_score, score_p
from analytics.detectors import SiteDetector, decision_config
from analytics.series import score_text

T0 = 1_780_000_000.0
# The shared SKAB copy beside the repository (GPL: read in place, never shipped); a git worktree
# sits one level deeper than the repository itself, so look upward for it.
SKAB = next((p / "shared" / "data" / "skab" / "data" for p in Path(__file__).resolve().parents[2:]
             if (p / "shared" / "data" / "skab" / "data").is_dir()), Path("/nonexistent"))


# ------------------------------------------------------------------------------ calibration
@pytest.mark.parametrize("dist", ["student3", "laplace"])
def test_calibrator_tail_matches_the_rate_on_heavy_tailed_scores(dist):
    """Inside the history the p-value is the empirical tail; beyond the anchor the Pareto tail:
    on heavy-tailed normal scores the share of fresh scores at or below a p cut is the cut."""
    rng = np.random.default_rng(3)
    draw = (lambda n: np.abs(rng.standard_t(3, n))) if dist == "student3" else (lambda n: rng.laplace(0, 1, n) ** 2)
    cal = TailCalibrator()
    for x in draw(20_000):
        cal.add(float(x))
    fresh = draw(200_000)
    ps = np.array([cal.p(float(x)) for x in fresh])
    for rate in (0.05, 0.01, 1e-3):
        share = float((ps <= rate).mean())
        assert rate / 2 <= share <= rate * 2, (rate, share)


def test_calibrator_is_conservative_on_gaussian_scores_and_bounded():
    rng = np.random.default_rng(4)
    cal = TailCalibrator()
    for x in np.abs(rng.normal(size=20_000)):
        cal.add(float(x))
    ps = np.array([cal.p(float(x)) for x in np.abs(rng.normal(size=200_000))])
    assert 0.005 <= (ps <= 0.01).mean() <= 0.02  # the empirical part is exact
    assert (ps <= 1e-4).mean() <= 2e-4  # the fitted tail never claims more rarity than there is
    assert cal.p(12.0) < 1e-5  # and a 12-sigma reading is still very rare
    assert cal.nbytes < 1800  # fixed, whatever the history's length


@pytest.mark.parametrize("seed", range(6))
def test_a_short_serially_correlated_history_does_not_claim_a_heavy_tail(seed):
    """400 readings of a slowly wandering Gaussian score (AR(1), 0.95: a few long excursions, as a
    CUSUM or a trend's level residual gives): its ~10 excesses over the anchor come in one or two
    clusters and say little about the tail's shape. The fitted shape stays near the exponential's
    0, so an 8-sd score is still very rare (unshrunk moments claimed xi 0.12-0.2 and put it at
    4e-5..1.4e-4, a level that 1 Hz rates per sensor-day never reach)."""
    rng = np.random.default_rng(seed)
    cal, a = TailCalibrator(), 0.0
    for e in rng.normal(size=400):
        a = 0.95 * a + math.sqrt(1 - 0.95 ** 2) * e
        cal.add(abs(a))
    assert cal.xi <= 0.1 and cal.p(8.0) < 3e-5, cal.state()
    assert cal.p(2.0) > 0.01  # and the body of the history stays the empirical share


def test_tail_floor_is_the_scores_resolution_so_a_quiet_continuous_sensor_keeps_its_narrow_tail():
    """A continuous score whose history is narrow (|N(0, 0.05)|: a very quiet sensor) keeps the
    tail its history shows: 10 of its sds out is rare (a fixed 0.25-wide floor called it 1 in 200).
    A quantised score (multiples of 0.6, mostly 0) is floored at its resolution: one step is not
    taken for a 1-in-a-million event."""
    rng = np.random.default_rng(0)
    quiet, steps = TailCalibrator(), TailCalibrator()
    for x in np.abs(rng.normal(0, 0.05, 3000)):
        quiet.add(float(x))
    for x in 0.6 * np.abs(np.round(rng.normal(0, 0.3, 3000))):
        steps.add(float(x))
    assert quiet.p(0.5) < 1e-4 and quiet.quantum < 1e-3
    assert steps.quantum == pytest.approx(0.6) and steps.p(0.6) > 0.01


def test_level_score_puts_each_configured_rate_on_its_cut():
    pts = level_points({"blue": 1e-4, "yellow": 1e-6}, {"blue": 0.6, "yellow": 0.9})
    assert level_score(1e-4, pts) == pytest.approx(0.6) and level_score(1e-6, pts) == pytest.approx(0.9)
    for p in (0.3, 1e-3, 1e-5, 3e-7):
        assert score_p(level_score(p, pts), pts) == pytest.approx(p, rel=1e-6)


def gaussian_day(n, seed, noise=0.03, daily=0.2, step=60.0):
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * step
    return t, 3 + daily * np.sin(2 * np.pi * t / 86400) + rng.normal(0, noise, n)


def run(det, t, v):
    """(reported scores, calibrated scores before the hysteresis, final state)."""
    st_ = det.new_state()
    rep, raw = [], []
    for a, b in zip(t, v):
        s, parts = det.step(st_, float(a), float(b))
        rep.append(s)
        raw.append(max(parts.values()) if parts else 0.0)
    return np.array(rep), np.array(raw), st_


@pytest.mark.parametrize("noise, lo", [("student3", 1 / 3), ("student5", 1 / 3), ("laplace", 1 / 3),
                                        ("gauss", 0.0)])
def test_alarm_rate_on_synthetic_normal_data_matches_the_configured_rate(noise, lo):
    """A daily cycle plus noise, no training: the share of readings whose calibrated score reaches
    blue is the configured blue rate (within a factor 3) on heavy-tailed noise, as real
    sensors have; on Gaussian noise the fitted tail is conservative (never above the rate). The
    hysteresis then enters a regime no more often than that."""
    rate = 0.144 * 60 / 86400  # anomaly.yaml rates_per_day.blue, per reading of a minute series
    rng = np.random.default_rng(5)
    n = 30_000
    t = T0 + np.arange(n) * 60.0
    e = {"student3": lambda: rng.standard_t(3, n), "student5": lambda: rng.standard_t(5, n),
         "laplace": lambda: rng.laplace(0, 1, n), "gauss": lambda: rng.normal(0, 1, n)}[noise]()
    v = 3 + 0.2 * np.sin(2 * np.pi * t / 86400) + 0.03 * e
    _, raw, st_ = run(SeriesDetector().prior(), t, v)
    share = float((raw[200:] >= decision_config().low_cut).mean())
    assert lo * rate <= share <= 3 * rate, share
    assert st_.regime.entered / n <= 3 * rate


def with_rates(det, **rates):
    """``det`` with other rates per sensor-day than anomaly.yaml's (to have events to count)."""
    det.decision_ = dataclasses.replace(decision_config(), rates=tuple(sorted(rates.items())))
    return det


@pytest.mark.parametrize("step, n, skip", [(60.0, 14_000, 3 * 1440), (1.0, 43_200, 2000)])
def test_configured_rate_is_per_sensor_day_whatever_the_sampling_interval(step, n, skip):
    """The rates are per sensor-day: a series read every minute and one read every second
    (jittered timestamps, heavy-tailed noise, a daily cycle, no training) reach blue about as
    often per day, the configured rate within a factor 3, though the 1 Hz one has 60 times as
    many readings. (30 a day, not anomaly.yaml's 0.144, to have events to count; the first days
    of the minute series are its components' cold starts: drift starts after two days.)"""
    rate = 30.0
    rng = np.random.default_rng(7)
    t = T0 + (np.arange(n) + rng.uniform(-0.1, 0.1, n)) * step
    v = 3 + 0.2 * np.sin(2 * np.pi * t / 86400) + 0.03 * rng.standard_t(5, n)
    _, raw, st_ = run(with_rates(SeriesDetector().prior(), blue=rate, yellow=rate / 100), t, v)
    assert st_.interval.seconds == pytest.approx(step, rel=0.05)  # learned from the timestamps
    days = (t[-1] - t[skip]) / 86400
    per_day = float((raw[skip:] >= decision_config().low_cut).sum()) / days
    assert rate / 3 <= per_day <= 3 * rate, per_day
    assert st_.regime.entered / days <= rate  # alarms (3 of 5 readings at blue) are rarer still


def test_sampling_interval_is_learned_robust_to_jitter_gaps_and_replays():
    from analytics.calibration import SamplingInterval

    rng = np.random.default_rng(1)
    iv = SamplingInterval()
    for k, dt in enumerate(rng.uniform(0.8, 1.2, 3000)):
        iv.add(float(dt) + (18_000.0 if k % 500 == 499 else 0.0))  # a 5 h outage now and then
    assert iv.seconds == pytest.approx(1.0, rel=0.06)
    for dt in [1e-3] * 5:  # a burst of near-replays
        iv.add(dt)
    assert iv.seconds == pytest.approx(1.0, rel=0.5)
    for _ in range(200):  # re-configured to once a minute: followed
        iv.add(60.0)
    assert iv.seconds == pytest.approx(60.0, rel=0.05)


def test_per_reading_rates_keep_minute_sensors_as_they_were():
    from analytics.calibration import interval_key, per_reading

    dec = decision_config()
    assert per_reading(dict(dec.rates), 60.0)["blue"] == pytest.approx(1e-4)
    assert dec.points_at(interval_key(60.0)) == dec.points
    one_hz = dec.points_at(interval_key(1.0))
    assert level_score(1e-4, one_hz) < dec.low_cut <= level_score(1e-4 / 60, one_hz) + 1e-9


def test_per_reading_tail_rates_in_a_configuration_are_refused_with_the_new_name(tmp_path):
    from analytics.errors import AnalyticsError

    bad = tmp_path / "anomaly.yaml"
    bad.write_text("version: 1\ndefaults: {components: [spike], floor_fraction: 0.0005}\n"
                   "thresholds: {blue: 0.6, yellow: 0.9}\ntail_rates: {blue: 1.0e-4, yellow: 1.0e-6}\n")
    with pytest.raises(AnalyticsError, match="rates_per_day"):
        decision_config(str(bad))


@pytest.mark.skipif(not (SKAB / "anomaly-free" / "anomaly-free.csv").is_file(),
                    reason="the shared SKAB copy is beside the repository on the team's machines and in CI")
def test_alarm_rate_on_a_real_anomaly_free_recording():
    """SKAB's anomaly-free recording (a real pump, eight channels, 2.6 h at 1 Hz; read from the
    shared copy, never shipped), every channel on its own after SKAB's 400-row warm-up. With
    anomaly.yaml's rates (per sensor-day) no regime opens: at most 1 false alarm per sensor-day,
    as the issue asks (the per-reading rates flagged 4.5 a sensor-day, 2.4 % of rows). At 30 a
    day (to have events to count) regimes open no more often than that, per sensor-day."""
    import pandas as pd

    d = pd.read_csv(SKAB / "anomaly-free" / "anomaly-free.csv", sep=";", index_col="datetime", parse_dates=True)
    t = (d.index - pd.Timestamp("1970-01-01")).total_seconds().to_numpy()
    sensor_days = len(d.columns) * (t[-1] - t[400]) / 86400
    for rates, most in ((None, 1.0), ({"blue": 30.0, "yellow": 0.3}, 30.0)):
        entered, flagged = 0, 0
        for col in d.columns:
            det = SeriesDetector().prior() if rates is None else with_rates(SeriesDetector().prior(), **rates)
            rep, _, st_ = run(det, t, d[col].to_numpy(float))
            assert st_.interval.seconds == pytest.approx(1.0, rel=0.05)
            entered += st_.regime.entered
            flagged += int((rep[400:] >= 0.6).sum())
        assert entered / sensor_days <= most, (rates, entered)
        if rates is None:
            assert flagged / (len(d.columns) * (len(d) - 400)) <= 0.005


# --------------------------------------------------------------------------- deciding
def test_a_long_abnormal_regime_stays_flagged_and_is_relearned_only_past_the_horizon():
    t, v = gaussian_day(2000, 7)
    v[600:] += 0.5  # a valve closed and left closed
    det = SeriesDetector(metric="water_level").prior()
    st_ = det.new_state()
    s = np.array([det.step(st_, float(a), float(b))[0] for a, b in zip(t, v)])
    dec = decision_config()
    assert (s[603:600 + dec.relearn_n] >= dec.low_cut).all()  # frozen baselines: no absorption
    assert st_.regime.relearned == 1 and (s[600 + dec.relearn_n + 5:] < dec.low_cut).all()  # then the new normal, reported


def test_a_return_to_the_long_run_level_after_a_learned_slow_onset_ends_the_regime_at_once():
    """A slow onset that was learned (unflagged) as it came, then a step back to the old level:
    against the learned baseline the return looks like a shift and a regime starts, but its
    readings sit at the long-run level, so it ends within the quarantine's length (counted in
    ``returned``), not after the re-learn horizon. A step away from the long-run level is not
    taken for a return."""
    from analytics.detectors import QUARANTINE

    dec = decision_config()
    rng = np.random.default_rng(21)
    n0, ramp, hold, after = 1500, 300, 300, 400
    level = np.concatenate([np.zeros(n0), np.linspace(0, -3, ramp), np.full(hold, -3.0), np.zeros(after)])
    v = 10 + level + rng.normal(0, 0.1, len(level))
    t = T0 + np.arange(len(v)) * 1.0
    rep, _, st_ = run(SeriesDetector().prior(), t, v)
    back = n0 + ramp + hold
    assert st_.regime.entered >= 1 and st_.regime.returned >= 1 and st_.regime.relearned == 0
    assert (rep[back + QUARANTINE + 10:] < dec.low_cut).all()
    # the same step, but away from where the series has always been, stays flagged
    v2 = 10 + np.concatenate([np.zeros(n0), np.full(400, 3.0)]) + rng.normal(0, 0.1, n0 + 400)
    rep2, _, st2 = run(SeriesDetector().prior(), T0 + np.arange(len(v2)) * 1.0, v2)
    assert st2.regime.returned == 0 and (rep2[n0 + 3:] >= dec.low_cut).all()


@pytest.mark.parametrize("seed", [0, 1])
def test_a_regime_back_at_its_baseline_ends_and_keeps_the_baselines(seed):
    """A departure that came in over a dozen readings (some learned before the regime was
    confirmed, so they sit in the short spike baseline), then a step back: the readings are back
    within the frozen level baseline's spread, so the regime ends within the quarantine's length,
    without a re-learn, and nothing after is flagged."""
    from analytics.detectors import QUARANTINE

    dec = decision_config()
    rng = np.random.default_rng(seed)
    n0, ramp, hold, after = 1500, 16, 300, 300
    level = np.concatenate([np.zeros(n0), np.linspace(0, -3, ramp), np.full(hold, -3.0), np.zeros(after)])
    v = 10 + level + rng.normal(0, 0.1, len(level))
    rep, _, st_ = run(SeriesDetector().prior(), T0 + np.arange(len(v)) * 1.0, v)
    back = n0 + ramp + hold
    assert (rep[n0 + ramp:back] >= dec.low_cut).all()
    assert (rep[back + QUARANTINE + 5:] < dec.low_cut).all()
    assert st_.regime.entered == 1 and st_.regime.relearned == 0 and st_.regime.returned == 0


def test_noise_scale_of_a_quantised_signal_is_at_least_its_step():
    """A gauge reporting in steps of 0.33 (mostly one level, one-step excursions): its noise scale
    is never below the step it reports in, learned from its own non-zero differences; a
    continuous signal's scale is its noise sd as before."""
    from analytics.features import FeatureState, learn

    rng = np.random.default_rng(4)
    quantised, continuous = FeatureState(), FeatureState()
    for i, (q, c) in enumerate(zip(0.05 + 0.33 * np.round(rng.normal(0, 0.45, 500)), rng.normal(0, 0.2, 500))):
        learn(quantised, float(i), float(q))
        learn(continuous, float(i), float(c))
    assert quantised.noise_scale(1e-9) >= 0.33 - 1e-9
    assert 0.16 <= continuous.noise_scale(1e-9) <= 0.24


@pytest.mark.parametrize("seed", [0, 1])
def test_heavy_daily_seasonality_with_a_level_shift(seed):
    """Minute readings with a daily cycle twenty times the noise (two harmonics) and, on the fifth
    weekday, a +10 step for three hours at noon. Untrained: no alarm on the four normal days, the
    step flagged within a few readings and throughout, and once it is over the regime ends
    within the quarantine's length, because the readings are ordinary for the hour by the online
    profile (the trend line frozen at the step's start is stale by then)."""
    from analytics.detectors import QUARANTINE

    dec = decision_config()
    rng = np.random.default_rng(seed)
    start = 1_780_243_200.0  # a Monday midnight, China Standard Time
    t = start + np.arange(6 * 1440) * 60.0
    hour = ((t - start) / 3600.0) % 24
    v = 50 + 20 * np.sin(2 * np.pi * (hour - 9) / 24) + 8 * np.sin(4 * np.pi * hour / 24) + rng.normal(0, 1.0, len(t))
    s0, s1 = 4 * 1440 + 12 * 60, 4 * 1440 + 15 * 60
    v[s0:s1] += 10.0
    rep, _, st_ = run(SeriesDetector().prior(), t, v)
    flagged = rep >= dec.low_cut
    assert not flagged[:s0].any()
    assert flagged[s0:s0 + 5].any() and flagged[s0 + 5:s1].all()
    assert not flagged[s1 + QUARANTINE:].any()
    assert st_.regime.entered == 1 and st_.regime.returned == 1


def test_hysteresis_enters_on_k_of_m_or_one_strong_reading_and_leaves_when_calm():
    from analytics.detectors import Regime, decide

    dec = decision_config()
    blue, strong = dec.low_cut + 0.05, dec.strong_cut + 0.05
    reg = Regime()
    lone = [decide(reg, dec, s, i)[0] for i, s in enumerate([0.1, blue, 0.1, 0.1, 0.1, 0.1, blue, 0.1])]
    assert max(lone) < dec.low_cut and reg.entered == 0  # isolated borderline readings: no level
    out = [decide(reg, dec, s, 10 + i) for i, s in enumerate([blue] * dec.enter_k)]
    assert out[-1][0] >= dec.low_cut and reg.active and not out[-1][1]  # confirmed, not learned
    held = [decide(reg, dec, 0.2, 20 + i)[0] for i in range(dec.exit_n - 1)]
    assert all(h >= dec.low_cut for h in held) and reg.active  # a brief lull does not flap the level
    assert decide(reg, dec, 0.2, 40) == (0.2, True) and not reg.active  # calm long enough: out
    assert decide(Regime(), dec, strong, 0)[0] == strong  # one reading at the strong level: at once


def test_strong_evidence_opens_a_regime_once_it_has_lasted_two_seconds():
    """A minute sensor's one strong reading opens a regime at once; a 1 Hz one's needs a second
    (a single 1 Hz sample of a vibration channel is a glitch), and a strong reading waiting for
    it is not learned."""
    from analytics.detectors import Regime, decide

    dec = decision_config()
    strong = dec.strong_cut + 0.05
    reg = Regime()
    first = decide(reg, dec, strong, 0.0, interval=1.0)
    assert first == (dec.low_cut - 0.01, False) and not reg.active
    assert decide(reg, dec, 0.1, 1.0, interval=1.0)[1] and not reg.active  # a lone glitch: nothing
    decide(reg, dec, strong, 2.0, interval=1.0)
    assert decide(reg, dec, strong, 3.0, interval=1.0)[0] == strong and reg.active
    minute = Regime()
    assert decide(minute, dec, strong, 0.0, interval=60.0)[0] == strong and minute.active


# ------------------------------------------------------------------------------ messy time
def test_messy_timestamps_are_scored_and_counted_never_refused(tmp_path, capsys):
    from tongguan.cli import main

    lines = ["timestamp,value"]
    rng = np.random.default_rng(9)
    ts = list(T0 + np.arange(600) * 60.0)
    ts[200] = ts[199] - 3600  # the clock went back (resync)
    ts[300] = ts[299]  # a repeated timestamp
    for i in range(400, 600):
        ts[i] += 86400  # a day-long gap
    for t, v in zip(ts, 3 + rng.normal(0, 0.03, 600)):
        lines.append(f"{t:.0f},{v:.4f}")
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("\n".join(lines) + "\n")
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst), "--metric", "water_level"]) == 0
    import json

    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["rows"] == 600 and summary["late"] == 1 and summary["repeated"] == 1 and summary["gaps"] == 1
    out = dst.read_text().splitlines()
    assert len(out) == 601 and out[201].split(",")[3] == ""  # the late row is scored: normal value, no level


def test_live_core_counts_out_of_order_readings_and_still_scores_late_ones():
    from analytics import DetectorCore

    c = DetectorCore(locate=lambda *_: {"county": "440106", "city": "440100", "province": "440000",
                                        "grid_id": None})
    rng = np.random.default_rng(10)
    for i, v in enumerate(120 + rng.normal(0, 5, 100)):
        c.on_reading({"sensor_id": "s", "metric": "bridge_strain", "value": float(v), "ts": T0 + 60 * i,
                      "lon": 113.3, "lat": 23.1})
    n_before = c.sensors["s"].series.features.n
    c.on_reading({"sensor_id": "s", "metric": "bridge_strain", "value": 121.0, "ts": T0 + 60 * 99,
                  "lon": 113.3, "lat": 23.1})  # replay
    c.on_reading({"sensor_id": "s", "metric": "bridge_strain", "value": 900.0, "ts": T0 + 60 * 50,
                  "lon": 113.3, "lat": 23.1})  # late, and wildly off
    assert c.time_stats == {"late": 1, "repeated": 1, "gaps": 0}
    assert c.sensors["s"].series.late == 1 and c.sensors["s"].series.features.n == n_before
    assert [a.dedupe_key for a in c.book.active.values()] == ["anomaly|sensor:s"]


# ----------------------------------------------------------------------------------- sites
def pump(n, seed, fault_at=None):
    """Three co-located channels that move together (a pump: current, flow, pressure)."""
    rng = np.random.default_rng(seed)
    load = np.cumsum(rng.normal(0, 0.02, n))  # shared slow wander
    x = np.c_[10 + load + rng.normal(0, 0.05, n), 30 + 2 * load + rng.normal(0, 0.1, n),
              1 + 0.1 * load + rng.normal(0, 0.005, n)]
    if fault_at is not None:
        # flow drops (a closed valve) while current and pressure do not follow: the relation
        # between the channels breaks more plainly than the flow channel alone moves
        x[fault_at:, 1] -= 2.0
    return T0 + np.arange(n) * 1.0, x


def test_site_scoring_sees_a_broken_relation_and_stays_quiet_on_normal_rows():
    t, x = pump(3000, 11, fault_at=2000)
    det = SiteDetector(channels=("current", "flow", "pressure")).prior()
    st_ = det.new_state()
    out = [det.step(st_, float(a), row.tolist()) for a, row in zip(t, x)]
    s = np.array([o[0] for o in out])
    cut = decision_config().low_cut
    assert (s[200:1995] >= cut).mean() <= 0.002
    assert (s[2003:2400] >= cut).all()  # entered at once, then held: the valve stays closed
    onset = out[2001][1]
    # (at 1 Hz the rates per reading are 1/60 of a minute sensor's: the joint score reaches blue
    # at once, yellow only once its tail is 1 in 6e7 rare)
    assert onset["joint"] > onset["flow"] and onset["joint"] >= cut
    assert st_.regime.entered == 1 and st_.nbytes() < 80_000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_site_cusum_flags_a_small_sustained_shift_early_and_holds_it_while_it_lasts(seed):
    """One channel of three steps down by two noise sds for 400 rows, then back (a valve half
    closed): no reading is far enough out for a spike or a median-of-three level shift, but the
    site's CUSUM component adds it up. Flagged within 30 rows, held for most of the stretch, quiet
    before and after; the same site without the CUSUM component misses it entirely."""
    from analytics.detectors import SeriesDetector

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3000, 3)) + [10.0, 20.0, 30.0]
    x[2000:2400, 1] -= 2.0
    # once a minute: the rates are per sensor-day, and at 1 Hz a level needs 60 times the rarity
    # per reading, which a 2-sd shift does not reach within 30 rows
    t = T0 + np.arange(3000) * 60.0
    cut = decision_config().low_cut
    flags = []
    for with_cusum in (True, False):
        det = SiteDetector(channels=("a", "b", "c")).prior()
        if not with_cusum:
            det.detectors_ = [SeriesDetector().prior() for _ in range(3)]
        st_ = det.new_state()
        flags.append(np.array([det.step(st_, float(a), row.tolist())[0] for a, row in zip(t, x)]) >= cut)
    f, f0 = flags
    assert not f[300:2000].any() and not f[2460:].any()
    assert f[2000:2030].any() and f[2000:2400].mean() >= 0.9
    assert not f0[2000:2400].any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_site_regime_ends_when_what_opened_it_is_back_though_another_channel_moved_meanwhile(seed):
    """A valve closes (channel b down 3 sds for 400 rows) and, meanwhile, a slow channel (c, a
    temperature) moves 4 sds and stays there. Once b is back, the regime ends within a minute of
    rows and c's new level is taken up without a re-learn (c's frozen baseline would otherwise hold
    the site in alarm until the 600-row re-learn horizon)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (3000, 3)) + [10.0, 20.0, 30.0]
    x[2000:2400, 1] -= 3.0
    x[2100:2400, 2] += np.linspace(0, 4.0, 300)
    x[2400:, 2] += 4.0
    t = T0 + np.arange(3000) * 1.0
    det = SiteDetector(channels=("a", "b", "c")).prior()
    st_ = det.new_state()
    f = np.array([det.step(st_, float(a), row.tolist())[0] for a, row in zip(t, x)]) >= decision_config().low_cut
    assert not f[300:2000].any() and f[2000:2400].mean() >= 0.9
    assert not f[2460:].any()
    assert st_.regime.entered == 1 and st_.regime.returned == 1 and st_.regime.relearned == 0


def test_cli_scores_several_columns_as_one_site(tmp_path, capsys):
    from tongguan.cli import main

    t, x = pump(1500, 12, fault_at=1200)
    t = T0 + (t - T0) * 60.0  # once a minute (at 1 Hz the heavy tail fitted to this random-walk site needs more)
    x[700, 2] = float("nan")
    lines = ["timestamp,current,flow,pressure,other"]
    for a, row in zip(t, x):
        lines.append(f"{a:.0f}," + ",".join("" if math.isnan(v) else f"{v:.4f}" for v in row) + ",x")
    src, dst = tmp_path / "site.csv", tmp_path / "out.csv"
    src.write_text("\n".join(lines) + "\n")
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst),
                 "--columns", "current,flow,pressure"]) == 0
    rows = dst.read_text().splitlines()
    assert rows[0] == "timestamp,current,flow,pressure,anomaly_score,level" and len(rows) == 1501
    levels = [r.rsplit(",", 1)[1] for r in rows[1:]]
    assert sum(lv != "" for lv in levels[1210:1500]) >= 250 and sum(lv != "" for lv in levels[200:1195]) <= 3
    assert '"missing": 1' in capsys.readouterr().err
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst), "--columns", "current,nope"]) == 1


def test_site_corroborates_an_anomaly_in_the_engine():
    """Two sensors at one station: the second's unusual reading makes the first's anomaly
    credible through the site's combined calibrated p-value, with no alert of its own yet."""
    from analytics import DetectorCore

    c = DetectorCore(locate=lambda *_: {"county": "440106", "city": "440100", "province": "440000",
                                        "grid_id": "g1"})
    rng = np.random.default_rng(13)
    for i in range(200):
        for sid in ("s1", "s2"):
            c.on_reading({"sensor_id": sid, "metric": "bridge_strain", "value": float(120 + rng.normal(0, 5)),
                          "ts": T0 + 60 * i, "lon": 113.3, "lat": 23.1})
    c.drain()
    t = T0 + 60 * 200
    c.on_reading({"sensor_id": "s2", "metric": "bridge_strain", "value": 200.0, "ts": t, "lon": 113.3, "lat": 23.1})
    c.on_reading({"sensor_id": "s1", "metric": "bridge_strain", "value": 900.0, "ts": t + 1, "lon": 113.3, "lat": 23.1})
    a = c.book.active["anomaly|sensor:s1"]
    assert "possible_fault" not in a.detail and a.detail["site"] == "grid:g1" and a.detail["site_p"] < 1e-4


# ----------------------------------------------------------------------- streaming property
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 499), shift=st.floats(0.0, 2.0),
       back=st.integers(0, 499))
def test_score_at_row_i_is_the_same_whether_scored_whole_or_cut_after_i(seed, cut, shift, back):
    rng = np.random.default_rng(seed)
    t = list(T0 + np.arange(500) * 60.0)
    t[back] -= 7200  # wherever the clock goes back, the property holds
    v = 3 + rng.normal(0, 0.03, 500)
    v[250:] += shift
    text = "timestamp,value\n" + "".join(f"{a:.0f},{b:.5f}\n" for a, b in zip(t, v))
    whole = score_text(text, SeriesDetector(metric="water_level").prior())
    prefix = "".join(text.splitlines(keepends=True)[: cut + 1])
    assert score_text(prefix, SeriesDetector(metric="water_level").prior()) == whole[:cut]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 299))
def test_site_prefix_stability(seed, cut):
    t, x = pump(300, seed, fault_at=150)
    text = "timestamp,a,b,c\n" + "".join(f"{a:.0f},{r[0]:.4f},{r[1]:.4f},{r[2]:.4f}\n" for a, r in zip(t, x))
    whole = score_text(text, SiteDetector(channels=("a", "b", "c")).prior(), columns=["a", "b", "c"])
    prefix = "".join(text.splitlines(keepends=True)[: cut + 1])
    assert score_text(prefix, SiteDetector(channels=("a", "b", "c")).prior(), columns=["a", "b", "c"]) == whole[:cut]


# ------------------------------------------------------------------------- memory, config
def test_memory_per_sensor_is_bounded_and_stated():
    det = SeriesDetector(metric="water_level").prior()
    st_ = det.new_state()
    t, v = gaussian_day(20_000, 14)
    sizes = []
    for i, (a, b) in enumerate(zip(t, v)):
        det.step(st_, float(a), float(b))
        if i in (1000, 19_999):
            sizes.append(st_.nbytes())
    assert sizes[0] == sizes[1] and sizes[0] <= 25_000  # the number the README states
    # and the real container sizes agree with the bound
    fs = st_.features
    assert len(fs.long) <= fs.long.maxlen and len(st_.quarantine) <= st_.quarantine.maxlen
    assert sys.getsizeof(st_.calibrators["spike"].bins) < 1000


def test_hour_of_day_profile_is_learned_online_without_training():
    """After a few days of a daily cycle, a value ordinary for the day but wrong for the hour
    (the evening peak at 3 a.m.) scores high on the online hour-of-day profile; before three
    days of that hour nothing is claimed."""
    import copy

    det = SeriesDetector(metric="water_level").prior()
    st_ = det.new_state()
    rng = np.random.default_rng(15)
    start = 1_780_243_200.0  # a midnight, China Standard Time
    t = start + np.arange(4 * 1440) * 60.0
    hour = ((t - start) / 3600.0) % 24
    v = 3 + np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0, 0.03, len(t))
    for i, (a, b) in enumerate(zip(t, v)):
        if i == 1440:  # after one day: the profile has not seen enough days of any hour
            raw, _ = det.raw_scores(copy.deepcopy(st_), float(a), float(b))
            assert "time_of_day" not in raw
        det.step(st_, float(a), float(b))
    at3 = start + 4 * 86400 + 3 * 3600
    usual = 3 + np.sin(2 * np.pi * (3 - 9) / 24)
    normal, _ = det.raw_scores(copy.deepcopy(st_), at3, float(usual))
    wrong, _ = det.raw_scores(copy.deepcopy(st_), at3, float(usual + 1.5))  # the daily peak's value
    assert normal["time_of_day"] < 3 and wrong["time_of_day"] > 10


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_quantised_gauge_that_mostly_sits_still_does_not_lock_into_alarm(seed):
    """A gauge reporting in steps of 0.33 that sits at one level most of the time, one-step
    excursions now and then (1 Hz, no incident): its level-shift scores are almost all zero, and a
    tail fitted to them alone would be ~0 wide, give the next one-step move p ~ 0, open a regime,
    and, since readings in a regime are not learned, never correct itself (it flagged 44 % of the
    rows on two of these seeds). The fitted tail is never narrower than the scores' resolution
    (one step), capped at PRIOR_MIN_SCALE."""
    dec = decision_config()
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(6000, dtype=float)
    v = 0.05 + 0.33 * np.round(rng.normal(0, 0.45, len(t)))
    rep, _, st_ = run(SeriesDetector().prior(), t, v)
    flagged = rep[1000:] >= dec.low_cut
    assert flagged.mean() < 0.02, (flagged.mean(), st_.regime.entered)
