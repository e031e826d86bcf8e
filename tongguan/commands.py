"""Foundation subcommands: services (up/down/status/env), migrations (db), and the demo."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser("up", help="start the managed PostgreSQL+PostGIS and broker (idempotent), migrate")
    p.set_defaults(func=cmd_up, keep_services=True)

    p = sub.add_parser("down", help="stop the managed services (data persists)")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("status", help="each service's state and address, as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("env", help="print export lines for the running services")
    p.set_defaults(func=cmd_env)

    db = sub.add_parser("db", help="database migrations")
    dbsub = db.add_subparsers(dest="db_command", metavar="ACTION", parser_class=type(db))
    dbsub.required = True
    p = dbsub.add_parser("upgrade", help="apply migrations (default: to head)")
    p.add_argument("revision", nargs="?", default="head")
    p.set_defaults(func=cmd_db_upgrade)
    p = dbsub.add_parser("current", help="print the applied migration revision")
    p.set_defaults(func=cmd_db_current)

    register_demo(sub)


def cmd_up(args, ctx) -> int:
    started = ctx.services.up()
    print(f"started: {', '.join(started)}" if started else "already running", file=sys.stderr)
    print(json.dumps(ctx.services.status(), ensure_ascii=False, indent=2))
    return 0


def cmd_down(args, ctx) -> int:
    ctx.services.down()
    print(json.dumps(ctx.services.status(), ensure_ascii=False, indent=2))
    return 0


def cmd_status(args, ctx) -> int:
    status = ctx.services.status()
    healthy = all(s["state"] in ("running", "external") for s in status.values())
    if status["postgres"]["state"] in ("running", "external"):
        status["workers"] = _workers(ctx.services.database_url)
    print(json.dumps(status, ensure_ascii=False, indent=2))
    if not healthy:
        return 3
    # Services up but a worker makes no progress (lag without commits, or silent): also unhealthy.
    red = isinstance(status.get("workers"), list) and any(w["health"] == "red" for w in status["workers"])
    return 4 if red else 0


def _workers(url: str):
    """Per worker: lag, age of its last commit, last error, green/red (tongguan.consumer)."""
    import sqlalchemy as sa

    from tongguan.consumer import read_worker_health
    from tongguan.db import normalise_url

    engine = sa.create_engine(normalise_url(url), poolclass=sa.pool.NullPool,
                              connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            return read_worker_health(conn)
    except sa.exc.SQLAlchemyError as exc:  # not migrated yet, or gone meanwhile: say so
        return {"error": str(exc).strip().splitlines()[0]}
    finally:
        engine.dispose()


def cmd_env(args, ctx) -> int:
    status = ctx.services.status()
    down = [n for n, s in status.items() if s["state"] not in ("running", "external")]
    if down:
        from tongguan import TongguanError

        raise TongguanError(f"not running: {', '.join(down)}; start them with `tongguan up`")
    print("\n".join(ctx.services.env_lines()))
    return 0


def cmd_db_upgrade(args, ctx) -> int:
    from tongguan.db import current_revision, upgrade

    url = ctx.database_url  # starts the managed database if needed (which migrates to head)
    upgrade(url, args.revision)
    print(current_revision(url))
    return 0


def cmd_db_current(args, ctx) -> int:
    from tongguan.db import current_revision

    print(current_revision(ctx.database_url) or "(none)")
    return 0


def register_demo(sub) -> None:
    p = sub.add_parser("demo", help="everything: services, migrations, the Dash server on :8050")
    p.add_argument("--port", type=int, help="Dash port (default TONGGUAN_DASH_PORT, 8050)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args, ctx) -> int:
    from tongguan.demo import run_demo

    return run_demo(ctx, port=args.port)
