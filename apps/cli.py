"""``tongguan serve``: the Dash server."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("serve", help="run the Dash server (province/city/county views, status)")
    p.add_argument("--host", help="bind address (default TONGGUAN_DASH_HOST)")
    p.add_argument("--port", type=int, help="port (default TONGGUAN_DASH_PORT, 8050)")
    p.add_argument("--debug", action="store_true", help="Dash dev tools and reloading")
    p.set_defaults(func=cmd_serve)


def serve(ctx, host: str | None = None, port: int | None = None, debug: bool = False) -> None:
    from apps.app import AppConfig, create_app

    services = ctx.require()
    app = create_app(AppConfig(database_url=services.database_url,
                               kafka_bootstrap=services.kafka_bootstrap))
    app.run(host=host or ctx.settings.dash_host, port=port or ctx.settings.dash_port, debug=debug)


def cmd_serve(args, ctx) -> int:
    serve(ctx, args.host, args.port, args.debug)
    return 0
