"""``tongguan demo``: bring up everything and run the product in the foreground.

Order: services and migrations → regions (loaded once, kept across runs) → the workers as child
processes (store, detect, …) → the simulator → the Dash server. Ctrl-C stops the children and the
services this command started; `tongguan up` beforehand keeps the services running afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import sqlalchemy as sa

log = logging.getLogger("tongguan.demo")

# One-off setup steps: (command words, SQL that returns true when the step is already done).
SETUP_STEPS = (
    (["geo", "load"], "SELECT count(*) > 0 FROM regions WHERE level = 'county'"),
    (["geo", "grid", "--size", "1km", "--county", "440106", "440104", "440105", "440103", "440111"],
     "SELECT count(*) > 0 FROM grid_cells"),
)
# Long-running children, in start order: (command words, extra environment).
# `subscriptions demo` runs a webhook receiver (:8099) and an SMTP sink (:8025) that print what
# they receive, and subscribes them (plus an in-app inbox) to Guangzhou and Shenzhen.
DEMO_SMTP = {"TONGGUAN_SMTP_HOST": "127.0.0.1", "TONGGUAN_SMTP_PORT": "8025"}
WORKERS = (
    (["ingest"], {}),
    (["detect"], {}),
    (["subscriptions", "demo"], DEMO_SMTP),
    (["notify", "--config", "demo"], DEMO_SMTP),
    (["simulate", "--rate", "300", "--duration", "0", "--seed", "7"], {}),
)


def _already_done(engine, check_sql: str) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(check_sql)).scalar())
    except sa.exc.ProgrammingError:
        return False


def run_demo(ctx, port: int | None = None) -> int:
    services = ctx.require()
    port = port or ctx.settings.dash_port
    env = {**os.environ, "TONGGUAN_DATABASE_URL": services.database_url,
           "TONGGUAN_KAFKA_BOOTSTRAP": services.kafka_bootstrap}
    tongguan = [sys.executable, "-m", "tongguan.cli"]

    for words, check_sql in SETUP_STEPS:
        if _already_done(ctx.engine, check_sql):
            log.info("skip `tongguan %s`: already done", " ".join(words))
            continue
        log.info("running `tongguan %s`", " ".join(words))
        subprocess.run([*tongguan, *words], env=env, check=True)

    children: list[subprocess.Popen] = []

    def _terminate(*_):
        raise KeyboardInterrupt  # run the clean-up below, as Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    try:
        for words, extra_env in WORKERS:
            log.info("starting `tongguan %s`", " ".join(words))
            children.append(subprocess.Popen([*tongguan, *words], env={**env, **extra_env}))
        from apps.identity import create_demo_users, format_logins

        logins = format_logins(create_demo_users(ctx.engine))
        print(f"\n  tongguan demo — open http://{ctx.settings.dash_host}:{port}/  (Ctrl-C stops)\n"
              f"  log-ins (fresh passwords each run):\n{logins}\n", flush=True)
        from apps.cli import serve

        serve(ctx, port=port)
    finally:
        # SIGTERM, not SIGINT: a shell without job control starts background jobs with SIGINT
        # ignored, and the workers finish their batch and leave their consumer group on SIGTERM.
        for child in children:
            child.terminate()
        deadline = time.monotonic() + 15
        for child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
    return 0
