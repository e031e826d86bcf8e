"""``tongguan bench detect --skab DIR``: the live detector on real, labelled sensor data.

SKAB (Skoltech Anomaly Benchmark: a water-circulation pump station, eight channels sampled once
a second, labelled valve closures, leaks, rotor imbalance, cavitation) is scored with SKAB's own
protocol and SKAB's own metric module, which is imported at run time from ``DIR/../core/metrics.py``
(GPL: the product neither ships it nor the data; the path is an argument):

- every file of ``valve1``, ``valve2`` and ``other``; the first ``WARMUP_ROWS`` rows of each file
  are warm-up (a detector may learn from them) and are not scored;
- a row is flagged when the detector gives it any level (any channel, for per-channel detectors);
- outlier detection: ``chp_score(anomaly, flags, metric="binary")`` -> F1, FAR %, MAR %;
- change points are derived from the flags as SKAB's notebooks do (``|flags.diff()|``, the first
  row's flag kept) and scored with ``chp_score(changepoint, cps, metric="nab", window_width="60s",
  anomaly_window_destination="righter")`` -> NAB standard / LowFP / LowFN;
- false alarms per sensor-day on ``anomaly-free/anomaly-free.csv`` (normal operation only): an
  alarm is the start of a run of flagged rows (what an operator sees appear), counted after the
  warm-up, divided by channels x days; and the share of its rows flagged (an alarm that never
  ends is one alarm);
- readings (rows x channels) scored per second of CPU time of this process (per core).

Beside the tongguan detector the same command runs baselines itself (a rolling z-score, scikit-
learn's IsolationForest fitted on each file's warm-up rows as SKAB's notebooks do, "flag every
row") and lists the published leaderboard's top rows, which are not run here. It also runs the
simulator evaluation (:func:`analytics.evaluate.evaluate`) with the same live detection code, so
both yardsticks are seen side by side.

:func:`run_detect_bench` returns a JSON-ready dict; :func:`table_rows` turns it into the rows of
the printed table (for a documentation generator); :func:`format_table` prints them.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.errors import AnalyticsError

WARMUP_ROWS = 400
SUBSETS = ("valve1", "valve2", "other")
ANOMALY_FREE = Path("anomaly-free") / "anomaly-free.csv"
LABELS = ("anomaly", "changepoint")
NAB_WINDOW = "60s"
ROLLING_WINDOW = 288
ROLLING_Z = 3.0
SIM_TRAIN_DAYS = 1.0  # as `tongguan analytics evaluate` does by default: trained on another seed's day first

# The README's leaderboards (SKAB v0.9 test sets, window 60 s right of the change point): the best
# rows of each table, and the rows of the algorithms that appear in both. Published, not run here.
PUBLISHED_OUTLIER = {  # algorithm: (F1, FAR %, MAR %)
    "Conv-AE": (0.78, 13.55, 28.02),
    "MSET": (0.78, 39.73, 14.13),
    "T-squared+Q (PCA-based)": (0.76, 26.62, 24.92),
    "MSCRED": (0.36, 49.94, 69.88),
    "Isolation forest": (0.29, 2.56, 82.89),
}
PUBLISHED_NAB = {  # algorithm: (standard, LowFP, LowFN)
    "MSCRED": (32.42, 16.53, 40.28),
    "Isolation forest": (26.16, 19.5, 30.82),
    "T-squared+Q (PCA-based)": (25.35, 14.51, 31.33),
    "Conv-AE": (23.61, 21.54, 27.55),
    "MSET": (13.84, 10.22, 17.37),
}


# ------------------------------------------------------------------------------ data and metric
def skab_dir(text: str) -> Path:
    """argparse type: a SKAB ``data`` directory with its metric module beside it."""
    try:
        return check_skab_dir(Path(text))
    except AnalyticsError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def check_skab_dir(path: Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise AnalyticsError(f"{path} is not a directory; pass SKAB's data folder, e.g. ../shared/data/skab/data")
    missing = [s for s in SUBSETS if not (path / s).is_dir()]
    if missing:
        raise AnalyticsError(f"{path} lacks SKAB's folder(s) {', '.join(missing)}; pass SKAB's data folder "
                             "(the one holding valve1, valve2, other, anomaly-free)")
    if not (path / ANOMALY_FREE).is_file():
        raise AnalyticsError(f"{path / ANOMALY_FREE} is missing; pass SKAB's complete data folder")
    if not (path.parent / "core" / "metrics.py").is_file():
        raise AnalyticsError(f"SKAB's metric module {path.parent / 'core' / 'metrics.py'} is missing; "
                             "pass the data folder of a full SKAB checkout")
    return path


def load_metric_module(data_dir: Path):
    """SKAB's ``core/metrics.py``, imported from beside ``data_dir`` (never copied here)."""
    path = Path(data_dir).parent / "core" / "metrics.py"
    spec = importlib.util.spec_from_file_location("skab_core_metrics", path)
    if spec is None or spec.loader is None:
        raise AnalyticsError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise AnalyticsError(f"SKAB's metric module needs {exc.name}: pip install {exc.name}") from exc
    return module


