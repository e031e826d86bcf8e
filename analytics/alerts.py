"""Alerts: the contract object (DESIGN.md), de-duplication, and the record of changes.

An ongoing condition has one dedupe key (``<source>|<subject>``); while an alert with that key is
active (open, acknowledged or dispatched), new evidence updates it — level, last_seen, count —
instead of opening another. Every change is recorded as an action for the append-only history
and the ``city.alerts`` topic.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from analytics.levels import LEVEL_LABELS, rank
from analytics.statuses import ACTIVE_STATUSES

# How often an ongoing, unchanged alert is re-published with its new last_seen and count.
UPDATE_EVERY_S = 60.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).isoformat(timespec="milliseconds")


@dataclass
class Alert:
    id: str
    dedupe_key: str
    source: str
    level: str
    theme: str
    title: str
    detail: dict
    subject: str
    confidence: float
    adcode: str
    city: str
    province: str
    grid_id: str | None
    lon: float | None
    lat: float | None
    first_seen: float
    last_seen: float
    count: int = 1
    status: str = "open"
    published_at: float = 0.0  # stream time of the last publication (throttles updates)

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def message(self, action: str, note: str | None = None, actor: str = "system:detect") -> dict:
        """The JSON on ``city.alerts`` (the Alert contract plus the action that produced it)."""
        geometry = ({"type": "Point", "coordinates": [self.lon, self.lat]}
                    if self.lon is not None and self.lat is not None else None)
        zh, en = LEVEL_LABELS[self.level]
        return {
            "schema": "alert/1", "id": self.id, "dedupe_key": self.dedupe_key, "source": self.source,
            "level": self.level, "level_label": {"zh": zh, "en": en}, "theme": self.theme,
            "title": self.title, "detail": self.detail, "subject": self.subject,
            "confidence": round(self.confidence, 3),
            "region": {"adcode": self.adcode, "city": self.city, "province": self.province, "grid_id": self.grid_id},
            "adcode": self.adcode, "city": self.city, "province": self.province,
            "geometry": geometry, "first_seen": iso(self.first_seen), "last_seen": iso(self.last_seen),
            "count": self.count, "status": self.status,
            "action": {"action": action, "actor": actor, "ts": iso(self.last_seen), "note": note},
        }


@dataclass
class Change:
    """One action on an alert, to be persisted (alerts row + alert_history) and published."""

    alert: Alert
    action: str  # opened | escalated | downgraded | updated | corroborated | resolved
    note: str | None = None
    snapshot: dict = field(default_factory=dict)


class AlertBook:
    """The active alerts, by dedupe key, and the changes not yet drained."""

    def __init__(self):
        self.active: dict[str, Alert] = {}
        self.changes: list[Change] = []

    def _record(self, alert: Alert, action: str, note: str | None = None) -> None:
        alert.published_at = alert.last_seen
        self.changes.append(Change(alert, action, note, alert.message(action, note)))

    def raise_(self, key: str, *, ts: float, level: str, source: str, theme: str, title: str, detail: dict,
               subject: str, place: dict, confidence: float = 0.5, note: str | None = None) -> Alert:
        """Open an alert for ``key``, or update the active one (level may go up or down)."""
        a = self.active.get(key)
        if a is None:
            a = Alert(id=str(uuid.uuid4()), dedupe_key=key, source=source, level=level, theme=theme, title=title,
                      detail=dict(detail), subject=subject, confidence=confidence,
                      adcode=place.get("county", ""), city=place.get("city", ""),
                      province=place.get("province", ""), grid_id=place.get("grid_id") or None,
                      lon=place.get("lon"), lat=place.get("lat"), first_seen=ts, last_seen=ts)
            self.active[key] = a
            self._record(a, "opened", note)
            return a
        previous = a.level
        a.last_seen = max(a.last_seen, ts)
        a.count += 1
        a.detail.update(detail)
        a.source = source
        a.confidence = max(a.confidence, confidence)
        if rank(level) != rank(previous):
            a.level = level
            self._record(a, "escalated" if rank(level) > rank(previous) else "downgraded", note)
        elif ts - a.published_at >= UPDATE_EVERY_S:
            self._record(a, "updated", note)
        return a

    def touch(self, key: str, ts: float) -> None:
        """The condition is still there (one more observation): extend last_seen and count,
        published at most every minute."""
        a = self.active.get(key)
        if a is not None and ts > a.last_seen:
            a.last_seen = ts
            a.count += 1
            if ts - a.published_at >= UPDATE_EVERY_S:
                self._record(a, "updated")

    def corroborate(self, key: str, *, ts: float, confidence: float, level: str | None, note: str) -> None:
        a = self.active.get(key)
        if a is None:
            return
        a.confidence = max(a.confidence, confidence)
        a.detail["corroborated"] = True
        a.detail.pop("possible_fault", None)
        if level and rank(level) > rank(a.level):
            a.level = level
        a.last_seen = max(a.last_seen, ts)
        self._record(a, "corroborated", note)

    def resolve(self, key: str, ts: float, note: str | None = None) -> None:
        a = self.active.pop(key, None)
        if a is None:
            return
        a.last_seen = max(a.last_seen, ts)
        a.status = "resolved"
        self._record(a, "resolved", note)

    def drain(self) -> list[Change]:
        out, self.changes = self.changes, []
        return out
