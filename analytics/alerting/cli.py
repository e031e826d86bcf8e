"""``tongguan notify``, ``tongguan alerts …``, ``tongguan subscriptions …`` and
``tongguan bench notify-latency``: alert handling and delivery without the apps."""

from __future__ import annotations

import getpass
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta, timezone

from analytics.alerting.config import AlertingError
from analytics.levels import LEVEL_LABELS, LEVELS

LOCAL = timezone(timedelta(hours=8))


# ---------------------------------------------------------------------------------- helpers
def _actor(args) -> str:
    if getattr(args, "actor", None):
        return args.actor
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "cli"


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """``+2h`` / ``+30m`` / ``+1d`` from now, or RFC 3339 with an offset (a bare time is UTC+8).

    >>> parse_when("+90m", now=datetime(2026, 6, 1, tzinfo=timezone.utc)).isoformat()
    '2026-06-01T01:30:00+00:00'
    """
    now = now or datetime.now(UTC)
    m = re.fullmatch(r"\+(\d+(?:\.\d+)?)([smhd])", (text or "").strip())
    if m:
        return now + timedelta(seconds=float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        raise AlertingError(f"bad time {text!r}; write +2h, +30m or 2026-06-01T18:00:00+08:00") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=LOCAL)


def _csv(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def _fmt_ts(v) -> str:
    return v.astimezone(LOCAL).strftime("%m-%d %H:%M") if isinstance(v, datetime) else ("" if v is None else str(v))


def _print_json(obj) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


# ----------------------------------------------------------------------------------- alerts
def cmd_alerts_list(args, ctx) -> int:
    import sqlalchemy as sa

    statuses = ["open", "acknowledged", "dispatched", "resolved", "closed"] if args.status == "all" else _csv(args.status)
    sql = ("SELECT a.id, a.level, a.theme, a.title, a.status, trim(a.adcode) AS adcode, a.first_seen, h.visible_at, "
           "h.owner_region, h.assigned_unit, h.due_at, h.overdue_at FROM alerts a JOIN alert_handling h "
           "ON h.alert_id = a.id WHERE a.status = ANY(:st)")
    params: dict = {"st": statuses, "n": args.limit}
    if args.region:
        sql += " AND (a.adcode = :r OR a.city = :r OR a.province = :r OR h.visible_at = :r OR h.owner_region = :r)"
        params["r"] = args.region
    if args.theme:
        sql += " AND a.theme = :th"
        params["th"] = args.theme
    sql += " ORDER BY a.first_seen DESC LIMIT :n"
    with ctx.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print("没有预警 / no alerts")
        return 0
    for r in rows:
        flag = " 督办!" if r["overdue_at"] else ""
        up = f" ↑{r['visible_at']}" if r["visible_at"] != r["adcode"] else ""
        print(f"{r['id']:<38} {LEVEL_LABELS[r['level']][0][:4]:<4} {r['status']:<12} {r['adcode']}{up:<8} "
              f"{r['theme']:<9} {_fmt_ts(r['first_seen'])} {r['title']}{flag}")
    return 0


def cmd_alerts_show(args, ctx) -> int:
    from analytics.alerting.lifecycle import history, load_alert
    from analytics.alerting.notifier import alert_json

    with ctx.engine.connect() as conn:
        a = alert_json(load_alert(conn, args.id))
        a["handling"] = {k: a.pop(k) for k in ("owner_region", "visible_at", "escalated_at", "escalation_reason",
                                               "assigned_unit", "assigned_region", "due_at", "reopened")}
        a["history"] = history(conn, args.id)
    _print_json(a)
    return 0


def _done(alert: dict) -> int:
    print(f"{alert['id']}: {alert['status']}")
    return 0


def cmd_ack(args, ctx) -> int:
    from analytics.alerting.lifecycle import acknowledge

    return _done(acknowledge(ctx.engine, args.id, actor=_actor(args), note=args.note))


def cmd_dispatch(args, ctx) -> int:
    from analytics.alerting.lifecycle import dispatch

    return _done(dispatch(ctx.engine, args.id, actor=_actor(args), to_unit=args.to_unit, due_at=parse_when(args.due),
                          to_region=args.to_region, note=args.note))


def cmd_resolve(args, ctx) -> int:
    from analytics.alerting.lifecycle import resolve

    return _done(resolve(ctx.engine, args.id, actor=_actor(args), note=args.note))


def cmd_close(args, ctx) -> int:
    from analytics.alerting.lifecycle import close

    return _done(close(ctx.engine, args.id, actor=_actor(args), note=args.note, false_alarm=args.false_alarm))


def cmd_reopen(args, ctx) -> int:
    from analytics.alerting.lifecycle import reopen

    return _done(reopen(ctx.engine, args.id, actor=_actor(args), note=args.note))


def cmd_take_over(args, ctx) -> int:
    from analytics.alerting.lifecycle import take_over

    return _done(take_over(ctx.engine, args.id, actor=_actor(args), region=args.region, note=args.note))


def cmd_escalate(args, ctx) -> int:
    """One escalation pass; each escalated alert is re-published so running notifiers notify it."""
    from analytics.alerting.lifecycle import load_alert
    from analytics.alerting.linkage import escalate_due
    from analytics.alerting.notifier import alert_json

    done = escalate_due(ctx.engine)
    if done:
        from kafka import KafkaProducer

        producer = KafkaProducer(bootstrap_servers=ctx.kafka_bootstrap, acks="all")
        with ctx.engine.connect() as conn:
            for aid in dict.fromkeys(a for a, _ in done):
                msg = alert_json(load_alert(conn, aid))
                msg["action"] = {"action": "escalated_up", "actor": "system:escalation",
                                 "ts": datetime.now(UTC).isoformat(), "note": msg.get("escalation_reason")}
                producer.send(ctx.settings.topic("alerts"), key=aid.encode(),
                              value=json.dumps(msg, ensure_ascii=False, default=str).encode())
        producer.flush()
        producer.close()
    for aid, region in done:
        print(f"{aid} → {region}")
    print(f"{len(done)} escalation step(s)")
    return 0


def cmd_rollup(args, ctx) -> int:
    from analytics.alerting.linkage import (
        children_status,
        refresh_sensors,
        region_status,
    )

    refresh_sensors(ctx.engine)
    me = region_status(ctx.engine, args.region)
    kids = children_status(ctx.engine, args.region)
    if args.json:
        _print_json({"region": me, "children": kids})
        return 0

    def line(r, indent=""):
        lv = r.get("by_level") or {}
        counts = " ".join(f"{LEVEL_LABELS[x][0][:2]}{lv.get(x, 0)}" for x in reversed(LEVELS))
        worst = LEVEL_LABELS[r["worst_level"]][0][:4] if r.get("worst_level") else "无预警"
        print(f"{indent}{r['adcode']} {worst:<6} open {r['open_total']:>4} (unack {r['unacknowledged']:>3}) "
              f"{counts}  sensors offline {r['sensors_offline']}/{r['sensors_total']}")

    line(me)
    for k in kids:
        line(k, "  ")
    return 0


def cmd_silence_add(args, ctx) -> int:
    from analytics.alerting.linkage import add_silence

    start = parse_when(args.start) if args.start else datetime.now(UTC)
    sid = add_silence(ctx.engine, adcode=args.region, starts_at=start, ends_at=parse_when(args.until, now=start),
                      themes=_csv(args.themes), metrics=_csv(args.metrics), reason=args.reason,
                      created_by=_actor(args))
    print(f"silence {sid}")
    return 0


def cmd_silence_list(args, ctx) -> int:
    from analytics.alerting.linkage import list_silences

    rows = list_silences(ctx.engine, include_expired=args.all)
    if args.json:
        _print_json(rows)
        return 0
    for s in rows:
        print(f"{s['id']:>4} {s['adcode']} {_fmt_ts(s['starts_at'])} → {_fmt_ts(s['ends_at'])} "
              f"themes={','.join(s['themes']) or '*'} metrics={','.join(s['metrics']) or '*'} {s['reason']}")
    if not rows:
        print("没有静默 / no silences")
    return 0


def cmd_silence_remove(args, ctx) -> int:
    from analytics.alerting.linkage import expire_silence

    expire_silence(ctx.engine, args.id)
    print(f"silence {args.id} ended")
    return 0


# ------------------------------------------------------------------------------ subscriptions
def cmd_sub_add(args, ctx) -> int:
    from analytics.alerting.subscriptions import add_subscription

    qs = qe = None
    if args.quiet:
        parts = args.quiet.split("-")
        if len(parts) != 2:
            raise AlertingError("write quiet hours as 22:00-07:00")
        qs, qe = parts
    sub = add_subscription(ctx.engine, name=args.name, owner=args.owner or _actor(args), adcode=args.region,
                           channels=_csv(args.channels), themes=_csv(args.themes), min_level=args.min_level,
                           webhook_url=args.webhook_url, email=args.email, quiet_start=qs, quiet_end=qe,
                           timezone=args.tz, escalated_only=args.escalated_only, secret=args.secret)
    print(f"subscription {sub['id']}")
    if sub.get("secret"):
        print(f"webhook secret (HMAC-SHA256 key; keep it): {sub['secret']}")
    return 0


def cmd_sub_list(args, ctx) -> int:
    from analytics.alerting.subscriptions import list_subscriptions

    rows = list_subscriptions(ctx.engine, owner=args.owner, active_only=not args.all)
    for r in rows:
        r.pop("secret", None)
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        quiet = f" quiet {r['quiet_start']:%H:%M}-{r['quiet_end']:%H:%M}" if r["quiet_start"] else ""
        print(f"{r['id']:>4} {r['name']} ({r['owner']}) {r['adcode']} ≥{r['min_level']} "
              f"themes={','.join(r['themes']) or '*'} via {','.join(r['channels'])}{quiet}"
              f"{'' if r['active'] else ' [removed]'}")
    if not rows:
        print("没有订阅 / no subscriptions")
    return 0


def cmd_sub_remove(args, ctx) -> int:
    from analytics.alerting.subscriptions import remove_subscription

    remove_subscription(ctx.engine, args.id)
    print(f"subscription {args.id} removed")
    return 0


def send_test(engine, settings, sub_id: int) -> list[tuple[str, bool, str]]:
    """Send a test notification through every channel of a subscription now (logged like any other)."""
    import sqlalchemy as sa

    from analytics.alerting.channels.webhook import (
        Outcome,
        render_text,
        send_email,
        send_webhook,
    )
    from analytics.alerting.config import load_alerting
    from analytics.alerting.subscriptions import get_subscription

    sub = get_subscription(engine, sub_id)
    now = datetime.now(UTC)
    cfg = load_alerting()
    out = []
    for channel in sub["channels"]:
        key = f"test-s{sub['id']}-{int(now.timestamp() * 1000)}-{channel}"
        payload = {"schema": "notification/1", "kind": "test", "delivery": key, "count": 0, "top_level": "blue",
                   "subscription": {"id": sub["id"], "name": sub["name"], "adcode": sub["adcode"]},
                   "created_at": now.isoformat(), "alerts": []}
        t = time.perf_counter()
        if channel == "webhook":
            res = send_webhook(sub["webhook_url"], sub["secret"] or "", payload, delivery_key=key,
                               timeout=cfg.webhook_timeout)
        elif channel == "email":
            res = send_email(settings, sub["email"], payload, delivery_key=key)
        else:
            res = Outcome(True, "inbox")
        ms = (time.perf_counter() - t) * 1000
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO notification_deliveries (key, subscription_id, channel, alert_ids, payload, status, "
                "attempts, sent_at, last_error) VALUES (:k, :s, :c, '{}', CAST(:p AS jsonb), :st, 1, :sent, :err)"),
                {"k": key, "s": sub["id"], "c": channel, "p": json.dumps(payload), "st": "sent" if res.ok else "failed",
                 "sent": now if res.ok else None, "err": None if res.ok else res.detail})
            conn.execute(sa.text("INSERT INTO delivery_attempts (delivery_key, attempt, duration_ms, outcome, detail) "
                                 "VALUES (:k, 1, :ms, :o, :d)"),
                         {"k": key, "ms": ms, "o": "ok" if res.ok else "error", "d": res.detail})
            if channel == "inbox":
                _, text = render_text({**payload, "alerts": []})
                conn.execute(sa.text(
                    "INSERT INTO inbox_messages (delivery_key, subscription_id, recipient, title, body, alert_ids, "
                    "top_level) VALUES (:k, :s, :r, :t, :b, '{}', 'blue')"),
                    {"k": key, "s": sub["id"], "r": sub["owner"], "t": "测试通知 / test notification", "b": text})
        out.append((channel, res.ok, res.detail))
    return out