def _numeric_key(p: Path):
    m = re.fullmatch(r"(\d+)", p.stem)
    return (0, int(m.group(1)), "") if m else (1, 0, p.stem)


def skab_files(data_dir: Path) -> list[Path]:
    files = [f for s in SUBSETS for f in sorted((Path(data_dir) / s).glob("*.csv"), key=_numeric_key)]
    if not files:
        raise AnalyticsError(f"no .csv files in {', '.join(SUBSETS)} under {data_dir}")
    return files


def read_skab(path: Path) -> pd.DataFrame:
    """One SKAB file: a ``datetime`` index, the channels, and ``anomaly``/``changepoint`` when labelled."""
    try:
        df = pd.read_csv(path, sep=";", index_col="datetime", parse_dates=True)
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise AnalyticsError(f"{path}: not a SKAB file (`datetime;...;anomaly;changepoint`, ';'-separated): "
                             f"{exc}") from None
    if not isinstance(df.index, pd.DatetimeIndex) or not df.index.is_monotonic_increasing:
        raise AnalyticsError(f"{path}: the datetime column must be sorted timestamps")
    channels = [c for c in df.columns if c not in LABELS]
    if not channels:
        raise AnalyticsError(f"{path}: no channel columns")
    if len(df) <= WARMUP_ROWS:
        raise AnalyticsError(f"{path}: {len(df)} rows, need more than the {WARMUP_ROWS} warm-up rows")
    return df


def channels_of(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in df.columns if c not in LABELS]].astype(float)


# -------------------------------------------------------------------------------- the detectors
# A detector takes one file's channels (a DataFrame, rows in time order, warm-up rows first) and
# returns one boolean flag per row. It must be causal: row k's flag uses rows <= k only, except
# the warm-up fits that SKAB's protocol allows on the first WARMUP_ROWS rows.
Detector = Callable[[pd.DataFrame], np.ndarray]


def epoch_seconds(index: pd.Index) -> np.ndarray:
    """Epoch seconds of a datetime index, whatever its unit (pandas parses SKAB's timestamps to
    microseconds), as the live detector's readings carry them."""
    if not isinstance(index, pd.DatetimeIndex):
        raise AnalyticsError("a SKAB frame is indexed by its datetime column")
    return index.as_unit("ns").asi8 / 1e9


def tongguan_flags(frame: pd.DataFrame) -> np.ndarray:
    """The live detector's own objects for one site, as ``tongguan analytics detect --columns
    a,b,…`` builds them (untrained): SKAB's channels are one pump, scored jointly by a
    :class:`SiteDetector` row by row through ``step``; a row is flagged when it gets a level."""
    from analytics.detectors import ScoreThresholder, SiteDetector

    thresholder = ScoreThresholder().fit()
    detector = SiteDetector(channels=tuple(frame.columns)).prior()
    state = detector.new_state()
    flags = np.zeros(len(frame), dtype=bool)
    for i, (t, row) in enumerate(zip(epoch_seconds(frame.index).tolist(), frame.to_numpy(dtype=float).tolist())):
        score, _ = detector.step(state, t, row)
        flags[i] = score > 0 and bool(thresholder.level(score))
    return flags


def tongguan_channel_flags(frame: pd.DataFrame) -> np.ndarray:
    """The live detector per sensor, as ``tongguan detect`` scores a sensor of no catalogue metric
    (untrained): one :class:`SeriesDetector` per channel; a row is flagged when any channel gets
    a level."""
    from analytics.detectors import ScoreThresholder, SeriesDetector

    thresholder = ScoreThresholder().fit()
    times = epoch_seconds(frame.index).tolist()
    flags = np.zeros(len(frame), dtype=bool)
    for name in frame.columns:
        detector = SeriesDetector(metric=None).prior()
        state = detector.new_state()
        for i, (t, v) in enumerate(zip(times, frame[name].to_numpy(dtype=float).tolist())):
            score, _ = detector.step(state, t, v)
            if score > 0 and thresholder.level(score):
                flags[i] = True
    return flags


