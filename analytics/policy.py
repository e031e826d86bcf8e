"""Detection policy as configuration (``policy.yaml``, beside ``rules.yaml``): the video surge
windows, count levels and level cut-offs, the forecasts and their gates, and the evaluation's notion of harm.

A new video event type, forecast metric or harm definition is a YAML edit; this module checks it
(levels of the national scale, metrics of the ingest catalogue) and says how to fix a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from analytics.errors import AnalyticsError
from analytics.levels import LEVELS, rank
from tongguan.yamlfile import read_yaml

POLICY_FILE = Path(__file__).with_name("policy.yaml")
HARM_OPS = (">", ">=", "<")


@dataclass(frozen=True)
class Policy:
    surge: dict[str, dict]
    surge_levels: tuple[tuple[str, float, int], ...]  # (level, p below, min events), first match wins
    forecast: dict[str, dict]
    harm: dict[str, tuple[str, str, float]]

    def surge_level(self, p: float, n: int) -> str:
        """The warning level of a surge of ``n`` events with upper-tail probability ``p``.

        >>> pol = load_policy()
        >>> pol.surge_level(1e-7, 9), pol.surge_level(1e-7, 5), pol.surge_level(1e-3, 5)
        ('orange', 'yellow', 'blue')
        """
        for level, p_below, min_events in self.surge_levels:
            if p < p_below and n >= min_events:
                return level
        return self.surge_levels[-1][0]


def _metrics() -> set[str] | None:
    try:
        from ingest import load_catalogue

        return set(load_catalogue().metrics)
    except Exception:  # noqa: BLE001 - without the catalogue metrics are not checked
        return None


def parse_policy(data: dict, where: str = "policy.yaml") -> Policy:
    """Check and normalise the policy (numbers as floats, harm as tuples).

    >>> p = parse_policy({"surge": {"default": {"window_s": 60, "min_events": 2}},
    ...                   "surge_levels": [{"level": "blue"}],
    ...                   "forecast": {}, "harm": {"crowd": ["crowd_density", ">", 2]}})
    >>> p.surge["default"], p.harm["crowd"]
    ({'window_s': 60.0, 'min_events': 2}, ('crowd_density', '>', 2.0))
    >>> parse_policy({"surge": {}, "surge_levels": [{"level": "blue"}], "forecast": {}, "harm": {}})
    Traceback (most recent call last):
    ...
    analytics.errors.AnalyticsError: policy.yaml: surge needs a 'default' entry (window_s, min_events)
    """
    if not isinstance(data, dict) or not all(isinstance(data.get(k), dict) for k in ("surge", "forecast", "harm")):
        raise AnalyticsError(f"{where}: expected the mappings surge, forecast and harm")
    metrics = _metrics()
    surge = {}
    for etype, pol in data["surge"].items():
        try:
            out = {"window_s": float(pol["window_s"]), "min_events": int(pol["min_events"])}
        except (KeyError, TypeError, ValueError):
            raise AnalyticsError(f"{where}: surge.{etype} needs window_s (seconds) and min_events") from None
        if "count_levels" in pol:
            cuts = {str(lv): int(n) for lv, n in pol["count_levels"].items()}
            if set(cuts) - set(LEVELS) or sorted(cuts, key=rank) != list(cuts) or sorted(cuts.values()) != list(cuts.values()):
                raise AnalyticsError(f"{where}: surge.{etype}.count_levels are levels of {', '.join(LEVELS)}, "
                                     "least serious first, with rising counts")
            out["count_levels"] = cuts
        surge[str(etype)] = out
    if "default" not in surge:
        raise AnalyticsError(f"{where}: surge needs a 'default' entry (window_s, min_events)")
    rows = data.get("surge_levels")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) and r.get("level") in LEVELS
                                                         for r in rows):
        raise AnalyticsError(f"{where}: surge_levels is a list of {{level, p_below, min_events}}, most serious "
                             f"first (levels: {', '.join(LEVELS)})")
    surge_levels = tuple((r["level"], float(r.get("p_below", float("inf"))), int(r.get("min_events", 0)))
                         for r in rows)
    forecast = {}
    for metric, f in data["forecast"].items():
        if not isinstance(f, dict) or f.get("level") not in LEVELS or not f.get("rule"):
            raise AnalyticsError(f"{where}: forecast.{metric} needs rule and level (one of {', '.join(LEVELS)})")
        if metrics is not None and metric not in metrics:
            raise AnalyticsError(f"{where}: forecast.{metric} is not a metric of ingest/catalogue.yaml")
        forecast[str(metric)] = {"rule": str(f["rule"]), "level": f["level"],
                                 "gate": {str(k): float(v) for k, v in (f.get("gate") or {}).items()}}
    harm = {}
    for itype, h in data["harm"].items():
        if not (isinstance(h, list) and len(h) == 3 and h[1] in HARM_OPS):
            raise AnalyticsError(f"{where}: harm.{itype} is [metric, one of {' '.join(HARM_OPS)}, value]")
        if metrics is not None and h[0] not in metrics:
            raise AnalyticsError(f"{where}: harm.{itype}: {h[0]} is not a metric of ingest/catalogue.yaml")
        harm[str(itype)] = (str(h[0]), str(h[1]), float(h[2]))
    return Policy(surge=surge, surge_levels=surge_levels, forecast=forecast, harm=harm)


@lru_cache(maxsize=4)
def load_policy(path: str | None = None) -> Policy:
    """The policy in ``path`` (default: the packaged ``policy.yaml``)."""
    p = Path(path) if path else POLICY_FILE
    data = read_yaml(p, "policy file", AnalyticsError)
    return parse_policy(data, where=str(p.name))
