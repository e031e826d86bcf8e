"""What the views show, as configuration: themes (from the ingest catalogue), warning levels,
time windows and the city vital-sign indicators (``apps/indicators.yaml``).

A new theme or metric is added in ``ingest/catalogue.yaml``; a new vital sign in
``apps/indicators.yaml``. Nothing here needs editing for either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from functools import lru_cache
from importlib import resources

from analytics.levels import RANK
from apps.errors import AppsError
from tongguan.yamlfile import read_yaml

# The colours the operations centres use for the national warning levels (the levels and
# their names are analytics'). "none" is a region without open alerts.
LEVEL_COLOURS = {"none": "#1d3b5e", "blue": "#2f7bff", "yellow": "#f5c518",
                 "orange": "#ff7f0e", "red": "#e5242b"}

WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
           "7d": timedelta(days=7)}
DEFAULT_WINDOW = "24h"
ALL_THEMES = "all"


def norm_window(window: str | None) -> str:
    """A window key from the query string, or the default when missing or unknown.

    >>> norm_window("6h"), norm_window("forever"), norm_window(None)
    ('6h', '24h', '24h')
    """
    return window if window in WINDOWS else DEFAULT_WINDOW


def level_rank(level: str | None) -> int:
    """A level's rank on the national scale; 0 for "none" (no open alerts) and unknown values.

    >>> level_rank("red"), level_rank("none")
    (4, 0)
    """
    return RANK.get(level, 0)


def worst_level(levels) -> str:
    """The most serious level among ``levels`` ("none" when empty).

    >>> worst_level(["blue", "orange", "yellow"]), worst_level([])
    ('orange', 'none')
    """
    best = "none"
    for lv in levels:
        if level_rank(lv) > level_rank(best):
            best = lv
    return best


@lru_cache(maxsize=1)
def ingest_catalogue() -> dict:
    """The ingest package's metric / event-type / theme catalogue (its data file, read-only)."""
    return read_yaml(resources.files("ingest").joinpath("catalogue.yaml"), "the ingest catalogue", AppsError)


def themes() -> dict[str, dict]:
    """Theme id -> labels, in catalogue order (the selector's order)."""
    return dict(ingest_catalogue().get("themes") or {})


def norm_theme(theme: str | None) -> str:
    """A theme id from the query string, or "all"."""
    return theme if theme in themes() else ALL_THEMES


def theme_label(theme: str, lang: str = "zh") -> str:
    from apps.i18n import norm_lang, t

    if theme == ALL_THEMES:
        return t("theme.all", lang)
    info = themes().get(theme) or {}
    return info.get("label_en" if norm_lang(lang) == "en" else "label_zh", theme)


def theme_metrics(theme: str) -> list[str]:
    """Metrics of a theme (every metric for "all")."""
    metrics = ingest_catalogue().get("metrics") or {}
    return [m for m, info in metrics.items() if theme == ALL_THEMES or info.get("theme") == theme]


def theme_event_types(theme: str) -> list[str]:
    types = ingest_catalogue().get("video_event_types") or {}
    return [k for k, info in types.items() if theme == ALL_THEMES or info.get("theme") == theme]


def metric_info(metric: str) -> dict:
    return dict((ingest_catalogue().get("metrics") or {}).get(metric) or {})


def label(kind: str, key: str, lang: str = "zh") -> str:
    """Interface label of a metric or video-event type from the ingest catalogue."""
    from apps.i18n import norm_lang

    table = ingest_catalogue().get("metrics" if kind == "metric" else "video_event_types") or {}
    info = table.get(key) or {}
    return info.get("label_en" if norm_lang(lang) == "en" else "label_zh", key)


INDICATOR_KINDS = ("metric_mean", "metric_max", "open_alerts", "video_events", "sensor_online_rate")


@dataclass(frozen=True)
class Indicator:
    """One city vital sign: how to compute it and when it is abnormal."""

    id: str
    label_zh: str
    label_en: str
    kind: str
    metric: str | None = None
    event_type: str | None = None
    theme: str | None = None
    unit: str = ""
    unit_en: str | None = None
    window: str = "1h"
    normal_min: float | None = None
    normal_max: float | None = None
    digits: int = 1
    extra: dict = field(default_factory=dict)

    def label(self, lang: str = "zh") -> str:
        return self.label_en if lang == "en" else self.label_zh

    def unit_label(self, lang: str = "zh") -> str:
        return self.unit_en if lang == "en" and self.unit_en is not None else self.unit

    def status(self, value: float | None) -> str:
        """"normal", "abnormal" or "unknown" (no data).

        >>> Indicator("x", "x", "x", "metric_mean", normal_max=75).status(80.0)
        'abnormal'
        >>> Indicator("x", "x", "x", "sensor_online_rate", normal_min=0.9).status(0.95)
        'normal'
        """
        if value is None:
            return "unknown"
        if self.normal_min is not None and value < self.normal_min:
            return "abnormal"
        if self.normal_max is not None and value > self.normal_max:
            return "abnormal"
        return "normal"


def parse_indicators(doc: dict) -> list[Indicator]:
    """Validate the indicator catalogue; every problem names the indicator and the field."""
    items = (doc or {}).get("indicators")
    if not isinstance(items, list) or not items:
        raise AppsError("apps/indicators.yaml: expected a non-empty list under 'indicators'")
    metrics = ingest_catalogue().get("metrics") or {}
    events = ingest_catalogue().get("video_event_types") or {}
    out, seen = [], set()
    for i, raw in enumerate(items):
        where = f"apps/indicators.yaml: indicator #{i + 1} ({raw.get('id', '?') if isinstance(raw, dict) else raw!r})"
        if not isinstance(raw, dict):
            raise AppsError(f"{where}: expected a mapping")
        for key in ("id", "label_zh", "label_en", "kind"):
            if not raw.get(key):
                raise AppsError(f"{where}: missing '{key}'")
        if raw["id"] in seen:
            raise AppsError(f"{where}: duplicate id")
        seen.add(raw["id"])
        kind = raw["kind"]
        if kind not in INDICATOR_KINDS:
            raise AppsError(f"{where}: kind '{kind}' is not one of {', '.join(INDICATOR_KINDS)}")
        if kind.startswith("metric_") and raw.get("metric") not in metrics:
            raise AppsError(f"{where}: metric '{raw.get('metric')}' is not in ingest/catalogue.yaml")
        if kind == "video_events" and raw.get("event_type") not in events:
            raise AppsError(f"{where}: event_type '{raw.get('event_type')}' is not in ingest/catalogue.yaml")
        if raw.get("window", "1h") not in WINDOWS:
            raise AppsError(f"{where}: window must be one of {', '.join(WINDOWS)}")
        normal = raw.get("normal") or {}
        unit = raw.get("unit")
        if unit is None and raw.get("metric"):
            unit = metrics[raw["metric"]].get("unit", "")
        out.append(Indicator(
            id=raw["id"], label_zh=raw["label_zh"], label_en=raw["label_en"], kind=kind,
            metric=raw.get("metric"), event_type=raw.get("event_type"), theme=raw.get("theme"),
            unit=str(unit or ""), unit_en=raw.get("unit_en"), window=raw.get("window", "1h"),
            normal_min=normal.get("min"), normal_max=normal.get("max"),
            digits=int(raw.get("digits", 1))))
    return out


@lru_cache(maxsize=1)
def indicators() -> list[Indicator]:
    return parse_indicators(read_yaml(resources.files("apps").joinpath("indicators.yaml"), "the indicators",
                                      AppsError))
