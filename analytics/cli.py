"""``tongguan analytics detect|train|evaluate``, ``tongguan detect`` and ``tongguan bench latency``."""

from __future__ import annotations

import json
import logging
import signal
import sys

log = logging.getLogger("tongguan.analytics")


def _positive(kind):
    def parse(text):
        v = kind(text)
        if v <= 0:
            raise ValueError(text)
        return v
    parse.__name__ = kind.__name__
    return parse


def register(sub) -> None:
    an = sub.add_parser("analytics", help="early-warning models: score a series, train, evaluate")
    asub = an.add_subparsers(dest="analytics_command", metavar="ACTION", parser_class=type(an))
    asub.required = True

    p = asub.add_parser("detect", help="score one series: timestamp,value -> timestamp,value,anomaly_score,level")
    p.add_argument("--input", required=True, help="CSV with columns timestamp,value (timestamps that go "
                                                   "back, repeat or jump are scored and counted)")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument("--columns", type=_column_list,
                   help="several value columns of one site, scored jointly (e.g. --columns a,b,c); "
                        "writes timestamp,a,b,c,anomaly_score,level")
    p.add_argument("--metric", help="catalogue metric name: its detector configuration and, if trained, "
                                    "its latest model from the registry files")
    p.add_argument("--tz", help="offset for timestamps that have none, e.g. +08:00")
    p.set_defaults(func=cmd_detect)

    p = asub.add_parser("train", help="train anomaly detectors and forecasts on stored readings; register them")
    p.add_argument("--days", type=_positive(float), default=7.0, help="history to train on (default 7 days)")
    p.add_argument("--metric", action="append", help="only this metric (repeatable)")
    p.add_argument("--no-per-sensor", action="store_true", help="metric-wide models only")
    p.add_argument("--kind", action="append", choices=("anomaly", "forecast", "surge"),
                   help="only models of this kind (repeatable; default all)")
    p.add_argument("--seed", type=int, default=0, help="random_state of the estimators")
    p.set_defaults(func=cmd_train)

    p = asub.add_parser("evaluate", help="run the simulator's incidents through the detectors; print JSON scores")
    p.add_argument("--seed", type=int, action="append", required=True, help="simulator seed (repeatable)")
    p.add_argument("--days", type=_positive(float), default=1.0, help="simulated days per seed (default 1)")
    p.add_argument("--sensors", type=_positive(int), default=400)
    p.add_argument("--cameras", type=_positive(int), default=80)
    p.add_argument("--train-days", type=float, default=1.0,
                   help="days of history (simulated with seed+1000) to train on first; 0 = untrained")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("detect", help="the live detector: readings and video -> alerts (group tongguan-detect)")
    p.add_argument("--until-idle", action="store_true", help="exit once caught up (tests, benchmarks)")
    p.add_argument("--warm-hours", type=float, default=12.0, help="history replayed per sensor after a restart")
    p.add_argument("--group-id", help="consumer group (default tongguan-detect, after the topic prefix)")
    p.add_argument("--batch-size", type=_positive(int), default=5000,
                   help="records per poll, scored and stored in one transaction (default 5000)")
    p.set_defaults(func=cmd_live)


def _column_list(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",")]
    if not cols or any(not c for c in cols) or len(set(cols)) != len(cols):
        raise ValueError(text)
    return cols


_column_list.__name__ = "column list"


def cmd_detect(args, ctx) -> int:
    from analytics.registry import detector_for_offline
    from analytics.series import parse_tz, score_csv

    if args.columns and args.metric:
        from analytics.errors import AnalyticsError

        raise AnalyticsError("--metric applies to one series; a site (--columns) is scored without one")
    detector, version = (None, None) if args.columns else detector_for_offline(args.metric, ctx.settings.home)
    summary: dict = {}
    n = score_csv(args.input, args.output, detector, tz=parse_tz(args.tz), columns=args.columns, summary=summary)
    print(json.dumps({"rows": n, "output": args.output, "metric": args.metric, "model": version,
                      "columns": args.columns, **summary}, ensure_ascii=False), file=sys.stderr)
    return 0


def cmd_train(args, ctx) -> int:
    from analytics.train import train_from_db

    saved = train_from_db(ctx.engine, ctx.settings.home, days=args.days, metrics=args.metric,
                          per_sensor=not args.no_per_sensor, random_state=args.seed, kinds=args.kind)
    print(json.dumps({"saved": saved}, ensure_ascii=False, indent=1))
    return 0


def cmd_evaluate(args, ctx) -> int:
    from analytics.evaluate import evaluate, summarise

    reports = [evaluate(seed=s, days=args.days, sensors=args.sensors, cameras=args.cameras,
                        train_days=args.train_days) for s in args.seed]
    out = reports[0] if len(reports) == 1 else {"seeds": reports, "summary": summarise(reports)}
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


def cmd_live(args, ctx) -> int:
    from analytics.live import DetectConfig, DetectWorker

    services = ctx.require()
    settings = ctx.settings.model_copy(update={"database_url": services.role_url("worker"),
                                               "kafka_bootstrap": services.kafka_bootstrap})
    worker = DetectWorker(settings, DetectConfig(until_idle=args.until_idle, warm_hours=args.warm_hours,
                                                group_id=args.group_id, batch_size=args.batch_size))
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    from tongguan.consumer import run_worker

    return run_worker("detect", worker.run, lambda: worker.stats)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("latency", help="reading produced -> its alert on city.alerts: p50/p95/p99 under load")
    p.add_argument("--rate", type=_positive(float), default=5000.0, help="background readings/s (default 5000)")
    p.add_argument("--duration", type=_positive(float), default=30.0, help="seconds of load (default 30)")
    p.add_argument("--probes", type=_positive(int), default=200, help="alert-triggering probe readings")
    p.add_argument("--workers", type=_positive(int), default=1,
                   help="detector processes in the consumer group (default 1)")
    p.set_defaults(func=cmd_bench_latency)


def cmd_bench_latency(args, ctx) -> int:
    from analytics.bench import run_latency_bench

    services = ctx.require()
    result = run_latency_bench(ctx.settings, services, rate=args.rate, duration=args.duration, probes=args.probes,
                               workers=args.workers)
    print(json.dumps(result, indent=1))
    return 0
