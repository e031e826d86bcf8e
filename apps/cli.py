"""``tongguan serve``: the Dash server, under gunicorn (production) or Werkzeug (``--dev``).

Why gunicorn with gthread workers (and not waitress): the views are CPU-bound Python (pandas,
Plotly's JSON encoder) plus database waits. One Python process serves about one core whatever
its threads, because of the GIL, so using both cores needs several processes; gunicorn's
pre-fork master gives that (and restarts a worker that dies), while waitress is one process
with a thread pool. gthread workers add threads per process so the database waits of one
request overlap with another's Python. gunicorn runs on Linux/Unix only, which is where the
product is deployed (docker/ and the Debian development machines).

State and the processes (each worker is a separate process with its own memory):
- sessions: the signed cookie, or PostgreSQL when the server keeps them (apps.identity, apps.web): shared.
- users, scope, audit, alerts: PostgreSQL: shared.
- rate-limit counters (flask-limiter, ``memory://``): per process by design for now; the
  log-in limit is the access layer's (apps.web) to move into PostgreSQL.
- caches (region tree, display boundaries in ``apps.queries.regions``; the views' query
  results and the region pages' layouts of the last seconds in ``apps.view_cache``): per
  process by design; they hold data that is the same for every process (boundaries) or only a
  few seconds old, so a process that misses one reads the database.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("tongguan.serve")


def default_workers(cpus: int | None = None) -> int:
    """One worker per core, at least 2. Not one more: the threads of a worker already overlap its
    database waits, and each process keeps caches of its own (view results, rendered pages), which
    a third process on two cores splits three ways. Measured with ``tongguan bench load --users 50
    --stress`` on two cores, two runs each, minutes apart: 2 workers 71.7 and 88.8 callbacks/s at
    7.8 and 6.0 ms of server CPU a callback, 3 workers 52.5 and 87.6 at 9.1 and 8.3."""
    return max(2, cpus or os.cpu_count() or 1)


# Threads per worker. A callback spends most of its time waiting (PostgreSQL round trips, above
# all on a busy machine), and the in-flight requests bound the throughput (Little's law): with 4
# threads × 3 workers the server carried fewer operators than the one-process development
# server with a thread per request (bench load, same run). 12 stays under a worker's database
# pool (5 + 10 overflow connections, tongguan.db), so no thread waits for a connection.
DEFAULT_THREADS = 12


def _positive(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the Dash server (gunicorn; --dev: the development server)")
    p.add_argument("--host", help="bind address (default TONGGUAN_DASH_HOST)")
    p.add_argument("--port", type=int, help="port (default TONGGUAN_DASH_PORT, 8050)")
    p.add_argument("--workers", type=_positive,
                   help=f"gunicorn worker processes (default one per CPU, at least 2; here {default_workers()})")
    p.add_argument("--threads", type=_positive, default=DEFAULT_THREADS,
                   help=f"threads per worker (default {DEFAULT_THREADS})")
    p.add_argument("--dev", action="store_true",
                   help="Werkzeug's development server in this process (one process, threaded); also allows the development secret key, with a warning")
    p.add_argument("--debug", action="store_true", help="Dash dev tools and reloading (implies --dev)")
    p.set_defaults(func=cmd_serve)


def serve(ctx, host: str | None = None, port: int | None = None, *, dev: bool = False, debug: bool = False,
          workers: int | None = None, threads: int = DEFAULT_THREADS) -> None:
    from apps.app import AppConfig

    services = ctx.require()
    config = AppConfig(database_url=services.role_url("app"), kafka_bootstrap=services.kafka_bootstrap)
    host = host or ctx.settings.dash_host
    port = port or ctx.settings.dash_port
    from apps import view_cache

    # Before the fork, so every worker starts with it on (each with its own, empty, cache).
    view_cache.enable(ctx.settings.view_cache_s, ctx.settings.layout_cache_s)
    if dev or debug:
        from apps.app import create_app

        create_app(config).run(host=host, port=port, debug=debug)
        return
    from tongguan.db import engine_for

    # The workers are forked from this process: a pooled connection made here (the demo creates
    # its users before serving) must not be inherited, or two processes would talk on one socket.
    engine_for(services.database_url).dispose()
    engine_for(config.database_url).dispose()
    production_server(config, bind=f"{host}:{port}", workers=workers or default_workers(), threads=threads).run()


def _production_server_class():
    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        """gunicorn with its options from here, not from the command line or a config file."""

        def __init__(self, config, **options):
            self.config_app = config
            self.options = options
            super().__init__()

        def load_config(self):
            for key, value in self.options.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 24's control socket is one path per user ($HOME/.gunicorn): two
                # servers on a machine (a test beside a demo) would take it from each other.
                self.cfg.set("control_socket_disable", True)

        def load(self):
            # Runs in each worker after the fork (no preload): every worker builds its own app,
            # engines and pools.
            from apps.app import create_app

            return create_app(self.config_app).server

    return _Server


def production_server(config, *, bind: str, workers: int, threads: int):
    """The gunicorn application serving ``config`` (gunicorn imported only when used)."""
    log.info("serving on http://%s/ with gunicorn: %d workers x %d threads (gthread)", bind, workers, threads)
    return _production_server_class()(
        config, bind=bind, workers=workers, threads=threads, worker_class="gthread",
        # A page view is a few callbacks of under a second; 60 s only catches a stuck worker.
        timeout=60, graceful_timeout=10,
        # Browsers keep the connection open between the live ticks (every 2 s) and page views.
        keepalive=30,
        # Worker temp files in memory, not on a possibly slow disk (gunicorn's advice for Docker).
        worker_tmp_dir="/dev/shm" if os.path.isdir("/dev/shm") else None,
        accesslog=None, errorlog="-", loglevel="info",
        proc_name="tongguan-serve")


def cmd_serve(args, ctx) -> int:
    ctx.settings.check_serving_secret(dev=args.dev or args.debug)
    serve(ctx, args.host, args.port, dev=args.dev, debug=args.debug, workers=args.workers,
          threads=args.threads)
    return 0
