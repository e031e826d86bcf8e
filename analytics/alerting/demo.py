"""The demo's subscribers: a signed webhook, an e-mail and an inbox subscription per city
(``tongguan subscriptions demo``), and the local receivers that print what arrives — the webhook
receiver's handler and an SMTP sink."""

from __future__ import annotations

import time
from datetime import datetime

from analytics.alerting.config import LOCAL, AlertingError


def ensure_demo_subscriptions(engine, *, region: str, webhook_url: str, email: str) -> dict:
    """The demo's subscribers (idempotent, by name): a signed webhook and an e-mail for the city,
    and an inbox for user ``demo``. Returns them by channel."""
    import sqlalchemy as sa

    from analytics.alerting.subscriptions import add_subscription, list_subscriptions

    wanted = {
        "webhook": {"name": f"演示 webhook {region}", "channels": ["webhook"], "webhook_url": webhook_url},
        "email": {"name": f"演示 e-mail {region}", "channels": ["email"], "email": email, "min_level": "yellow"},
        "inbox": {"name": f"演示 inbox {region}", "channels": ["inbox"]},
    }
    existing = {s["name"]: s for s in list_subscriptions(engine)}
    out = {}
    for channel, spec in wanted.items():
        sub = existing.get(spec["name"])
        if sub is None:
            sub = add_subscription(engine, owner="demo", adcode=region, **spec)
        elif channel == "webhook" and sub["webhook_url"] != webhook_url:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE subscriptions SET webhook_url = :u WHERE id = :id"),
                             {"u": webhook_url, "id": sub["id"]})
        out[channel] = sub
    return out


def show_delivery(payload, headers) -> None:
    alerts = payload.get("alerts") or []
    print(f"[{datetime.now(LOCAL):%H:%M:%S}] webhook: verified signed {payload.get('kind')} "
          f"{payload.get('delivery')}: {len(alerts)} alert(s), top {payload.get('top_level')}", flush=True)
    for a in alerts[:20]:
        print(f"    {a.get('level'):<6} {a.get('adcode')} {a.get('theme'):<9} {a.get('title')} "
              f"{','.join(a.get('events') or [])}", flush=True)
    if len(alerts) > 20:
        print(f"    … and {len(alerts) - 20} more", flush=True)


def smtp_sink(host: str, port: int):
    """A started aiosmtpd controller that prints each message it accepts."""
    try:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Message
    except ImportError:
        raise AlertingError("the SMTP sink needs aiosmtpd: pip install -e '.[test]'") from None
    import email.header
    import logging

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection at INFO

    class Show(Message):
        def handle_message(self, message):
            subject = str(email.header.make_header(email.header.decode_header(message["Subject"] or "")))
            print(f"[{datetime.now(LOCAL):%H:%M:%S}] e-mail to {message['To']}: {subject}", flush=True)

    ctl = Controller(Show(), hostname=host, port=port)
    ctl.start()
    return ctl


def serve_forever(receiver=None) -> None:
    import signal

    def interrupt(*_):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupt)
    try:
        while True:
            time.sleep(1)
            while receiver is not None and receiver.rejected:
                print(f"webhook: rejected: {receiver.rejected.pop(0)}", flush=True)
    except KeyboardInterrupt:
        pass
