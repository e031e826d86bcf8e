"""Delivery channels of alert notifications, one module each, and their registry.

Each module of this package (except ``base``) defines ``CHANNEL``: its name and labels, the
settings it needs from a subscriber (``fields``, columns of ``subscriptions``), their validation
and how it delivers. Subscriptions, the notifier, ``subscriptions test``, the API and the
subscriptions page all read this registry, so a new channel — say SMS — is:

1. ``analytics/alerting/channels/sms.py`` with ``CHANNEL = SmsChannel()`` (fields, ``send``);
2. its gateway settings in ``tongguan/settings.py`` (``TONGGUAN_SMS_*``), read by ``send``;
3. a migration adding its field columns to ``subscriptions`` (e.g. ``phone``).
"""

from __future__ import annotations

import pkgutil
from functools import lru_cache
from importlib import import_module

from analytics.alerting.channels.base import (
    Channel,
    Field,
    Outcome,
    body_bytes,
    render_text,
)
from analytics.alerting.config import AlertingError

__all__ = ["Channel", "Field", "Outcome", "body_bytes", "channel", "channel_names", "channels",
           "render_text", "setting_fields"]


@lru_cache(maxsize=1)
def channels() -> tuple[Channel, ...]:
    """Every channel of this package, in form order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name == "base":
            continue
        module = import_module(f"{__name__}.{info.name}")
        found.append(module.CHANNEL)
    return tuple(sorted(found, key=lambda c: (c.order, c.name)))


def channel_names() -> tuple[str, ...]:
    """The channels' names, in form order.

    >>> channel_names()
    ('inbox', 'webhook', 'email')
    """
    return tuple(c.name for c in channels())


def channel(name: str) -> Channel:
    """The channel called ``name``; AlertingError naming the known ones otherwise."""
    for c in channels():
        if c.name == name:
            return c
    raise AlertingError(f"unknown channel {name!r}; use one of {', '.join(channel_names())}")


def setting_fields() -> tuple[Field, ...]:
    """Every channel's settings, in form order (the subscription columns they are stored in).

    >>> [f.name for f in setting_fields()]
    ['webhook_url', 'email']
    """
    return tuple(f for c in channels() for f in c.fields)