def rolling_z_flags(frame: pd.DataFrame, window: int = ROLLING_WINDOW, z: float = ROLLING_Z) -> np.ndarray:
    """|x - mean| >= z * sd of the ``window`` rows before each row, on any channel (causal)."""
    past = frame.rolling(window, min_periods=window)
    mean, sd = past.mean().shift(1), past.std().shift(1)
    dev = (frame - mean).abs().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = dev >= z * sd.to_numpy()
    hit &= sd.to_numpy() > 0
    return np.nan_to_num(hit, nan=False).astype(bool).any(axis=1)


def isolation_forest_flags(frame: pd.DataFrame, random_state: int = 0) -> np.ndarray:
    """scikit-learn's IsolationForest with its default parameters (``contamination="auto"``),
    fitted on the file's warm-up rows (as SKAB's notebooks fit on each file's first 400 rows),
    predicting every row unsmoothed. The notebook's own hyper-parameters and smoothing are not
    reproduced: its published row is listed beside, labelled as such."""
    from sklearn.ensemble import IsolationForest

    X = frame.to_numpy(dtype=float)
    model = IsolationForest(random_state=random_state).fit(X[:WARMUP_ROWS])
    return model.predict(X) == -1


def every_row_flags(frame: pd.DataFrame) -> np.ndarray:
    return np.ones(len(frame), dtype=bool)


DETECTORS: dict[str, tuple[str, Detector]] = {
    "tongguan": ("tongguan live detector (SiteDetector.step, the 8 channels as one site, untrained)",
                 tongguan_flags),
    "tongguan_channels": ("tongguan live detector (SeriesDetector.step per channel, untrained)",
                          tongguan_channel_flags),
    "rolling_z": (f"rolling z-score (window {ROLLING_WINDOW}, flag at {ROLLING_Z:g} sd, any channel)", rolling_z_flags),
    "isolation_forest": ("IsolationForest (fit on the warm-up rows)", isolation_forest_flags),
    "every_row": ('"flag every row"', every_row_flags),
}


# ------------------------------------------------------------------------------------ scoring
def changepoints_from_flags(flags: pd.Series) -> pd.Series:
    """SKAB's derivation: a change point wherever the flag changes; the first row keeps its flag."""
    cps = flags.astype(int).diff().abs()
    cps.iloc[0] = int(flags.iloc[0])
    return cps.astype(int)


