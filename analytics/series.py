"""One-series scoring for offline use (``tongguan analytics detect``).

Reads ``timestamp,value`` rows one at a time and writes ``timestamp,value,anomaly_score,level``
as it goes, through :meth:`SeriesDetector.step` — the live detector's code — so a row's score uses
only that row and the rows before it, and the output for the first k rows never changes when rows
are appended.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TextIO

from analytics.detectors import ScoreThresholder, SeriesDetector
from analytics.errors import AnalyticsError

OUT_COLUMNS = ("timestamp", "value", "anomaly_score", "level")


def parse_tz(text: str | None) -> timezone | None:
    """``+08:00`` / ``-0530`` / ``UTC`` -> a fixed offset.

    >>> parse_tz("+08:00")
    datetime.timezone(datetime.timedelta(seconds=28800))
    """
    if not text:
        return None
    if text.upper() in ("UTC", "Z"):
        return UTC
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-").replace(":", "")
    if not (digits.isdigit() and len(digits) in (2, 4)):
        raise AnalyticsError(f"bad time-zone offset {text!r}; write e.g. +08:00")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _epoch(text: str, tz: timezone | None, where: str) -> float:
    s = text.strip()
    try:
        return float(s)  # epoch seconds are accepted as they are
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise AnalyticsError(f"{where}: bad timestamp {text!r}; use RFC 3339 "
                             "(2026-06-01T08:00:00+08:00) or epoch seconds") from None
    if dt.tzinfo is None:
        if tz is None:
            raise AnalyticsError(f"{where}: timestamp {text!r} has no offset; add one or pass --tz +08:00")
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def score_rows(rows: Iterable[tuple[str, str]], detector: SeriesDetector,
               thresholder: ScoreThresholder | None = None, tz: timezone | None = None,
               source: str = "input") -> Iterator[tuple[str, str, float, str]]:
    """Stream ``(timestamp, value)`` text pairs to ``(timestamp, value, score, level)``."""
    thresholder = thresholder or ScoreThresholder().fit()
    state = detector.new_state()
    for lineno, (ts_text, value_text) in enumerate(rows, start=2):
        where = f"{source} line {lineno}"
        t = _epoch(ts_text, tz, where)
        try:
            v = float(value_text)
        except ValueError:
            raise AnalyticsError(f"{where}: value {value_text!r} is not a number") from None
        if not math.isfinite(v):
            raise AnalyticsError(f"{where}: value {value_text!r} is not finite")
        if state.last_t is not None and t < state.last_t:
            raise AnalyticsError(f"{where}: timestamp {ts_text!r} is earlier than the row before; "
                                 "sort the file by time")
        score, _ = detector.step(state, t, v)
        yield ts_text, value_text, round(score, 6), thresholder.level(score)


def _read_pairs(fh: TextIO, source: str) -> Iterator[tuple[str, str]]:
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise AnalyticsError(f"{source} is empty; expected a header line `timestamp,value`") from None
    except csv.Error as exc:
        raise AnalyticsError(f"{source} line 1: {exc}") from None
    names = [h.strip().lower().lstrip("\ufeff") for h in header]
    if "timestamp" not in names or "value" not in names:
        raise AnalyticsError(f"{source}: header {','.join(header)!r} lacks the columns timestamp and value")
    it, iv = names.index("timestamp"), names.index("value")
    lineno = 1
    try:
        for row in reader:
            lineno += 1
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(it, iv):
                raise AnalyticsError(f"{source} line {lineno}: expected {len(header)} columns, got {len(row)}")
            yield row[it], row[iv]
    except csv.Error as exc:
        raise AnalyticsError(f"{source} line {lineno + 1}: {exc}") from None


def score_csv(input_path: str | Path, output_path: str | Path, detector: SeriesDetector,
              thresholder: ScoreThresholder | None = None, tz: timezone | None = None) -> int:
    """Score a CSV file into another; returns the rows written. The output appears only when
    the whole input was good (written to a temporary file, then renamed)."""
    src = Path(input_path)
    if not src.is_file():
        raise AnalyticsError(f"input file {src} does not exist")
    dst = Path(output_path)
    tmp = dst.with_name(dst.name + ".part")
    n = 0
    try:
        with open(src, newline="", encoding="utf-8-sig") as fin, open(tmp, "w", newline="", encoding="utf-8") as fout:
            w = csv.writer(fout)
            w.writerow(OUT_COLUMNS)
            for row in score_rows(_read_pairs(fin, src.name), detector, thresholder, tz, src.name):
                w.writerow(row)
                n += 1
        os.replace(tmp, dst)
    except UnicodeDecodeError:
        raise AnalyticsError(f"{src} is not UTF-8 text") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def score_text(text: str, detector: SeriesDetector, tz: timezone | None = None) -> list[tuple]:
    """The scores of CSV text (for tests and notebooks)."""
    return list(score_rows(_read_pairs(io.StringIO(text), "text"), detector, tz=tz))
