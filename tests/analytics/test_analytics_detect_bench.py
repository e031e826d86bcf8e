"""``tongguan bench detect --skab DIR``: the SKAB harness.

Synthetic SKAB-layout folders made here (with SKAB's real metric module linked in from the shared
copy beside the repository, never copied into it) give known answers; one test runs on the real
SKAB files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analytics import detect_bench as db
from tongguan.cli import main

REPO = Path(__file__).resolve().parents[2]


def _beside_repo() -> Path:
    """The folder holding the repository (and ``shared/``); for a git worktree, the main checkout's."""
    dot_git = REPO / ".git"
    if dot_git.is_file() and not (REPO.parent / "shared").is_dir():  # gitdir: <main>/.git/worktrees/<name>
        return Path(dot_git.read_text().split(":", 1)[1].strip()).parents[2].parent
    return REPO.parent


SKAB = _beside_repo() / "shared" / "data" / "skab"
CHANNELS = ("Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple",
            "Voltage", "Volume Flow RateRMS")
ROWS = 1000
SPIKE = range(600, 610)  # rows of the injected anomaly (channel "Current", +20)


def _frame(rows: int, spike_rows=(), labelled: bool = True, start="2020-03-09 10:00:00") -> pd.DataFrame:
    """Bounded periodic channels (a sine's |z| against its own window never reaches 3) and one
    short burst of +20 on one channel."""
    i = np.arange(rows)
    data = {name: 10.0 * (k + 1) + np.sin(2 * np.pi * i / (23 + 2 * k)) for k, name in enumerate(CHANNELS)}
    df = pd.DataFrame(data, index=pd.date_range(start, periods=rows, freq="1s", name="datetime"))
    spike = np.zeros(rows)
    spike[list(spike_rows)] = 1.0
    df["Current"] += 20.0 * spike
    if labelled:
        df["anomaly"] = spike
        cps = np.zeros(rows)
        if len(spike_rows):
            cps[min(spike_rows)] = cps[max(spike_rows) + 1] = 1.0
        df["changepoint"] = cps
    return df


def make_skab(root: Path, metrics: Path | None = SKAB / "core" / "metrics.py") -> Path:
    """``root/data/{valve1,valve2,other,anomaly-free}`` with one experiment per folder, and
    ``root/core/metrics.py`` linked to ``metrics``."""
    data = root / "data"
    for sub in db.SUBSETS:
        (data / sub).mkdir(parents=True)
        _frame(ROWS, SPIKE).to_csv(data / sub / "1.csv", sep=";", date_format="%Y-%m-%d %H:%M:%S")
    (data / "anomaly-free").mkdir()
    _frame(ROWS, [700], labelled=False).to_csv(data / "anomaly-free" / "anomaly-free.csv", sep=";",
                                               date_format="%Y-%m-%d %H:%M:%S")
    if metrics is not None:
        (root / "core").mkdir()
        (root / "core" / "metrics.py").symlink_to(metrics)
    return data


def test_rolling_z_flags_the_injected_burst_and_nothing_else(tmp_path):
    data = make_skab(tmp_path)
    result = db.run_detect_bench(data, detectors=("rolling_z", "every_row"), simulator=False)
    assert result["files"] == 3 and result["test_rows"] == 3 * (ROWS - db.WARMUP_ROWS)
    z = result["detectors"]["rolling_z"]
    # exactly the ten burst rows flagged in every file: a perfect outlier and change-point score
    assert (z["f1"], z["far_pct"], z["mar_pct"]) == (1.0, 0.0, 0.0)
    # NAB: the burst (10 s) is shorter than the 60 s window right of its start, so SKAB's module
    # cuts the end's window to [start + 60 s, end + 60 s], where no flag changes: one change point
    # found at the very start of its window (+1), one missed (-1) -> half way from null to perfect
    assert (z["nab_standard"], z["nab_low_fp"], z["nab_low_fn"]) == (50.0, 50.0, 50.0)
    # one burst in the anomaly-free recording: one alarm over 8 channels x 599 s
    assert z["free_alarms"] == 1
    assert z["free_alarms_per_sensor_day"] == pytest.approx(1 / (8 * 600 / 86400), rel=0.01)
    assert z["readings"] == 8 * (3 * ROWS + ROWS) and z["readings_per_cpu_s"] > 0
    every = result["detectors"]["every_row"]
    # the 400 warm-up rows are not scored: 10 true of 600 test rows per file, all flagged
    assert every["f1"] == round(10 / (10 + 590 / 2), 2)
    assert (every["far_pct"], every["mar_pct"]) == (100.0, 0.0)
    assert every["free_alarms"] == 1 and every["free_flagged_pct"] == 100.0


@pytest.mark.parametrize("adapter", [db.tongguan_flags, db.tongguan_channel_flags])
def test_the_live_detector_is_what_runs(adapter):
    frame = _frame(ROWS, SPIKE)[list(CHANNELS)]
    flags = adapter(frame)
    assert flags.shape == (ROWS,) and flags.dtype == bool
    assert flags[SPIKE.start:SPIKE.stop].any()  # a 20-unit burst on a channel that moves by <= 1 a row
    assert not flags[:SPIKE.start].any()


def test_the_detector_gets_epoch_seconds_whatever_the_index_unit():
    for unit in ("s", "ms", "us", "ns"):
        idx = pd.DatetimeIndex(["2020-03-09 10:14:33", "2020-03-09 10:14:34"]).as_unit(unit)
        assert db.epoch_seconds(idx).tolist() == [1583748873.0, 1583748874.0]
    parsed = db.read_skab(SKAB / "data" / "valve1" / "0.csv")  # as the harness reads a file
    assert np.diff(db.epoch_seconds(parsed.index[:3])).tolist() == [1.0, 1.0]


