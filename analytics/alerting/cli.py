"""``tongguan notify``, ``tongguan alerts …`` and ``tongguan subscriptions …``: alert handling
and delivery without the apps."""

from __future__ import annotations

import getpass
import json
import re
from datetime import UTC, datetime, timedelta

from analytics.alerting import demo
from analytics.alerting.channels import channel_names, setting_fields
from analytics.alerting.config import LOCAL, AlertingError
from analytics.levels import LEVEL_LABELS, LEVELS
from analytics.statuses import ACTIVE_STATUSES, STATUSES


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

    >>> parse_when("+90m", now=datetime(2026, 6, 1, tzinfo=UTC)).isoformat()
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


def _print_rows(rows: list[dict], line, empty: str, *, as_json: bool = False) -> int:
    """The rows of a list command: JSON (``--json``), or ``line(row)`` for each, or ``empty``."""
    if as_json:
        _print_json(rows)
        return 0
    for r in rows:
        print(line(r))
    if not rows:
        print(empty)
    return 0


# ----------------------------------------------------------------------------------- alerts
def cmd_alerts_list(args, ctx) -> int:
    import sqlalchemy as sa

    statuses = list(STATUSES) if args.status == "all" else _csv(args.status)
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

    def line(r):
        flag = " 督办!" if r["overdue_at"] else ""
        up = f" ↑{r['visible_at']}" if r["visible_at"] != r["adcode"] else ""
        return (f"{r['id']:<38} {LEVEL_LABELS[r['level']][0][:4]:<4} {r['status']:<12} {r['adcode']}{up:<8} "
                f"{r['theme']:<9} {_fmt_ts(r['first_seen'])} {r['title']}{flag}")

    return _print_rows(rows, line, "没有预警 / no alerts", as_json=args.json)


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
    return _print_rows(rows, lambda s: (
        f"{s['id']:>4} {s['adcode']} {_fmt_ts(s['starts_at'])} → {_fmt_ts(s['ends_at'])} "
        f"themes={','.join(s['themes']) or '*'} metrics={','.join(s['metrics']) or '*'} {s['reason']}"),
        "没有静默 / no silences", as_json=args.json)


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
    settings = {f.name: getattr(args, f.name) for f in setting_fields()}
    sub = add_subscription(ctx.engine, name=args.name, owner=args.owner or _actor(args), adcode=args.region,
                           channels=_csv(args.channels), themes=_csv(args.themes), min_level=args.min_level,
                           quiet_start=qs, quiet_end=qe, timezone=args.tz, escalated_only=args.escalated_only,
                           secret=args.secret, **settings)
    print(f"subscription {sub['id']}")
    if sub.get("secret"):
        print(f"webhook secret (HMAC-SHA256 key; keep it): {sub['secret']}")
    return 0


def cmd_sub_list(args, ctx) -> int:
    from analytics.alerting.subscriptions import list_subscriptions

    rows = list_subscriptions(ctx.engine, owner=args.owner, active_only=not args.all)
    for r in rows:
        r.pop("secret", None)

    def line(r):
        quiet = f" quiet {r['quiet_start']:%H:%M}-{r['quiet_end']:%H:%M}" if r["quiet_start"] else ""
        return (f"{r['id']:>4} {r['name']} ({r['owner']}) {r['adcode']} ≥{r['min_level']} "
                f"themes={','.join(r['themes']) or '*'} via {','.join(r['channels'])}{quiet}"
                f"{'' if r['active'] else ' [removed]'}")

    return _print_rows(rows, line, "没有订阅 / no subscriptions", as_json=args.json)


def cmd_sub_remove(args, ctx) -> int:
    from analytics.alerting.subscriptions import remove_subscription

    remove_subscription(ctx.engine, args.id)
    print(f"subscription {args.id} removed")
    return 0


