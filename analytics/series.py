"""One-series scoring for offline use (``tongguan analytics detect``).

Reads ``timestamp,value`` rows one at a time and writes ``timestamp,value,anomaly_score,level``
as it goes, through :meth:`SeriesDetector.step` — the live detector's code — so a row's score uses
only that row and the rows before it, and the output for the first k rows never changes when rows
are appended. Several value columns of one site (``--columns a,b,c``) are scored jointly by a
:class:`SiteDetector`. Timestamps that go back, repeat or jump are scored and counted, not refused.
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

from analytics.detectors import ScoreThresholder, SeriesDetector, SiteDetector
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


def _number(text: str, where: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise AnalyticsError(f"{where}: value {text!r} is not a number") from None
    if not math.isfinite(v):
        raise AnalyticsError(f"{where}: value {text!r} is not finite")
    return v


def score_rows(rows: Iterable[tuple[str, ...]], detector: SeriesDetector | SiteDetector,
               thresholder: ScoreThresholder | None = None, tz: timezone | None = None,
               source: str = "input", summary: dict | None = None) -> Iterator[tuple]:
    """Stream ``(timestamp, value, ...)`` text rows to ``(timestamp, value, ..., score, level)``.

    One value: a :class:`SeriesDetector`; several (a site): a :class:`SiteDetector`, where an
    empty value is a missing reading. Timestamps that go back, repeat or jump are scored and
    counted in ``summary`` (``late``, ``repeated``, ``gaps``), never refused."""
    thresholder = thresholder or ScoreThresholder().fit()
    state = detector.new_state()
    site = isinstance(detector, SiteDetector)
    for lineno, (ts_text, *value_texts) in enumerate(rows, start=2):
        where = f"{source} line {lineno}"
        t = _epoch(ts_text, tz, where)
        if site:
            values = [None if not x.strip() else _number(x, where) for x in value_texts]
            score, _ = detector.step(state, t, values)
        else:
            score, _ = detector.step(state, t, _number(value_texts[0], where))
        yield ts_text, *value_texts, round(score, 6), thresholder.level(score)
    if summary is not None:
        summary.update(state.time_counts())
        reg = state.regime
        summary.update(regimes=reg.entered, relearned=reg.relearned, returned=reg.returned)


def _read_rows(fh: TextIO, source: str, columns: list[str] | None = None) -> tuple[list[str], Iterator[tuple]]:
    """The value column names and an iterator of ``(timestamp, value, ...)`` text rows."""
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise AnalyticsError(f"{source} is empty; expected a header line `timestamp,value`") from None
    except csv.Error as exc:
        raise AnalyticsError(f"{source} line 1: {exc}") from None
    names = [h.strip().lstrip("\ufeff") for h in header]
    lower = [n.lower() for n in names]
    if "timestamp" not in lower or (columns is None and "value" not in lower):
        raise AnalyticsError(f"{source}: header {','.join(header)!r} lacks the columns timestamp and "
                             f"{', '.join(columns or ['value'])}")
    wanted = columns or ["value"]
    missing = [c for c in wanted if c not in names and c.lower() not in lower]
    if missing:
        raise AnalyticsError(f"{source}: no column(s) {', '.join(missing)} in header {','.join(header)!r}")
    it = lower.index("timestamp")
    idx = [names.index(c) if c in names else lower.index(c.lower()) for c in wanted]
    need = max([it, *idx])

    def rows() -> Iterator[tuple]:
        lineno = 1
        try:
            for row in reader:
                lineno += 1
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) <= need:
                    raise AnalyticsError(f"{source} line {lineno}: expected {len(header)} columns, got {len(row)}")
                yield (row[it], *(row[i] for i in idx))
        except csv.Error as exc:
            raise AnalyticsError(f"{source} line {lineno + 1}: {exc}") from None

    return [names[i] for i in idx], rows()


def score_csv(input_path: str | Path, output_path: str | Path, detector: SeriesDetector | None,
              thresholder: ScoreThresholder | None = None, tz: timezone | None = None,
              columns: list[str] | None = None, summary: dict | None = None) -> int:
    """Score a CSV file into another; returns the rows written. With ``columns`` (several value
    columns of one site) the rows are scored jointly by a :class:`SiteDetector` (``detector``
    is then ignored). The output appears only when the whole input was good (written to a
    temporary file, then renamed). ``summary`` receives the counts of messy timestamps."""
    src = Path(input_path)
    if not src.is_file():
        raise AnalyticsError(f"input file {src} does not exist")
    dst = Path(output_path)
    tmp = dst.with_name(dst.name + ".part")
    n = 0
    try:
        with open(src, newline="", encoding="utf-8-sig") as fin, open(tmp, "w", newline="", encoding="utf-8") as fout:
            names, rows = _read_rows(fin, src.name, columns)
            if columns:
                detector = SiteDetector(channels=tuple(names)).prior()
            w = csv.writer(fout)
            w.writerow(("timestamp", *names, "anomaly_score", "level") if columns else OUT_COLUMNS)
            for row in score_rows(rows, detector, thresholder, tz, src.name, summary):
                w.writerow(row)
                n += 1
        os.replace(tmp, dst)
    except UnicodeDecodeError:
        raise AnalyticsError(f"{src} is not UTF-8 text") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def score_text(text: str, detector: SeriesDetector | SiteDetector, tz: timezone | None = None,
               columns: list[str] | None = None, summary: dict | None = None) -> list[tuple]:
    """The scores of CSV text (for tests and notebooks)."""
    return list(score_rows(_read_rows(io.StringIO(text), "text", columns)[1], detector, tz=tz, summary=summary))