def alarms(flags: np.ndarray) -> int:
    """Starts of runs of flagged rows."""
    f = np.asarray(flags, dtype=bool)
    return int(f[0]) + int(np.count_nonzero(f[1:] & ~f[:-1])) if len(f) else 0


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True in ``mask`` (stop exclusive).

    >>> runs(np.array([0, 1, 1, 0, 1], dtype=bool))
    [(1, 3), (4, 5)]
    """
    m = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


AFTER_S = 120.0  # how long after an anomaly window ends its flags count as "after" false positives


def file_breakdown(name: str, test: pd.DataFrame, pred: np.ndarray) -> dict:
    """Where one file's score is won or lost: per labelled anomaly window whether it was detected
    at all (a flag inside it), the delay of its first flag, the share of its rows flagged; and the
    false-positive rows before the first window, within ``AFTER_S`` after a window ends, and
    elsewhere (with the number of false-positive stretches)."""
    label = test["anomaly"].to_numpy(dtype=int) == 1
    t = epoch_seconds(test.index)
    pred = np.asarray(pred, dtype=bool)
    windows = []
    after = np.zeros(len(label), dtype=bool)
    for a, b in runs(label):
        hit = np.flatnonzero(pred[a:b])
        windows.append({"start_row": a, "rows": b - a, "detected": bool(len(hit)),
                        "delay_s": round(float(t[a + hit[0]] - t[a]), 1) if len(hit) else None,
                        "held_pct": round(100.0 * float(pred[a:b].mean()), 1)})
        after |= (t >= t[b - 1]) & (t <= t[b - 1] + AFTER_S) & ~label
    first = runs(label)[0][0] if label.any() else len(label)
    fp = pred & ~label
    before = fp.copy()
    before[first:] = False
    return {"file": name, "windows": windows, "fp_rows_before": int(before.sum()),
            "fp_rows_after_end": int((fp & after).sum()), "fp_rows_other": int((fp & ~after & ~before).sum()),
            "fp_stretches": len(runs(fp)), "normal_rows": int((~label).sum())}


def summarise_breakdown(files: list[dict]) -> dict:
    """The breakdown over all files: windows detected, median delay, mean share held, FP rows."""
    ws = [w for f in files for w in f["windows"]]
    delays = [w["delay_s"] for w in ws if w["detected"]]
    normal = sum(f["normal_rows"] for f in files) or 1
    return {"windows": len(ws), "detected": sum(w["detected"] for w in ws),
            "median_delay_s": float(np.median(delays)) if delays else None,
            "mean_held_pct": round(float(np.mean([w["held_pct"] for w in ws])), 1) if ws else None,
            "fp_pct_before": round(100.0 * sum(f["fp_rows_before"] for f in files) / normal, 2),
            "fp_pct_after_end": round(100.0 * sum(f["fp_rows_after_end"] for f in files) / normal, 2),
            "fp_pct_other": round(100.0 * sum(f["fp_rows_other"] for f in files) / normal, 2),
            "fp_stretches": sum(f["fp_stretches"] for f in files)}


def score_detector(files: list[pd.DataFrame], free: pd.DataFrame, detect: Detector, metrics,
                   names: list[str] | None = None) -> dict:
    """One detector over the labelled files and the anomaly-free recording, with SKAB's metrics."""
    true_out, pred_out, true_cp, pred_cp = [], [], [], []
    readings = 0
    cpu0 = time.process_time()
    all_flags = []
    for df in files:
        ch = channels_of(df)
        all_flags.append(np.asarray(detect(ch), dtype=bool))
        readings += ch.size
    free_ch = channels_of(free)
    free_flags = np.asarray(detect(free_ch), dtype=bool)
    readings += free_ch.size
    cpu = time.process_time() - cpu0
    per_file = []
    for k, (df, flags) in enumerate(zip(files, all_flags)):
        if len(flags) != len(df):
            raise AnalyticsError(f"a detector returned {len(flags)} flags for {len(df)} rows")
        test = df.iloc[WARMUP_ROWS:]
        pred = pd.Series(flags[WARMUP_ROWS:].astype(int), index=test.index)
        per_file.append(file_breakdown(names[k] if names else str(k), test, flags[WARMUP_ROWS:]))
        true_out.append(test["anomaly"].astype(int))
        pred_out.append(pred)
        true_cp.append(test["changepoint"].astype(int))
        pred_cp.append(changepoints_from_flags(pred))
    f1, far, mar = metrics.chp_score(true_out, pred_out, metric="binary", verbose=False)
    nab = metrics.chp_score(true_cp, pred_cp, metric="nab", window_width=NAB_WINDOW,
                            anomaly_window_destination="righter", verbose=False)
    test_free = free_flags[WARMUP_ROWS:]
    span_s = (free.index[-1] - free.index[WARMUP_ROWS]).total_seconds() + 1.0
    sensor_days = free_ch.shape[1] * span_s / 86400.0
    n_alarms = alarms(test_free)
    return {"f1": float(f1), "far_pct": float(far), "mar_pct": float(mar),
            "nab_standard": float(nab["Standard"]), "nab_low_fp": float(nab["LowFP"]),
            "nab_low_fn": float(nab["LowFN"]),
            "free_alarms": n_alarms, "free_sensor_days": round(sensor_days, 4),
            "free_alarms_per_sensor_day": round(n_alarms / sensor_days, 2),
            "free_flagged_pct": round(100.0 * float(test_free.mean()), 2),
            "readings": int(readings), "cpu_s": round(cpu, 3),
            "readings_per_cpu_s": round(readings / cpu) if cpu > 0 else None,
            "breakdown": summarise_breakdown(per_file), "breakdown_files": per_file}


def run_simulator(seed: int, days: float) -> dict:
    """The simulator evaluation, as ``tongguan analytics evaluate --seed K --days D`` runs it."""
    from analytics.evaluate import evaluate

    cpu0 = time.process_time()
    report = evaluate(seed=seed, days=days, train_days=SIM_TRAIN_DAYS)
    overall = report["overall"]
    flood = report["types"].get("rainstorm", {})
    return {"seed": seed, "days": days, "train_days": SIM_TRAIN_DAYS, "sensors": report["sensors"],
            "recall": overall["recall"],
            "precision": overall["precision"],
            "false_alarms_per_100_sensor_days": overall["false_alarms_per_100_sensor_days"],
            "median_flood_lead_min": flood.get("median_lead_min"), "readings": report["readings"],
            "cpu_s": round(time.process_time() - cpu0, 1)}


