"""``tongguan analytics detect|train|evaluate``, ``tongguan detect`` and ``tongguan bench latency``."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    an = sub.add_parser("analytics", help="early-warning models: score a series, train, evaluate")
    asub = an.add_subparsers(dest="analytics_command", metavar="ACTION", parser_class=type(an))
    asub.required = True

    p = asub.add_parser("detect", help="score one series: timestamp,value -> timestamp,value,anomaly_score,level")
    p.add_argument("--input", required=True, help="CSV with columns timestamp,value (sorted by time)")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument("--metric", help="catalogue metric name: its detector configuration and, if trained, "
                                    "its latest model from the registry files")
    p.add_argument("--tz", help="offset for timestamps that have none, e.g. +08:00")
    p.set_defaults(func=cmd_detect)


def cmd_detect(args, ctx) -> int:
    from analytics.registry import detector_for_offline
    from analytics.series import parse_tz, score_csv

    detector, version = detector_for_offline(args.metric, ctx.settings.home)
    n = score_csv(args.input, args.output, detector, tz=parse_tz(args.tz))
    print(json.dumps({"rows": n, "output": args.output, "metric": args.metric, "model": version},
                     ensure_ascii=False), file=sys.stderr)
    return 0
