"""``tongguan bench …``: benchmarks registered by the packages that own what they measure.

Each module in ``BENCH_MODULES`` defines ``register_bench(bench_subparsers)``. Each benchmark
prints figures and ratios against a baseline measured in the same process (never a timed
assertion in a test).
"""

from __future__ import annotations

import importlib

BENCH_MODULES = ("geo.cli", "ingest.cli", "analytics.cli", "analytics.alerting.bench", "analytics.detect_bench",
                 "analytics.chaos_bench", "apps.bench", "apps.bench_load", "tongguan.bench_report")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: figures and ratios against an in-run baseline")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", parser_class=type(p))
    bench_sub.required = True
    for name in BENCH_MODULES:
        importlib.import_module(name).register_bench(bench_sub)
