"""The alert-handling configuration (``alerting.yaml``): windows, escalation, inhibition, delivery.

One place for every knob of the closed loop and the notifier; the code reads nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from analytics.errors import AnalyticsError
from analytics.levels import LEVELS
from analytics.rules import parse_duration
from tongguan.yamlfile import read_yaml

ALERTING_FILE = Path(__file__).with_name("alerting.yaml")
# China Standard Time: how the command line and the demo's receivers print times.
LOCAL = timezone(timedelta(hours=8))


class AlertingError(AnalyticsError):
    """Alert handling, subscriptions or delivery could not do what was asked. The message says
    why in English (for the CLI and the API); ``key`` and ``params``, when given, name the same
    reason for the views, which say it in the user's language (``refusal.<key>`` in
    apps/messages.yaml)."""

    def __init__(self, message: str, key: str | None = None, **params):
        super().__init__(message)
        self.key = key
        self.params = params


@dataclass(frozen=True)
class InhibitRule:
    """An active umbrella alert inhibits the notifications of target alerts in its county."""

    name: str
    umbrella_sources: tuple[str, ...]
    umbrella_min_level: str
    target_sources: tuple[str, ...]


@dataclass(frozen=True)
class AlertingConfig:
    reopen_window: float = 7200.0
    min_due_ahead: float = 60.0
    immediate_levels: tuple[str, ...] = ("red",)
    unacknowledged: Mapping[str, float] = field(default_factory=lambda: {"orange": 900.0})
    cluster_min_counties: int = 3
    cluster_min_level: str = "yellow"
    inhibit: tuple[InhibitRule, ...] = ()
    offline_after: float = 900.0
    group_wait: float = 0.2
    group_interval: float = 60.0
    retry_max_attempts: int = 5
    retry_base: float = 2.0
    retry_max_backoff: float = 300.0
    retry_parked_every: float = 600.0
    retry_parked_for: float = 86400.0
    webhook_timeout: float = 5.0
    send_lease: float = 35.0
    signature_tolerance: float = 300.0
    tick_every: float = 5.0

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        >>> [AlertingConfig(retry_base=2, retry_max_backoff=10).backoff(n) for n in (1, 2, 3, 4)]
        [2.0, 4.0, 8.0, 10.0]
        """
        return float(min(self.retry_base * 2 ** (attempt - 1), self.retry_max_backoff))


def _levels(raw: Any, where: str) -> tuple[str, ...]:
    items = tuple(str(x) for x in (raw or ()))
    bad = [x for x in items if x not in LEVELS]
    if bad:
        raise AlertingError(f"{where}: unknown level(s) {', '.join(bad)}; use {', '.join(LEVELS)}")
    return items


def _patterns(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not raw or not all(isinstance(x, str) for x in raw):
        raise AlertingError(f"{where}: give a list of source patterns, e.g. [\"rule:power-outage*\"]")
    return tuple(raw)


def parse_alerting(data: Mapping, source: str = "alerting") -> AlertingConfig:
    """The configuration from parsed YAML, checked; unknown levels or bad durations are errors."""
    if not isinstance(data, Mapping):
        raise AlertingError(f"{source}: expected a mapping")
    life = data.get("lifecycle") or {}
    esc = data.get("escalation") or {}
    notify = data.get("notify") or {}
    retry = notify.get("retry") or {}
    cluster = esc.get("cluster") or {}
    unack = esc.get("unacknowledged") or {}
    _levels(list(unack), f"{source}: escalation.unacknowledged")
    inhibit = []
    for i, raw in enumerate(data.get("inhibition") or ()):
        where = f"{source}: inhibition[{i}]"
        try:
            umbrella, target = raw["umbrella"], raw["target"]
        except (KeyError, TypeError):
            raise AlertingError(f"{where}: needs an umbrella and a target") from None
        inhibit.append(InhibitRule(
            name=str(raw.get("name") or f"inhibit-{i}"),
            umbrella_sources=_patterns(umbrella.get("source"), f"{where}.umbrella.source"),
            umbrella_min_level=(_levels([umbrella.get("min_level", "blue")], f"{where}.umbrella") or ("blue",))[0],
            target_sources=_patterns(target.get("source"), f"{where}.target.source"),
        ))
    try:
        cfg = AlertingConfig(
            reopen_window=parse_duration(life.get("reopen_window", "2h")),
            min_due_ahead=parse_duration(life.get("min_due_ahead", "1m")),
            immediate_levels=_levels(esc.get("immediate_levels", ["red"]), f"{source}: escalation.immediate_levels"),
            unacknowledged={str(k): parse_duration(v) for k, v in unack.items()},
            cluster_min_counties=int(cluster.get("min_counties", 3)),
            cluster_min_level=_levels([cluster.get("min_level", "yellow")], f"{source}: escalation.cluster")[0],
            inhibit=tuple(inhibit),
            offline_after=parse_duration((data.get("sensors") or {}).get("offline_after", "15m")),
            group_wait=parse_duration(notify.get("group_wait", "0.2s")),
            group_interval=parse_duration(notify.get("group_interval", "60s")),
            retry_max_attempts=int(retry.get("max_attempts", 5)),
            retry_base=parse_duration(retry.get("base", "2s")),
            retry_max_backoff=parse_duration(retry.get("max_backoff", "5m")),
            retry_parked_every=parse_duration(retry.get("parked_every", "10m")),
            retry_parked_for=parse_duration(retry.get("parked_for", "24h")),
            webhook_timeout=parse_duration(notify.get("webhook_timeout", "5s")),
            send_lease=parse_duration(notify.get("send_lease", "35s")),
            signature_tolerance=parse_duration(notify.get("signature_tolerance", "5m")),
            tick_every=parse_duration(notify.get("tick_every", "5s")),
        )
    except AnalyticsError as exc:
        raise AlertingError(f"{source}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise AlertingError(f"{source}: {exc}") from None
    if cfg.cluster_min_counties < 2:
        raise AlertingError(f"{source}: escalation.cluster.min_counties must be at least 2")
    if cfg.send_lease <= cfg.webhook_timeout:
        raise AlertingError(f"{source}: notify.send_lease must be longer than notify.webhook_timeout "
                            "(a delivery still being sent must not be claimed again)")
    if cfg.retry_max_attempts < 1:
        raise AlertingError(f"{source}: notify.retry.max_attempts must be at least 1")
    return cfg


@lru_cache(maxsize=4)
def load_alerting(path: str | None = None) -> AlertingConfig:
    """The configuration in ``path`` (default: the packaged ``alerting.yaml``)."""
    p = Path(path) if path else ALERTING_FILE
    data = read_yaml(p, "alerting configuration", AlertingError)
    return parse_alerting(data, str(p))
