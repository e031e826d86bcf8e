"""``tongguan demo``: bring up everything and run the product in the foreground."""

from __future__ import annotations

import logging

log = logging.getLogger("tongguan.demo")


def run_demo(ctx, port: int | None = None) -> int:
    services = ctx.require()
    port = port or ctx.settings.dash_port
    log.info("services: postgres %s, broker %s", services.database_url.split("@")[-1],
             services.kafka_bootstrap)
    print(f"\n  tongguan demo — open http://{ctx.settings.dash_host}:{port}/  (Ctrl-C stops)\n", flush=True)
    from apps.cli import serve

    serve(ctx, port=port)
    return 0
