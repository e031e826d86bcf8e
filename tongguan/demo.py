"""``tongguan demo``: bring up everything and run the product in the foreground.

Order: services and migrations → regions (loaded once, kept across runs) → the forecast models,
trained once on the demo's own history (the day its simulator would have streamed before it starts)
→ the workers as child processes (store, detect, …) → the simulator → the Dash server. Ctrl-C stops the children and the
services this command started; `tongguan up` beforehand keeps the services running afterwards.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

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
# The demo's simulator: one set of parameters for the stream and for the history its forecasts
# are trained on, so both have the same devices and the same reading interval.
DEMO_SIM = {"seed": 7, "rate": 300.0, "sensors": 2000, "cameras": 300, "speedup": 60.0}
WORKERS = (
    (["ingest"], {}),
    (["detect"], {}),
    (["subscriptions", "demo"], DEMO_SMTP),
    (["notify", "--config", "demo"], DEMO_SMTP),
    (["simulate", "--duration", "0", *(a for k, v in DEMO_SIM.items() for a in (f"--{k}", f"{v:g}"))], {}),
)
TRAIN_EPISODES = 24  # hours of the demo's own history the forecasts learn from (about 20 s)
FORECASTS_REGISTERED = "SELECT count(*) > 0 FROM models WHERE kind = 'forecast'"


def _already_done(engine, check_sql: str) -> bool:
    try:
        with engine.connect() as conn:
            return bool(conn.execute(sa.text(check_sql)).scalar())
    except sa.exc.ProgrammingError:
        return False


def ensure_forecasts(engine, home, *, now: datetime | None = None, counties=None) -> list[dict]:
    """Train and register the forecast models (flood, gas) unless one is registered already.

    They learn from the demo's own history: the ``TRAIN_EPISODES`` hours that its simulator (same
    seed, devices, counties and reading interval; incidents of their own) would have streamed
    before the stream starts, two hours before ``now``. Returns what was saved ([] when skipped).
    """
    if _already_done(engine, FORECASTS_REGISTERED):
        log.info("skip training the forecasts: a forecast model is registered")
        return []
    from analytics.train import episode_history, train_and_register
    from ingest.cli import tick_interval
    from ingest.simulator import counties_from_db

    log.info("training the forecasts on the demo's own history (%d simulated hours; once)", TRAIN_EPISODES)
    stream_start = (now or datetime.now(UTC)).replace(microsecond=0) - timedelta(hours=2)
    frames = episode_history(seed=DEMO_SIM["seed"], episodes=TRAIN_EPISODES, sensors=DEMO_SIM["sensors"],
                             cameras=DEMO_SIM["cameras"], end=stream_start,
                             interval_s=tick_interval(DEMO_SIM["sensors"], DEMO_SIM["rate"], DEMO_SIM["speedup"]),
                             counties=counties or counties_from_db(engine))
    saved = train_and_register(engine, home, frames, per_sensor=False, kinds=["forecast"])
    log.info("registered %s", ", ".join(f"{s['kind']}/{s['metric']}@v{s['version']}" for s in saved) or "nothing")
    return saved


def run_demo(ctx, port: int | None = None) -> int:
    services = ctx.require()
    port = port or ctx.settings.dash_port
    # Set-up steps run as the owner, the workers as the worker role (no password hashes).
    env = {**os.environ, "TONGGUAN_DATABASE_URL": services.database_url,
           "TONGGUAN_KAFKA_BOOTSTRAP": services.kafka_bootstrap}
    worker_env = {**env, "TONGGUAN_DATABASE_URL": services.role_url("worker")}
    tongguan = [sys.executable, "-m", "tongguan.cli"]

    for words, check_sql in SETUP_STEPS:
        if _already_done(ctx.engine, check_sql):
            log.info("skip `tongguan %s`: already done", " ".join(words))
            continue
        log.info("running `tongguan %s`", " ".join(words))
        subprocess.run([*tongguan, *words], env=env, check=True)
    # before `detect` starts: the live detector loads the registered models when it starts
    ensure_forecasts(ctx.engine, ctx.settings.home)

    children: list[subprocess.Popen] = []

    def _terminate(*_):
        raise KeyboardInterrupt  # run the clean-up below, as Ctrl-C does

    signal.signal(signal.SIGTERM, _terminate)
    try:
        for words, extra_env in WORKERS:
            log.info("starting `tongguan %s`", " ".join(words))
            children.append(subprocess.Popen([*tongguan, *words], env={**worker_env, **extra_env}))
        from apps.identity import create_demo_users, format_logins

        logins = format_logins(create_demo_users(ctx.engine))
        print(f"\n  tongguan demo — open http://{ctx.settings.dash_host}:{port}/  (Ctrl-C stops)\n"
              f"  log-ins (fresh passwords each run):\n{logins}\n", flush=True)
        from apps.cli import serve

        ctx.settings.check_serving_secret(dev=True)  # the demo is a development run: warn, serve
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
