"""`tongguan analytics detect`: one-series scoring, streaming (prefix outputs never change)."""

import csv
import random

import numpy as np
import pytest

from analytics import SeriesDetector
from analytics.series import score_text
from tongguan.cli import main

T0 = 1_780_000_000


@pytest.fixture(autouse=True)
def _own_home(tmp_path, monkeypatch):
    """The CLI reads registry files under TONGGUAN_HOME: an empty one, so no trained model leaks in."""
    from tongguan.settings import get_settings

    monkeypatch.setenv("TONGGUAN_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def make_csv(n, seed=0, faults=True):
    rng = np.random.default_rng(seed)
    lines = ["timestamp,value"]
    v = 3 + 0.2 * np.sin(np.arange(n) / 200.0) + rng.normal(0, 0.03, n)
    if faults and n > 400:
        v[300] += 2
        v[350:] += 0.7
    for i in range(n):
        lines.append(f"2026-06-01T{(i // 60) % 24:02d}:{i % 60:02d}:00+08:00,{v[i]:.4f}"
                     if i < 1440 else f"{T0 + i * 60},{v[i]:.4f}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("seed", range(4))
def test_prefix_outputs_unchanged_when_rows_are_appended(seed):
    rnd = random.Random(seed)
    text = make_csv(900, seed=seed)
    lines = text.splitlines()
    full = score_text(text, SeriesDetector(metric="water_level").prior())
    for _ in range(5):
        k = rnd.randint(1, len(lines) - 1)
        prefix = "\n".join(lines[: k + 1]) + "\n"
        part = score_text(prefix, SeriesDetector(metric="water_level").prior())
        assert part == full[:k]
    assert max(r[2] for r in full) == 1.0 and all(0 <= r[2] <= 1 for r in full)


def test_cli_detect_writes_scores_and_levels(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(make_csv(600))
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst), "--metric", "water_level"]) == 0
    rows = list(csv.DictReader(dst.open()))
    assert list(rows[0]) == ["timestamp", "value", "anomaly_score", "level"]
    assert len(rows) == 600
    assert rows[300]["level"] in ("blue", "yellow") and float(rows[300]["anomaly_score"]) > 0.6
    assert rows[10]["level"] == "" and rows[0]["timestamp"] == "2026-06-01T00:00:00+08:00"


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("time,val\n1,2\n", "lacks the columns"),
    ("timestamp,value\n2026-06-01T00:00:00+08:00,abc\n", "line 2: value 'abc' is not a number"),
    ("timestamp,value\nyesterday,1\n", "line 2: bad timestamp"),
    ("timestamp,value\n2026-06-01T00:00:00,1\n", "has no offset"),
    ("timestamp,value\n100,nan\n", "not finite"),
])
def test_cli_detect_bad_input_is_one_line(tmp_path, capsys, content, message):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(content)
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err and err.startswith("tongguan: error:")
    assert not dst.exists() and not (tmp_path / "out.csv.part").exists()


def test_cli_detect_missing_file_and_unknown_metric(tmp_path, capsys):
    assert main(["analytics", "detect", "--input", str(tmp_path / "no.csv"), "--output", str(tmp_path / "o")]) == 1
    (tmp_path / "in.csv").write_text("timestamp,value\n1,1\n")
    assert main(["analytics", "detect", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "o"),
                 "--metric", "nope"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "unknown metric 'nope'" in err


def test_tz_option_applies_to_naive_timestamps(tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("timestamp,value\n2026-06-01T00:00:00,1\n2026-06-01T00:01:00,1\n")
    assert main(["analytics", "detect", "--input", str(src), "--output", str(dst), "--tz", "+08:00"]) == 0
    assert len(list(csv.DictReader(dst.open()))) == 2