def cmd_sub_test(args, ctx) -> int:
    results = send_test(ctx.engine, ctx.settings, args.id)
    for channel, ok, detail in results:
        print(f"{channel:<8} {'ok' if ok else 'FAILED'}  {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_sub_inbox(args, ctx) -> int:
    from analytics.alerting.subscriptions import inbox, mark_read

    rows = inbox(ctx.engine, args.owner, unread_only=args.unread, limit=args.limit)
    for r in rows:
        print(f"{'  ' if r['read_at'] else '● '}{r['id']:>5} {_fmt_ts(r['created_at'])} {r['title']}")
    if not rows:
        print("收件箱为空 / inbox empty")
    if args.mark_read:
        mark_read(ctx.engine, args.owner, [r["id"] for r in rows])
    return 0


def _show_delivery(payload, headers) -> None:
    alerts = payload.get("alerts") or []
    print(f"[{datetime.now(LOCAL):%H:%M:%S}] webhook: verified signed {payload.get('kind')} "
          f"{payload.get('delivery')}: {len(alerts)} alert(s), top {payload.get('top_level')}", flush=True)
    for a in alerts[:20]:
        print(f"    {a.get('level'):<6} {a.get('adcode')} {a.get('theme'):<9} {a.get('title')} "
              f"{','.join(a.get('events') or [])}", flush=True)
    if len(alerts) > 20:
        print(f"    … and {len(alerts) - 20} more", flush=True)


def _smtp_sink(host: str, port: int):
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


def _serve_forever(receiver=None) -> None:
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


def cmd_receiver(args, ctx) -> int:
    """Print verified deliveries (the demo's webhook subscriber)."""
    from analytics.alerting.channels.webhook import WebhookReceiver

    secret = args.secret
    if args.subscription:
        from analytics.alerting.subscriptions import get_subscription

        secret = get_subscription(ctx.engine, args.subscription)["secret"]
    if not secret:
        raise AlertingError("give the subscription's secret (--secret) or its id (--subscription)")
    r = WebhookReceiver(secret, host=args.host, port=args.port, on_delivery=_show_delivery).start()
    print(f"receiving signed deliveries on {r.url} (Ctrl-C to stop)", flush=True)
    try:
        _serve_forever(r)
    finally:
        r.stop()
    return 0


def cmd_smtp_sink(args, ctx) -> int:
    """A local SMTP server printing what it receives (the demo's e-mail subscriber's mailbox)."""
    ctl = _smtp_sink(args.host, args.port)
    print(f"SMTP sink on {args.host}:{args.port} (set TONGGUAN_SMTP_HOST/PORT to it; Ctrl-C to stop)", flush=True)
    try:
        _serve_forever()
    finally:
        ctl.stop()
    return 0


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


def cmd_sub_demo(args, ctx) -> int:
    """The demo's subscribers, live: for each city a signed webhook (``/hook/<city>``, its own
    secret), an e-mail and an inbox subscription; a receiver and an SMTP sink print what arrives."""
    from analytics.alerting.channels.webhook import WebhookReceiver

    regions = _csv(args.region)
    secrets: dict[str, str] = {}
    r = WebhookReceiver(lambda path: secrets.get(path.rstrip("/").rsplit("/", 1)[-1]), host="127.0.0.1",
                        port=args.port, on_delivery=_show_delivery)
    for region in regions:
        url = f"http://127.0.0.1:{r.port}/hook/{region}"
        subs = ensure_demo_subscriptions(ctx.engine, region=region, webhook_url=url, email=args.email)
        secrets[region] = subs["webhook"]["secret"]
        print(f"demo subscribers for {region}: webhook {url} (subscription {subs['webhook']['id']}), e-mail "
              f"{args.email} (subscription {subs['email']['id']}), inbox of user demo", flush=True)
    r.start()
    ctl = _smtp_sink("127.0.0.1", args.smtp_port)
    print(f"SMTP sink on 127.0.0.1:{args.smtp_port}: the notifier needs TONGGUAN_SMTP_HOST=127.0.0.1 "
          f"TONGGUAN_SMTP_PORT={args.smtp_port}", flush=True)
    try:
        _serve_forever(r)
    finally:
        r.stop()
        ctl.stop()
    return 0


# ------------------------------------------------------------------------------------- notify
def cmd_notify(args, ctx) -> int:
    from analytics.alerting.notifier import Notifier
    from tongguan.services import ensure_topics
    from tongguan.settings import TOPICS

    ctx.require()
    settings = ctx.settings.model_copy(update={"database_url": ctx.database_url,
                                               "kafka_bootstrap": ctx.kafka_bootstrap})
    ensure_topics(settings.kafka_bootstrap, settings.partitions, tuple(settings.topic(t) for t in TOPICS))
    from analytics.alerting.config import ALERTING_FILE, load_alerting

    path = ALERTING_FILE.with_name("alerting-demo.yaml") if args.config == "demo" else args.config
    n = Notifier(settings, engine=ctx.engine, group_id=args.group_id, config=load_alerting(str(path) if path else None))
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: finish the turn, close the consumer
        signal.signal(sig, lambda *_: n.stop())
    stats = n.run(max_seconds=args.max_seconds)
    print(json.dumps(stats), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------ register
def register(sub) -> None:
    p = sub.add_parser("notify", help="deliver alerts from city.alerts to subscriptions (inbox, webhook, e-mail)")
    p.add_argument("--group-id", default="tongguan-notify")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: run until Ctrl-C)")
    p.add_argument("--config", help="another alerting.yaml ('demo': short escalation and grouping times)")
    p.set_defaults(func=cmd_notify)

    a = sub.add_parser("alerts", help="list, show and handle alerts (ack, dispatch, resolve, close, …)")
    asub = a.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=type(a))
    asub.required = True
    x = asub.add_parser("list", help="alerts, newest first")
    x.add_argument("--region", help="adcode: alerts in it, escalated to it or owned by it")
    x.add_argument("--status", default="open,acknowledged,dispatched", help="comma list or 'all'")
    x.add_argument("--theme")
    x.add_argument("--limit", type=int, default=50)
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_alerts_list)
    x = asub.add_parser("show", help="one alert with its handling state and history (JSON)")
    x.add_argument("id")
    x.set_defaults(func=cmd_alerts_show)

    def handling(name, help_, func, *, note_required=False):
        y = asub.add_parser(name, help=help_)
        y.add_argument("id")
        y.add_argument("--actor", help="who does it (default: cli:<user>)")
        y.add_argument("--note", required=note_required)
        y.set_defaults(func=func)
        return y

    handling("ack", "acknowledge (确认)", cmd_ack)
    y = handling("dispatch", "dispatch to a unit with a due time (派单); --to-region hands it down", cmd_dispatch)
    y.add_argument("--to-unit", required=True)
    y.add_argument("--due", required=True, help="+2h, +30m or 2026-06-01T18:00:00+08:00")
    y.add_argument("--to-region", help="county adcode or grid id below the current owner")
    handling("resolve", "resolved, with a note of what was done (处置)", cmd_resolve, note_required=True)
    y = handling("close", "verify and close (办结), or --false-alarm", cmd_close)
    y.add_argument("--false-alarm", action="store_true")
    handling("reopen", "reopen within the reopen window", cmd_reopen)
    y = handling("take-over", "a city or province takes the alert over (提级)", cmd_take_over)
    y.add_argument("--region", required=True)
    x = asub.add_parser("escalate", help="run the escalation rules once (the notifier does this on its tick)")
    x.set_defaults(func=cmd_escalate)
    x = asub.add_parser("rollup", help="a region's live alert state and each child's")
    x.add_argument("region", nargs="?", default="440000")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_rollup)
    x = asub.add_parser("silence", help="silence notifications in a region subtree for a while (alerts are kept)")
    x.add_argument("--region", required=True)
    x.add_argument("--until", required=True, help="+2h or an RFC 3339 time")
    x.add_argument("--start", help="default: now")
    x.add_argument("--themes")
    x.add_argument("--metrics")
    x.add_argument("--reason", required=True)
    x.add_argument("--actor")
    x.set_defaults(func=cmd_silence_add)
    x = asub.add_parser("silences", help="list silences")
    x.add_argument("--all", action="store_true", help="also expired ones")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_silence_list)
    x = asub.add_parser("unsilence", help="end a silence now")
    x.add_argument("id", type=int)
    x.set_defaults(func=cmd_silence_remove)

    s = sub.add_parser("subscriptions", help="alert subscriptions: add, list, remove, test; receiver, inbox")
    ssub = s.add_subparsers(dest="subscriptions_command", metavar="ACTION", parser_class=type(s))
    ssub.required = True
    x = ssub.add_parser("add", help="subscribe to a region's alerts")
    x.add_argument("--name", required=True)
    x.add_argument("--owner", help="user name (inbox recipient); default cli:<user>")
    x.add_argument("--region", required=True, help="adcode; its whole subtree")
    x.add_argument("--channels", required=True, help="comma list of inbox, webhook, email")
    x.add_argument("--themes", help="comma list (default: all)")
    x.add_argument("--min-level", default="blue", choices=LEVELS)
    x.add_argument("--webhook-url")
    x.add_argument("--secret", help="webhook HMAC key (default: generated and printed once)")
    x.add_argument("--email")
    x.add_argument("--quiet", help="quiet hours, e.g. 22:00-07:00 (red still goes through)")
    x.add_argument("--tz", default="Asia/Shanghai")
    x.add_argument("--escalated-only", action="store_true", help="only alerts escalated to this region")
    x.add_argument("--actor")
    x.set_defaults(func=cmd_sub_add)
    x = ssub.add_parser("list")
    x.add_argument("--owner")
    x.add_argument("--all", action="store_true", help="also removed ones")
    x.add_argument("--json", action="store_true")
    x.set_defaults(func=cmd_sub_list)
    x = ssub.add_parser("remove")
    x.add_argument("id", type=int)
    x.set_defaults(func=cmd_sub_remove)
    x = ssub.add_parser("test", help="send a test notification through each channel now")
    x.add_argument("id", type=int)
    x.set_defaults(func=cmd_sub_test)
    x = ssub.add_parser("inbox", help="a user's in-app inbox")
    x.add_argument("--owner", required=True)
    x.add_argument("--unread", action="store_true")
    x.add_argument("--mark-read", action="store_true")
    x.add_argument("--limit", type=int, default=20)
    x.set_defaults(func=cmd_sub_inbox)
    x = ssub.add_parser("receiver", help="a webhook receiver printing verified deliveries (demo)")
    x.add_argument("--port", type=int, default=8099)
    x.add_argument("--host", default="127.0.0.1")
    x.add_argument("--secret")
    x.add_argument("--subscription", type=int, help="read the secret of this subscription")
    x.set_defaults(func=cmd_receiver)
    x = ssub.add_parser("demo", help="the demo's subscribers: a webhook receiver and an SMTP sink, printing "
                                     "what arrives (creates the city's demo subscriptions)")
    x.add_argument("--region", default="440100,440300", help="comma list of cities (default Guangzhou, Shenzhen)")
    x.add_argument("--port", type=int, default=8099)
    x.add_argument("--smtp-port", type=int, default=8025)
    x.add_argument("--email", default="duty@gz.tongguan.local")
    x.set_defaults(func=cmd_sub_demo)
    x = ssub.add_parser("smtp-sink", help="a local SMTP server printing the mails it gets (demo)")
    x.add_argument("--port", type=int, default=8025)
    x.add_argument("--host", default="127.0.0.1")
    x.set_defaults(func=cmd_smtp_sink)