def run_detect_bench(data_dir: str | Path, *, detectors: tuple[str, ...] | None = None,
                     simulator: bool = True, sim_seed: int = 1, sim_days: float = 1.0,
                     progress: Callable[[str], None] | None = None) -> dict:
    """Every detector over SKAB with SKAB's protocol and metrics, plus the simulator evaluation."""
    data_dir = check_skab_dir(Path(data_dir))
    metrics = load_metric_module(data_dir)
    paths = skab_files(data_dir)
    files = [read_skab(p) for p in paths]
    for p, df in zip(paths, files):
        if not set(LABELS) <= set(df.columns):
            raise AnalyticsError(f"{p}: lacks the label columns anomaly and changepoint")
    free = read_skab(data_dir / ANOMALY_FREE)
    names = detectors or tuple(DETECTORS)
    unknown = set(names) - set(DETECTORS)
    if unknown:
        raise AnalyticsError(f"unknown detector(s) {', '.join(sorted(unknown))}; use {', '.join(DETECTORS)}")
    test_rows = sum(len(df) - WARMUP_ROWS for df in files)
    out = {"data": str(data_dir), "files": len(files), "test_rows": test_rows,
           "anomalous_share": round(sum(float(df["anomaly"].iloc[WARMUP_ROWS:].sum()) for df in files) / test_rows, 3),
           "channels": int(channels_of(files[0]).shape[1]), "warmup_rows": WARMUP_ROWS, "nab_window": NAB_WINDOW,
           "detectors": {}, "published": {"outlier": PUBLISHED_OUTLIER, "nab": PUBLISHED_NAB}}
    for name in names:
        if progress:
            progress(f"SKAB: {name}")
        label, detect = DETECTORS[name]
        out["detectors"][name] = {"label": label, **score_detector(
            files, free, detect, metrics, names=[f"{p.parent.name}/{p.stem}" for p in paths])}
    if simulator:
        if progress:
            progress(f"simulator evaluation: seed {sim_seed}, {sim_days:g} day(s)")
        out["simulator"] = run_simulator(sim_seed, sim_days)
    return out


# ------------------------------------------------------------------------------------- output
COLUMNS = ("detector", "F1", "FAR %", "MAR %", "NAB std", "NAB LowFP", "NAB LowFN",
           "false alarms / sensor-day (anomaly-free)", "rows flagged % (anomaly-free)", "readings / s / core")


def _fmt(x, nd: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, int) or (isinstance(x, float) and nd == 0):
        return f"{x:,.0f}"
    return f"{x:.{nd}f}"


def table_rows(result: dict) -> list[list[str]]:
    """The SKAB table as rows of text cells, header first (``COLUMNS``)."""
    rows = [list(COLUMNS)]
    for r in result["detectors"].values():
        rows.append([r["label"], _fmt(r["f1"]), _fmt(r["far_pct"]), _fmt(r["mar_pct"]), _fmt(r["nab_standard"]),
                     _fmt(r["nab_low_fp"]), _fmt(r["nab_low_fn"]), _fmt(r["free_alarms_per_sensor_day"]),
                     _fmt(r["free_flagged_pct"]), _fmt(r["readings_per_cpu_s"], 0)])
    for algo in dict.fromkeys([*PUBLISHED_OUTLIER, *PUBLISHED_NAB]):
        o = PUBLISHED_OUTLIER.get(algo, (None,) * 3)
        n = PUBLISHED_NAB.get(algo, (None,) * 3)
        rows.append([f"{algo} (published, not run here)", *(_fmt(x) for x in o), *(_fmt(x) for x in n), "—", "—", "—"])
    return rows


SIM_COLUMNS = ("simulator evaluation (the live DetectorCore, per-sensor detectors)", "recall", "false alarms / 100 sensor-days",
               "median flood lead (min)", "precision")


def simulator_rows(result: dict) -> list[list[str]]:
    s = result.get("simulator")
    if not s:
        return []
    trained = f", trained on {s['train_days']:g} simulated day(s) first" if s.get("train_days") else ", untrained"
    return [list(SIM_COLUMNS), [f"tongguan, seed {s['seed']}, {s['days']:g} day(s), {s['sensors']} sensors{trained}",
                                _fmt(s["recall"], 3), _fmt(s["false_alarms_per_100_sensor_days"]),
                                _fmt(s["median_flood_lead_min"], 1), _fmt(s["precision"], 3)]]


