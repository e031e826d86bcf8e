"""The in-app inbox (站内信): written in the same transaction that groups the alerts, so it is
never lost and never written twice.

One item per recipient and alert (not per message): the alert's later events (escalated to the
recipient's region, reopened, a higher level) update that item and make it unread again, so one
alert never sits in one inbox twice. A test delivery (no alerts) is one message of its own.
"""

from __future__ import annotations

import sqlalchemy as sa

from analytics.alerting.channels.base import Channel, render_text


class InboxChannel(Channel):
    name = "inbox"
    label_zh = "站内信"
    label_en = "In-app inbox"
    order = 10
    inline = True

    def deliver_inline(self, conn, *, sub, payload, delivery_key, now, title=None) -> None:
        alerts = payload.get("alerts") or []
        if not alerts:
            subject, text = render_text(payload)
            conn.execute(sa.text(
                "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, "
                "top_level, created_at, updated_at) VALUES (:k, :s, :r, :t, :b, '{}', :top, :now, :now) "
                "ON CONFLICT (delivery_key) DO NOTHING"),
                {"k": delivery_key, "s": sub["id"], "r": sub["owner"], "t": title or subject, "b": text,
                 "top": payload.get("top_level") or "blue", "now": now})
            return
        rows = []
        for aj in alerts:
            one = {**payload, "kind": "alert", "count": 1, "top_level": aj["level"], "alerts": [aj]}
            subject, text = render_text(one)
            if any(e.startswith("escalated:") for e in aj.get("events") or ()):
                subject += " · 已上报至本级 / escalated to you"
            rows.append({"k": f"{delivery_key}:{aj['id']}", "s": sub["id"], "r": sub["owner"], "t": subject,
                         "b": text, "a": aj["id"], "ev": list(aj.get("events") or ()), "top": aj["level"],
                         "now": now})
        conn.execute(sa.text(
            "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, "
            "alert_id, events, top_level, created_at, updated_at) VALUES (:k, :s, :r, :t, :b, ARRAY[:a], :a, "
            ":ev, :top, :now, :now) ON CONFLICT (recipient, alert_id) WHERE alert_id IS NOT NULL DO UPDATE SET "
            "title = EXCLUDED.title, body = EXCLUDED.body, top_level = EXCLUDED.top_level, "
            "subscription_id = EXCLUDED.subscription_id, updated_at = EXCLUDED.updated_at, read_at = NULL, "
            "events = ARRAY(SELECT DISTINCT e FROM unnest(inbox_messages.events || EXCLUDED.events) AS e "
            "ORDER BY e)"), rows)


CHANNEL = InboxChannel()
