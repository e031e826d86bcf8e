"""The rules engine: thresholds, durations, hysteresis, rates of rise and windowed aggregates.

Rules are data (``rules.yaml``); this module only interprets them. The engine is streaming and
free of I/O: ``engine.update(state, reading) -> (state, events)`` — the caller owns the state (one
per sensor), so the live detector, the offline evaluation and the tests run the same code.
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from analytics.errors import AnalyticsError
from analytics.levels import LEVELS, rank
from tongguan.yamlfile import read_yaml

RULES_FILE = Path(__file__).with_name("rules.yaml")
AGGS = ("last", "mean", "sum", "integral", "max", "min", "rise", "fall")
# A gap longer than this is not integrated (a sensor that was silent did not measure rain).
MAX_INTEGRAL_GAP_S = 3600.0
WINDOW_BUCKETS = 1440  # per aggregation window, whatever its length: a minute resolution on 24 h

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT_S = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(text: Any) -> float:
    """Seconds in ``text`` ("30s", "10m", "3h", "2d", or a number of seconds).

    >>> parse_duration("10m"), parse_duration("3h"), parse_duration(45)
    (600.0, 10800.0, 45.0)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _DURATION.match(str(text))
    if not m:
        raise AnalyticsError(f"bad duration {text!r}; write e.g. 30s, 10m, 3h or 2d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def to_epoch(ts: Any) -> float:
    """Seconds since the epoch from a datetime, an RFC 3339 string or a number."""
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise AnalyticsError(f"timestamp {ts!r} has no time-zone offset; add one (e.g. +08:00)")
        return ts.timestamp()
    if isinstance(ts, str):
        try:
            return to_epoch(datetime.fromisoformat(ts.replace("Z", "+00:00")))
        except ValueError:
            raise AnalyticsError(f"bad timestamp {ts!r}; use RFC 3339, e.g. 2026-06-01T08:00:00+08:00") from None
    if hasattr(ts, "timestamp"):  # pandas.Timestamp
        return float(ts.timestamp())
    raise AnalyticsError(f"bad timestamp {ts!r}")


# --------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Condition:
    """One comparison of an aggregate with a threshold (see ``rules.yaml`` for the fields)."""

    agg: str
    window: float
    op: str  # ">", ">=", "<", "<="
    threshold: float
    hold: float = 0.0  # the YAML's `for`
    also: tuple[Condition, ...] = ()

    def describe(self) -> str:
        win = "" if self.agg == "last" else f" over {_fmt_duration(self.window)}"
        held = f" for {_fmt_duration(self.hold)}" if self.hold else ""
        return f"{self.agg}{win} {self.op} {self.threshold:g}{held}"

    def describe_zh(self) -> str:
        from analytics.notes import condition_zh

        return condition_zh(self.agg, self.window, self.op, self.threshold, self.hold)


@dataclass(frozen=True)
class LevelSpec:
    level: str
    conditions: tuple[Condition, ...]  # any of them


@dataclass(frozen=True)
class Rule:
    id: str
    metric: str
    theme: str
    title_zh: str
    title_en: str
    source: str
    levels: tuple[LevelSpec, ...]  # ascending severity, only the levels the rule defines
    hysteresis: float
    clear_for: float
    overrides: Mapping[str, tuple[LevelSpec, ...]] = field(default_factory=dict)

    def levels_for(self, adcodes: Iterable[str]) -> tuple[LevelSpec, ...]:
        """The level specs for a place: the first of ``adcodes`` (most specific first) with an
        override wins, else the defaults."""
        for code in adcodes:
            if code and code in self.overrides:
                return self.overrides[code]
        return self.levels


def _fmt_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _parse_condition(raw: Mapping, where: str, *, nested: bool = False) -> Condition:
    if not isinstance(raw, Mapping):
        raise AnalyticsError(f"{where}: a condition must be a mapping like {{agg: last, above: 10}}")
    agg = raw.get("agg", "last")
    if agg not in AGGS:
        raise AnalyticsError(f"{where}: unknown agg {agg!r}; use one of {', '.join(AGGS)}")
    ops = [(k, o) for k, o in (("above", ">"), ("at_least", ">="), ("below", "<"), ("at_most", "<="))
           if k in raw]
    if len(ops) != 1:
        raise AnalyticsError(f"{where}: give exactly one of above / at_least / below / at_most")
    key, op = ops[0]
    try:
        threshold = float(raw[key])
    except (TypeError, ValueError):
        raise AnalyticsError(f"{where}: {key} must be a number, not {raw[key]!r}") from None
    if agg == "last":
        window = 0.0
    elif "window" not in raw:
        raise AnalyticsError(f"{where}: agg {agg} needs a window (e.g. window: 1h)")
    else:
        window = parse_duration(raw["window"])
    hold = parse_duration(raw.get("for", 0))
    if nested and hold:
        raise AnalyticsError(f"{where}: conditions under `also` cannot have their own `for`")
    also = tuple(_parse_condition(c, f"{where}.also", nested=True) for c in raw.get("also") or ())
    unknown = set(raw) - {"agg", "window", "above", "at_least", "below", "at_most", "for", "also"}
    if unknown:
        raise AnalyticsError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    return Condition(agg=agg, window=window, op=op, threshold=threshold, hold=hold, also=also)


def _parse_levels(raw: Any, where: str) -> tuple[LevelSpec, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise AnalyticsError(f"{where}: levels must map some of {', '.join(LEVELS)} to conditions")
    bad = set(raw) - set(LEVELS)
    if bad:
        raise AnalyticsError(f"{where}: unknown level(s) {', '.join(sorted(bad))}; use {', '.join(LEVELS)}")
    specs = []
    for level in LEVELS:
        if level in raw:
            conds = raw[level] if isinstance(raw[level], list) else [raw[level]]
            specs.append(LevelSpec(level, tuple(_parse_condition(c, f"{where}.{level}") for c in conds)))
    return tuple(specs)


def parse_rules(data: Mapping, source: str = "rules", metrics: Iterable[str] | None = None,
                themes: Mapping[str, str] | None = None) -> list[Rule]:
    """Rules from parsed YAML; ``metrics``/``themes`` (metric -> theme) check against a catalogue."""
    if not isinstance(data, Mapping) or not isinstance(data.get("rules"), list):
        raise AnalyticsError(f"{source}: expected a mapping with a `rules:` list")
    defaults = data.get("defaults") or {}
    known = set(metrics) if metrics is not None else None
    rules, seen = [], set()
    for i, raw in enumerate(data["rules"]):
        where = f"{source}: rules[{i}]"
        try:
            rid, metric = str(raw["id"]), str(raw["metric"])
        except (KeyError, TypeError):
            raise AnalyticsError(f"{where}: every rule needs an id and a metric") from None
        where = f"{source}: rule {rid}"
        if rid in seen:
            raise AnalyticsError(f"{where}: duplicate rule id")
        seen.add(rid)
        if known is not None and metric not in known:
            raise AnalyticsError(f"{where}: metric {metric!r} is not in the ingest catalogue")
        theme = raw.get("theme") or (themes or {}).get(metric)
        if not theme:
            raise AnalyticsError(f"{where}: give a theme (the metric's theme is unknown)")
        title = raw.get("title") or {}
        overrides = {}
        for code, ov in (raw.get("overrides") or {}).items():
            code = str(code)
            if not re.fullmatch(r"\d{6}", code):
                raise AnalyticsError(f"{where}: override key {code!r} is not a six-digit adcode")
            overrides[code] = _parse_levels((ov or {}).get("levels"), f"{where}.overrides.{code}")
        rules.append(Rule(
            id=rid, metric=metric, theme=str(theme),
            title_zh=str(title.get("zh") or rid), title_en=str(title.get("en") or rid),
            source=" ".join(str(raw.get("source") or "").split()),
            levels=_parse_levels(raw.get("levels"), where),
            hysteresis=float(raw.get("hysteresis", defaults.get("hysteresis", 0.1))),
            clear_for=parse_duration(raw.get("clear_for", defaults.get("clear_for", "10m"))),
            overrides=overrides,
        ))
    return rules


@lru_cache(maxsize=4)
def load_rules(path: str | None = None) -> tuple[Rule, ...]:
    """The rules in ``path`` (default: the packaged ``rules.yaml``), checked against the ingest
    catalogue's metrics and themes."""
    p = Path(path) if path else RULES_FILE
    data = read_yaml(p, "rules file", AnalyticsError)
    try:
        from ingest import load_catalogue

        cat = load_catalogue()
        metrics, themes = list(cat.metrics), {m.name: m.theme for m in cat.metrics.values()}
    except ImportError:  # pragma: no cover - ingest is part of the product
        metrics, themes = None, None
    return tuple(parse_rules(data, str(p), metrics, themes))


# ------------------------------------------------------------------------------------ windows
class _Window:
    """Readings of the last ``length`` seconds with O(1) amortised sum, integral, min and max.

    Bounded whatever the sensor's rate: readings are kept in at most about ``WINDOW_BUCKETS``
    buckets of ``length / WINDOW_BUCKETS`` seconds (sum, area, count; the min and max deques
    hold one entry per bucket). A sensor reporting at most once a bucket (a minute sensor on a
    24 h window, anything slower than 2.5 s on a 1 h one) keeps one reading a bucket, exactly as
    unbucketed; a faster one (or a flood of readings) is merged, and its window's start moves
    in steps of one bucket. Without the bound a 1 Hz sensor held 86,400 readings a 24 h window,
    and state grew with whatever rate a gateway sent."""

    __slots__ = ("area", "count", "items", "last_t", "last_v", "length", "maxs", "mins", "res", "total")

    def __init__(self, length: float):
        self.length = length
        self.res = length / WINDOW_BUCKETS
        self.items: deque = deque()  # (bucket start t, sum of v, area contribution, readings)
        self.total = 0.0
        self.area = 0.0
        self.count = 0
        self.mins: deque = deque()  # (t, v) increasing v, one entry per bucket at most
        self.maxs: deque = deque()  # (t, v) decreasing v, one entry per bucket at most
        self.last_t: float | None = None
        self.last_v = 0.0

    def add(self, t: float, v: float) -> None:
        if self.last_t is None:
            a = 0.0
        else:
            dt = t - self.last_t
            # A rate held since the last reading: left rectangle, gaps not integrated.
            a = self.last_v * dt / 3600.0 if 0 < dt <= MAX_INTEGRAL_GAP_S else 0.0
        self.last_t, self.last_v = t, v
        items = self.items
        if items and 0 <= t - items[-1][0] < self.res:  # the open bucket takes it
            t0, vs, as_, n = items[-1]
            items[-1] = (t0, vs + v, as_ + a, n + 1)
            # the open bucket's extreme is the deques' last entry: replace it if v goes further
            if v < self.mins[-1][1]:
                self.mins.pop()
                self._push_min(t0, v)
            if v > self.maxs[-1][1]:
                self.maxs.pop()
                self._push_max(t0, v)
        else:
            t0 = t
            items.append((t, v, a, 1))
            self._push_min(t, v)
            self._push_max(t, v)
        self.total += v
        self.area += a
        self.count += 1
        start = t - self.length
        while items and items[0][0] <= start and len(items) > 1:
            _, ov, oa, on = items.popleft()
            self.total -= ov
            self.area -= oa
            self.count -= on
        while self.mins[0][0] <= start and len(self.mins) > 1:
            self.mins.popleft()
        while self.maxs[0][0] <= start and len(self.maxs) > 1:
            self.maxs.popleft()

    def _push_min(self, t: float, v: float) -> None:
        while self.mins and self.mins[-1][1] >= v:
            self.mins.pop()
        self.mins.append((t, v))

    def _push_max(self, t: float, v: float) -> None:
        while self.maxs and self.maxs[-1][1] <= v:
            self.maxs.pop()
        self.maxs.append((t, v))

    def value(self, agg: str) -> float:
        if agg == "mean":
            return self.total / self.count
        if agg == "sum":
            return self.total
        if agg == "integral":
            return self.area
        if agg == "max":
            return self.maxs[0][1]
        if agg == "min":
            return self.mins[0][1]
        if agg == "rise":
            return self.last_v - self.mins[0][1]
        if agg == "fall":
            return self.maxs[0][1] - self.last_v
        return self.last_v


def _compare(op: str, x: float, threshold: float) -> bool:
    if op == ">":
        return x > threshold
    if op == ">=":
        return x >= threshold
    if op == "<":
        return x < threshold
    return x <= threshold


def _relaxed(c: Condition, hysteresis: float) -> float:
    """The threshold while the level is active: easier to stay in than to enter."""
    margin = abs(c.threshold) * hysteresis
    return c.threshold - margin if c.op in (">", ">=") else c.threshold + margin


# ------------------------------------------------------------------------------------- state
@dataclass
class RuleState:
    """One rule's state for one sensor."""

    specs: tuple[LevelSpec, ...]
    windows: dict[float, _Window]
    level: str | None = None
    since: dict = field(default_factory=dict)  # (level, condition index) -> t the condition began
    down_since: float | None = None
    started: float | None = None  # first reading at this level
    last_t: float | None = None


@dataclass
class SensorState:
    """All rules' state for one sensor (what the live detector keeps per sensor in memory)."""

    sensor_id: str
    metric: str
    rules: dict[str, RuleState] = field(default_factory=dict)
    last_t: float | None = None


@dataclass(frozen=True)
class RuleEvent:
    """A change of a rule's level for one sensor: ``raise`` (from none), ``escalate``,
    ``downgrade`` or ``clear``."""

    rule: Rule
    sensor_id: str
    kind: str
    level: str | None
    previous: str | None
    ts: float
    value: float
    condition: str
    condition_zh: str = ""
    reading: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def source(self) -> str:
        return f"rule:{self.rule.id}"


def _adcodes(reading: Mapping) -> tuple[str, ...]:
    from geo import region_path  # geo (and SQLAlchemy) only when a sensor is first seen

    return tuple(region_path(reading.get("county"), reading.get("city"), reading.get("province")))


class RuleEngine:
    """Applies the rules of each reading's metric; see the module docstring."""

    def __init__(self, rules: Iterable[Rule] | None = None):
        self.rules = tuple(load_rules() if rules is None else rules)
        self.by_metric: dict[str, tuple[Rule, ...]] = {}
        for r in self.rules:
            self.by_metric[r.metric] = self.by_metric.get(r.metric, ()) + (r,)

    def new_state(self, reading: Mapping) -> SensorState:
        places = _adcodes(reading)
        state = SensorState(sensor_id=str(reading["sensor_id"]), metric=str(reading["metric"]))
        for rule in self.by_metric.get(state.metric, ()):
            specs = rule.levels_for(places)
            wins = {c.window: _Window(c.window) for s in specs for c0 in s.conditions
                    for c in (c0, *c0.also)}
            state.rules[rule.id] = RuleState(specs=specs, windows=wins)
        return state

    def update(self, state: SensorState | None, reading: Mapping) -> tuple[SensorState, list[RuleEvent]]:
        """Feed one reading (``sensor_id, metric, value, ts`` and optionally ``county, city,
        province`` adcodes, which select region overrides when the state is created).

        Out-of-order readings (older than the last one seen) are ignored: windows are in time
        order. The state is updated in place and returned (no copies on the hot path).
        """
        if state is None:
            state = self.new_state(reading)
        t = to_epoch(reading["ts"])
        v = float(reading["value"])
        if not math.isfinite(v) or (state.last_t is not None and t < state.last_t):
            return state, []
        state.last_t = t
        events: list[RuleEvent] = []
        for rule in self.by_metric.get(state.metric, ()):
            rs = state.rules.get(rule.id)
            if rs is None:
                continue
            ev = self._step(rule, rs, t, v, state.sensor_id, reading)
            if ev is not None:
                events.append(ev)
        return state, events

    @staticmethod
    def _step(rule: Rule, rs: RuleState, t: float, v: float, sensor_id: str, reading: Mapping):
        for w in rs.windows.values():
            w.add(t, v)
        rs.last_t = t
        current = rank(rs.level)
        candidate, cand_value, cand_text, cand_zh = None, v, "", ""
        for spec in rs.specs:
            active = rank(spec.level) <= current
            for i, c in enumerate(spec.conditions):
                x = rs.windows[c.window].value(c.agg)
                thr = _relaxed(c, rule.hysteresis) if active else c.threshold
                ok = _compare(c.op, x, thr)
                if ok and c.also:
                    ok = all(_compare(a.op, rs.windows[a.window].value(a.agg),
                                      _relaxed(a, rule.hysteresis) if active else a.threshold) for a in c.also)
                key = (spec.level, i)
                if not ok:
                    rs.since.pop(key, None)
                    continue
                began = rs.since.setdefault(key, t)
                if (active or t - began >= c.hold) and rank(candidate) < rank(spec.level):
                    candidate, cand_value, cand_text, cand_zh = spec.level, x, c.describe(), c.describe_zh()
        prev = rs.level
        new = rank(candidate)
        if new > current:
            rs.level, rs.down_since, rs.started = candidate, None, t
            kind = "raise" if prev is None else "escalate"
        elif new < current:
            if rs.down_since is None:
                rs.down_since = t
            if t - rs.down_since < rule.clear_for:
                return None
            rs.level, rs.down_since = candidate, None
            kind = "clear" if candidate is None else "downgrade"
            if candidate is None:
                rs.started = None
                # A cleared condition starts afresh: stale `for` clocks must not carry over.
                rs.since.clear()
        else:
            rs.down_since = None
            return None
        return RuleEvent(rule=rule, sensor_id=sensor_id, kind=kind, level=rs.level, previous=prev, ts=t,
                         value=float(cand_value), condition=cand_text, condition_zh=cand_zh,
                         reading=reading)