def cmd_sub_test(args, ctx) -> int:
    from analytics.alerting.notifier import send_test

    results = send_test(ctx.engine, ctx.settings, args.id)
    for channel, ok, detail in results:
        print(f"{channel:<8} {'ok' if ok else 'FAILED'}  {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


def cmd_sub_inbox(args, ctx) -> int:
    from analytics.alerting.subscriptions import inbox, mark_read

    rows = inbox(ctx.engine, args.owner, unread_only=args.unread, limit=args.limit)
    _print_rows(rows, lambda r: (f"{'  ' if r['read_at'] else '● '}{r['id']:>5} {_fmt_ts(r['created_at'])} "
                                 f"{r['title']}"), "收件箱为空 / inbox empty")
    if args.mark_read:
        mark_read(ctx.engine, args.owner, [r["id"] for r in rows])
    return 0


def cmd_receiver(args, ctx) -> int:
    """Print verified deliveries (the demo's webhook subscriber)."""
    from analytics.alerting.channels.webhook import WebhookReceiver

    secret = args.secret
    if args.subscription:
        from analytics.alerting.subscriptions import get_subscription

        secret = get_subscription(ctx.engine, args.subscription)["secret"]
    if not secret:
        raise AlertingError("give the subscription's secret (--secret) or its id (--subscription)")
    r = WebhookReceiver(secret, host=args.host, port=args.port, on_delivery=demo.show_delivery).start()
    print(f"receiving signed deliveries on {r.url} (Ctrl-C to stop)", flush=True)
    try:
        demo.serve_forever(r)
    finally:
        r.stop()
    return 0


def cmd_smtp_sink(args, ctx) -> int:
    """A local SMTP server printing what it receives (the demo's e-mail subscriber's mailbox)."""
    ctl = demo.smtp_sink(args.host, args.port)
    print(f"SMTP sink on {args.host}:{args.port} (set TONGGUAN_SMTP_HOST/PORT to it; Ctrl-C to stop)", flush=True)
    try:
        demo.serve_forever()
    finally:
        ctl.stop()
    return 0


def cmd_sub_demo(args, ctx) -> int:
    """The demo's subscribers, live: for each city a signed webhook (``/hook/<city>``, its own
    secret), an e-mail and an inbox subscription; a receiver and an SMTP sink print what arrives."""
    from analytics.alerting.channels.webhook import WebhookReceiver

    regions = _csv(args.region)
    secrets: dict[str, str] = {}
    r = WebhookReceiver(lambda path: secrets.get(path.rstrip("/").rsplit("/", 1)[-1]), host="127.0.0.1",
                        port=args.port, on_delivery=demo.show_delivery)
    for region in regions:
        url = f"http://127.0.0.1:{r.port}/hook/{region}"
        subs = demo.ensure_demo_subscriptions(ctx.engine, region=region, webhook_url=url, email=args.email)
        secrets[region] = subs["webhook"]["secret"]
        print(f"demo subscribers for {region}: webhook {url} (subscription {subs['webhook']['id']}), e-mail "
              f"{args.email} (subscription {subs['email']['id']}), inbox of user demo", flush=True)
    r.start()
    ctl = demo.smtp_sink("127.0.0.1", args.smtp_port)
    print(f"SMTP sink on 127.0.0.1:{args.smtp_port}: the notifier needs TONGGUAN_SMTP_HOST=127.0.0.1 "
          f"TONGGUAN_SMTP_PORT={args.smtp_port}", flush=True)
    try:
        demo.serve_forever(r)
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
    settings = ctx.settings.model_copy(update={"database_url": ctx.role_url("worker"),
                                               "kafka_bootstrap": ctx.kafka_bootstrap})
    ensure_topics(settings.kafka_bootstrap, settings.partitions, tuple(settings.topic(t) for t in TOPICS))
    from analytics.alerting.config import ALERTING_FILE, load_alerting

    path = ALERTING_FILE.with_name("alerting-demo.yaml") if args.config == "demo" else args.config
    n = Notifier(settings, group_id=args.group_id, config=load_alerting(str(path) if path else None))
    if args.retry_parked:
        keys = n.retry_parked(keys=args.key or ())
        if args.key and len(keys) < len(set(args.key)):
            missing = sorted(set(args.key) - set(keys))
            raise AlertingError(f"not parked as failed (or no such delivery key): {', '.join(missing)}")
        sent = n.send_due()
        print(json.dumps({"retried": len(keys), "sent": sent, "keys": keys}, ensure_ascii=False))
        return 0 if sent >= len(keys) else 1
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):  # stop cleanly: finish the turn, close the consumer
        signal.signal(sig, lambda *_: n.stop())
    from tongguan.consumer import run_worker

    return run_worker("notify", lambda: n.run(max_seconds=args.max_seconds), lambda: n.stats)


# ------------------------------------------------------------------------------------ register
def register(sub) -> None:
    p = sub.add_parser("notify", help="deliver alerts from city.alerts to subscriptions (inbox, webhook, e-mail)")
    p.add_argument("--group-id", default="tongguan-notify")
    p.add_argument("--max-seconds", type=float, default=None, help="stop after this long (default: run until Ctrl-C)")
    p.add_argument("--config", help="another alerting.yaml ('demo': short escalation and grouping times)")
    p.add_argument("--retry-parked", action="store_true",
                   help="send the deliveries parked as failed again now, print the outcome and exit")
    p.add_argument("--key", action="append", help="with --retry-parked: only this delivery key (repeatable)")
    p.set_defaults(func=cmd_notify)

    a = sub.add_parser("alerts", help="list, show and handle alerts (ack, dispatch, resolve, close, …)")
    asub = a.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=type(a))
    asub.required = True
    x = asub.add_parser("list", help="alerts, newest first")
    x.add_argument("--region", help="adcode: alerts in it, escalated to it or owned by it")
    x.add_argument("--status", default=",".join(ACTIVE_STATUSES), help="comma list or 'all'")
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
    x.add_argument("--channels", required=True, help=f"comma list of {', '.join(channel_names())}")
    x.add_argument("--themes", help="comma list (default: all)")
    x.add_argument("--min-level", default="blue", choices=LEVELS)
    for f in setting_fields():  # each channel's settings (analytics/alerting/channels/)
        x.add_argument("--" + f.name.replace("_", "-"), dest=f.name, help=f"{f.label_en} ({f.placeholder})")
    x.add_argument("--secret", help="webhook HMAC key (default: generated and printed once)")
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