def test_changepoints_are_derived_as_skab_does():
    idx = pd.date_range("2020-01-01", periods=6, freq="1s")
    cps = db.changepoints_from_flags(pd.Series([1, 1, 0, 0, 1, 1], index=idx))
    assert cps.tolist() == [1, 0, 1, 0, 1, 0]
    assert db.alarms(np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)) == 3


def test_table_rows_for_documents(tmp_path):
    data = make_skab(tmp_path)
    result = db.run_detect_bench(data, detectors=("rolling_z",), simulator=False)
    rows = db.table_rows(result)
    assert rows[0] == list(db.COLUMNS)
    assert rows[1][0].startswith("rolling z-score") and rows[1][1] == "1.00"
    published = [r for r in rows if "published, not run here" in r[0]]
    assert ["Conv-AE (published, not run here)", "0.78", "13.55", "28.02"] == published[0][:4]
    assert any(r[0].startswith("MSCRED") and r[4] == "32.42" for r in published)
    assert all(len(r) == len(db.COLUMNS) for r in rows)
    text = db.format_table(result)
    assert text.count("\n| ") == len(rows) and "published, not run here" in text
    assert db.simulator_rows(result) == []  # run without the simulator: no second table
    result["simulator"] = {"seed": 3, "days": 1.0, "sensors": 400, "recall": 0.93, "precision": 0.9,
                           "false_alarms_per_100_sensor_days": 0.5, "median_flood_lead_min": 21.0}
    sim = db.simulator_rows(result)
    assert sim[0] == list(db.SIM_COLUMNS) and sim[1][1:4] == ["0.930", "0.50", "21.0"]
    assert db.format_table(result).count("\n| ") == len(rows) + len(sim)


@pytest.mark.parametrize("layout", ["missing", "no-metrics", "no-valve2"])
def test_a_wrong_dir_is_one_line_and_exit_2(tmp_path, capsys, layout):
    if layout == "missing":
        target = tmp_path / "nowhere"
    else:
        target = make_skab(tmp_path, metrics=None if layout == "no-metrics" else SKAB / "core" / "metrics.py")
        if layout == "no-valve2":
            for f in (target / "valve2").iterdir():
                f.unlink()
            (target / "valve2").rmdir()
    with pytest.raises(SystemExit) as exc:
        main(["bench", "detect", "--skab", str(target), "--no-simulator"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--skab" in err and "Traceback" not in err


def test_cli_prints_json(tmp_path, capsys):
    import json

    data = make_skab(tmp_path)
    assert main(["bench", "detect", "--skab", str(data), "--detector", "rolling_z", "--no-simulator", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["detectors"]["rolling_z"]["f1"] == 1.0 and "simulator" not in out


def test_real_skab_with_its_own_metric_module():
    """The shared SKAB copy (CI has one beside the repository): SKAB's protocol on its 34 files."""
    data = SKAB / "data"
    result = db.run_detect_bench(data, detectors=("every_row", "rolling_z"), simulator=False)
    assert result["files"] == 34
    labels = [db.read_skab(p)["anomaly"].iloc[db.WARMUP_ROWS:] for p in db.skab_files(data)]
    share = sum(float(s.sum()) for s in labels) / sum(len(s) for s in labels)
    every = result["detectors"]["every_row"]
    # flagging every test row: F1 = 2p / (1 + p) with p the anomalous share of the test rows
    assert every["f1"] == round(2 * share / (1 + share), 2)
    assert (every["far_pct"], every["mar_pct"]) == (100.0, 0.0)
    z = result["detectors"]["rolling_z"]
    assert 0 < z["f1"] < 1 and 0 < z["far_pct"] < 100 and z["free_alarms"] > 0
    assert z["nab_standard"] > every["nab_standard"]  # flagging everything finds no change point in time


def test_breakdown_says_which_windows_were_found_how_late_how_held_and_where_false_positives_sit():
    idx = pd.date_range("2020-01-01", periods=40, freq="1s")
    label = np.zeros(40)
    label[10:20] = label[30:35] = 1
    test = pd.DataFrame({"anomaly": label}, index=idx)
    pred = np.zeros(40, dtype=bool)
    pred[[2]] = True  # a false positive before the first window
    pred[13:22] = True  # found 3 s late, held to its end and 2 rows past it
    b = db.file_breakdown("valve1/1", test, pred)
    assert b["windows"][0] == {"start_row": 10, "rows": 10, "detected": True, "delay_s": 3.0, "held_pct": 70.0}
    assert b["windows"][1]["detected"] is False and b["windows"][1]["delay_s"] is None
    assert (b["fp_rows_before"], b["fp_rows_after_end"], b["fp_rows_other"], b["fp_stretches"]) == (1, 2, 0, 2)
    s = db.summarise_breakdown([b])
    assert (s["windows"], s["detected"], s["median_delay_s"], s["mean_held_pct"]) == (2, 1, 3.0, 35.0)


def test_cli_prints_the_breakdown(tmp_path, capsys):
    data = make_skab(tmp_path)
    assert main(["bench", "detect", "--skab", str(data), "--detector", "rolling_z", "--no-simulator",
                 "--breakdown"]) == 0
    out = capsys.readouterr().out
    assert "windows detected" in out and "| rolling_z | 3 / 3 | 0 |" in out