def _markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


BREAKDOWN_COLUMNS = ("detector", "windows detected", "median delay (s)", "window rows held %",
                     "FP rows % before 1st window", f"FP rows % within {AFTER_S:g} s after a window",
                     "FP rows % elsewhere", "FP stretches")


def breakdown_rows(result: dict) -> list[list[str]]:
    rows = [list(BREAKDOWN_COLUMNS)]
    for name, r in result["detectors"].items():
        b = r.get("breakdown")
        if b:
            rows.append([name, f"{b['detected']} / {b['windows']}", _fmt(b["median_delay_s"], 0),
                         _fmt(b["mean_held_pct"], 1), _fmt(b["fp_pct_before"]), _fmt(b["fp_pct_after_end"]),
                         _fmt(b["fp_pct_other"]), str(b["fp_stretches"])])
    return rows


def file_rows(result: dict, name: str) -> list[list[str]]:
    """One detector's breakdown per file (window by window)."""
    rows = [["file", "window rows", "detected", "delay (s)", "held %", "FP rows before", "FP rows after end",
             "FP rows elsewhere", "FP stretches"]]
    for f in result["detectors"][name]["breakdown_files"]:
        ws = f["windows"]
        rows.append([f["file"], " + ".join(str(w["rows"]) for w in ws),
                     " ".join("yes" if w["detected"] else "NO" for w in ws),
                     " ".join(_fmt(w["delay_s"], 0) for w in ws), " ".join(_fmt(w["held_pct"], 0) for w in ws),
                     str(f["fp_rows_before"]), str(f["fp_rows_after_end"]), str(f["fp_rows_other"]),
                     str(f["fp_stretches"])])
    return rows


def format_breakdown(result: dict) -> str:
    parts = ["Where F1 and NAB are won or lost (SKAB anomaly windows; FP rows as % of normal test rows)", "",
             _markdown(breakdown_rows(result))]
    for name in result["detectors"]:
        if name.startswith("tongguan"):
            parts += ["", f"{name}, per file:", "", _markdown(file_rows(result, name))]
    return "\n".join(parts)


def format_table(result: dict) -> str:
    head = (f"SKAB ({result['files']} files, {result['test_rows']:,} test rows after {result['warmup_rows']} "
            f"warm-up rows each, {100 * result['anomalous_share']:.0f} % anomalous; {result['channels']} channels; "
            f"NAB window {result['nab_window']} right of the change point; SKAB's core/metrics.py)")
    parts = [head, "", _markdown(table_rows(result))]
    sim = simulator_rows(result)
    if sim:
        parts += ["", _markdown(sim)]
    return "\n".join(parts)


# --------------------------------------------------------------------------------- the command
def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("detect", help="the live detector on SKAB (real pump data) beside baselines and the "
                                            "simulator evaluation")
    p.add_argument("--skab", required=True, type=skab_dir, metavar="DIR",
                   help="SKAB's data folder (valve1, valve2, other, anomaly-free; core/metrics.py beside it)")
    p.add_argument("--detector", action="append", choices=tuple(DETECTORS),
                   help="only this detector (repeatable; default all)")
    p.add_argument("--sim-seed", type=int, default=1, help="simulator seed of the side-by-side evaluation")
    p.add_argument("--sim-days", type=float, default=1.0, help="simulated days (default 1)")
    p.add_argument("--no-simulator", action="store_true", help="skip the simulator evaluation")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")
    p.add_argument("--breakdown", action="store_true",
                   help="also print where F1/NAB are lost: anomaly windows detected, delay, share held, false "
                        "positives before / after windows (overall, and per file for the tongguan detectors)")
    p.set_defaults(func=cmd_bench_detect)


def cmd_bench_detect(args, ctx) -> int:
    if args.sim_days <= 0:
        print("tongguan bench detect: error: --sim-days must be positive", file=sys.stderr)
        return 2
    result = run_detect_bench(args.skab, detectors=tuple(args.detector) if args.detector else None,
                              simulator=not args.no_simulator, sim_seed=args.sim_seed, sim_days=args.sim_days,
                              progress=lambda m: print(f"… {m}", file=sys.stderr, flush=True))
    if args.json:
        import json

        print(json.dumps(result, ensure_ascii=False, indent=1))
    else:
        print(format_table(result))
        if args.breakdown:
            print()
            print(format_breakdown(result))
    return 0
