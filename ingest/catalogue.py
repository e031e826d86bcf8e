"""The metric and video-event catalogue (``catalogue.yaml``), loaded once.

Configuration, not code: a new metric is one entry in the YAML file; validation, the simulator and
the rollups pick it up from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from ingest.errors import IngestError
from tongguan.yamlfile import read_yaml

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")
THEMES = ("flood", "air", "traffic", "lifeline", "safety", "citymgmt")


@dataclass(frozen=True)
class Metric:
    name: str
    label_zh: str
    label_en: str
    unit: str
    min: float
    max: float
    theme: str
    sim: dict = field(default_factory=dict)


@dataclass(frozen=True)
class VideoEventType:
    name: str
    label_zh: str
    label_en: str
    theme: str


@dataclass(frozen=True)
class Catalogue:
    metrics: dict[str, Metric]
    video_event_types: dict[str, VideoEventType]
    themes: dict[str, dict]
    personal_attributes: frozenset[str]
    limits: dict[str, float]

    def metrics_of_theme(self, theme: str) -> list[str]:
        return [m.name for m in self.metrics.values() if m.theme == theme]


def _parse(data: dict, source: str) -> Catalogue:
    try:
        themes = dict(data["themes"])
        metrics = {}
        for name, m in data["metrics"].items():
            metric = Metric(name=name, label_zh=m["label_zh"], label_en=m["label_en"], unit=str(m["unit"]),
                            min=float(m["min"]), max=float(m["max"]), theme=m["theme"], sim=dict(m.get("sim") or {}))
            if metric.theme not in themes:
                raise IngestError(f"{source}: metric {name!r} has unknown theme {metric.theme!r}; "
                                  f"use one of {', '.join(themes)}")
            if not metric.min < metric.max:
                raise IngestError(f"{source}: metric {name!r} needs min < max")
            metrics[name] = metric
        types = {}
        for name, t in data["video_event_types"].items():
            if t["theme"] not in themes:
                raise IngestError(f"{source}: video event type {name!r} has unknown theme {t['theme']!r}")
            types[name] = VideoEventType(name=name, label_zh=t["label_zh"], label_en=t["label_en"], theme=t["theme"])
        return Catalogue(metrics=metrics, video_event_types=types, themes=themes,
                         personal_attributes=frozenset(data.get("personal_attributes") or ()),
                         limits={k: float(v) for k, v in data["limits"].items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise IngestError(f"{source}: malformed catalogue ({exc!r}); compare with ingest/catalogue.yaml") from exc


@lru_cache(maxsize=4)
def load_catalogue(path: str | None = None) -> Catalogue:
    """The catalogue from ``path`` (default: the packaged ``catalogue.yaml``), cached."""
    p = Path(path) if path else CATALOGUE_FILE
    data = read_yaml(p, "the ingest catalogue", IngestError)
    return _parse(data, str(p))