# ------------------------------------------------------------------------------------- bench
def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("notify-latency",
                             help="alert on city.alerts → signed webhook received: p50/p95/p99 (target p95 < 1 s)")
    p.add_argument("--alerts", type=int, default=200)
    p.add_argument("--rate", type=float, default=20.0, help="alerts per second")
    p.set_defaults(func=cmd_bench_notify)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile.

    >>> percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)
    10
    """
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def cmd_bench_notify(args, ctx) -> int:
    """A throw-away database and topic; a webhook subscription to an in-process receiver; the
    notifier in a thread; alerts written and published like the detector does, at ``--rate``."""
    import threading
    import uuid

    import sqlalchemy as sa
    from kafka import KafkaProducer

    from analytics.alerting.channels.webhook import WebhookReceiver, send_webhook
    from analytics.alerting.config import load_alerting
    from analytics.alerting.notifier import Notifier
    from analytics.alerting.subscriptions import add_subscription
    from tongguan.db import engine_for, upgrade
    from tongguan.services import ensure_topics

    ctx.require()
    run = uuid.uuid4().hex[:8]
    dbname = f"tg_bench_notify_{run}"
    base = sa.make_url(ctx.database_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {dbname}"))
    url = base.set(database=dbname).render_as_string(hide_password=False)
    try:
        upgrade(url)
        engine = engine_for(url)
        settings = ctx.settings.model_copy(update={"database_url": url, "kafka_bootstrap": ctx.kafka_bootstrap,
                                                   "topic_prefix": f"bench-{run}."})
        topic = settings.topic("alerts")
        ensure_topics(settings.kafka_bootstrap, settings.partitions, (topic,))
        received: dict[str, float] = {}
        lock = threading.Lock()

        def on_delivery(payload, headers):
            t = time.perf_counter()
            with lock:
                for a in payload.get("alerts") or []:
                    received.setdefault(a["id"], t)

        secret = "bench-secret"
        rec = WebhookReceiver(secret, on_delivery=on_delivery).start()
        # Baseline: a bare signed POST to the same receiver.
        base_ms = []
        for i in range(50):
            t = time.perf_counter()
            send_webhook(rec.url, secret, {"alerts": []}, delivery_key=f"baseline-{i}")
            base_ms.append((time.perf_counter() - t) * 1000)
        add_subscription(engine, name="bench", owner="bench", adcode="440100", channels=["webhook"],
                         webhook_url=rec.url, secret=secret)
        # Every alert measured on its own: no group interval (the first alert of a group waits
        # only group_wait, which is kept as configured).
        cfg = load_alerting()
        from dataclasses import replace

        cfg = replace(cfg, group_interval=0.0)
        notifier = Notifier(settings, engine=engine, config=cfg, group_id=f"bench-{run}")
        th = threading.Thread(target=notifier.run, daemon=True)
        th.start()
        if not notifier.ready.wait(60):
            raise AlertingError("the bench notifier got no partitions within 60 s")
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks=1, linger_ms=0)
        sent: dict[str, float] = {}
        counties = ["440103", "440104", "440105", "440106", "440111", "440112", "440113", "440114"]
        gap = 1.0 / args.rate
        t_next = time.perf_counter()
        for i in range(args.alerts):
            aid = f"bench-{run}-{i}"
            now = datetime.now(UTC)
            with engine.begin() as conn:  # the detector writes the alert, then publishes it
                conn.execute(sa.text(
                    "INSERT INTO alerts (id, dedupe_key, source, level, theme, title, subject, adcode, city, "
                    "province, first_seen, last_seen) VALUES (:id, :id, 'rule:bench', 'yellow', 'flood', "
                    "'基准测试预警', 'sensor:bench', :c, '440100', '440000', :now, :now)"),
                    {"id": aid, "c": counties[i % len(counties)], "now": now})
            sent[aid] = time.perf_counter()
            producer.send(topic, key=aid.encode(), value=json.dumps({"schema": "alert/1", "id": aid}).encode())
            producer.flush()
            t_next += gap
            time.sleep(max(0.0, t_next - time.perf_counter()))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(received) < len(sent):
            time.sleep(0.05)
        notifier.stop()
        th.join(15)
        producer.close()
        rec.stop()
        lat = [(received[a] - sent[a]) * 1000 for a in sent if a in received]
        if not lat:
            raise AlertingError("no alert reached the webhook; is the notifier able to reach the broker?")
        result = {
            "alerts": len(sent), "delivered": len(lat), "rate_per_s": args.rate,
            "group_wait_s": cfg.group_wait,
            "latency_ms": {"p50": round(percentile(lat, 50), 1), "p95": round(percentile(lat, 95), 1),
                           "p99": round(percentile(lat, 99), 1), "max": round(max(lat), 1)},
            "baseline_bare_post_ms_p50": round(percentile(base_ms, 50), 2),
            "target_p95_ms": 1000, "p95_ok": percentile(lat, 95) < 1000,
        }
        print(json.dumps(result, indent=2))
        return 0 if len(lat) == len(sent) else 1
    finally:
        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)"))
        admin.dispose()
