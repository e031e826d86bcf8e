"""What every delivery channel is — its settings (the subscription fields it needs), their
validation, and how it delivers — and the content all channels share (text, JSON body).

A channel module (``inbox``, ``webhook``, ``mail``, …) defines ``CHANNEL``, an instance of a
:class:`Channel` subclass; :mod:`analytics.alerting.channels` finds the modules by itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from analytics.alerting.config import AlertingError
from analytics.levels import LEVEL_LABELS, rank


@dataclass
class Outcome:
    ok: bool
    detail: str


@dataclass(frozen=True)
class Field:
    """One setting a channel needs from the subscriber: a column of ``subscriptions`` and the
    key of the same name in the form, the API and ``add_subscription``."""

    name: str
    label_zh: str
    label_en: str
    pattern: str  # a value must match it (``re.match``)
    needs: str  # the error when it is missing or does not match: says what to write
    placeholder: str = ""

    def label(self, lang: str) -> str:
        return self.label_zh if lang == "zh" else self.label_en


class Channel:
    """A delivery channel. ``inline`` channels are delivered inside the notifier's transaction
    (:meth:`deliver_inline`); the others are attempted, retried and logged (:meth:`send`)."""

    name = ""
    label_zh = ""
    label_en = ""
    order = 100  # position in lists and forms
    fields: tuple[Field, ...] = ()
    generated: tuple[str, ...] = ()  # columns the channel fills itself (never taken from a form)
    inline = False

    def label(self, lang: str) -> str:
        return self.label_zh if lang == "zh" else self.label_en

    def validate(self, values: Mapping) -> None:
        """Raise AlertingError (saying what to write) when a setting is missing or malformed."""
        for f in self.fields:
            if not re.match(f.pattern, values.get(f.name) or ""):
                raise AlertingError(f.needs, "bad_setting", field_zh=f.label_zh, field_en=f.label_en,
                                    example=f.placeholder)

    def generate(self, values: Mapping, old: Mapping | None = None) -> dict:
        """Values of the ``generated`` columns for a subscription being created (``old`` None)
        or changed."""
        return {}

    def send(self, *, settings, config, sub: Mapping, payload: dict, delivery_key: str, attempt: int = 1,
             resend: bool = False) -> Outcome:
        """One attempt of a delivery: ``attempt`` counts from 1; ``resend`` says an earlier
        attempt may have reached the subscriber (its outcome is unknown), for channels that can
        tell the receiver so."""
        raise NotImplementedError(f"channel {self.name} delivers inline")

    def deliver_inline(self, conn, *, sub: Mapping, payload: dict, delivery_key: str, now,
                       title: str | None = None) -> None:
        raise NotImplementedError(f"channel {self.name} is sent, not delivered inline")


def render_text(payload: dict) -> tuple[str, str]:
    """Subject and plain-text body (Chinese first, then English) of a notification."""
    alerts = payload.get("alerts") or []
    top = payload.get("top_level") or "blue"
    zh, en = LEVEL_LABELS.get(top, (top, top))
    if len(alerts) == 1:
        a = alerts[0]
        subject = f"[{zh}] {a.get('title')} — {a.get('adcode')} / {en}"
    else:
        subject = f"[{zh}] {len(alerts)} 条预警汇总 / digest of {len(alerts)} alerts ({payload.get('subscription', {}).get('name', '')})"
    lines = [subject, ""]
    for a in sorted(alerts, key=lambda a: -rank(a.get("level"))):
        lz = LEVEL_LABELS.get(a.get("level"), ("", ""))[0]
        lines.append(f"- {lz} {a.get('title')} | {a.get('theme')} | {a.get('adcode')} | "
                     f"{a.get('first_seen')} | {', '.join(a.get('events') or [])} | id {a.get('id')}")
    lines += ["", f"delivery {payload.get('delivery')}"]
    return subject, "\n".join(lines)


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
