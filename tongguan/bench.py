"""``tongguan bench …``: benchmarks registered by the packages that own what they measure.

A package takes part by defining ``register_bench(bench_subparsers)`` in one of
``BENCH_MODULES``. Each benchmark prints figures and ratios against a baseline measured in the
same process (never a timed assertion in a test).
"""

from __future__ import annotations

import importlib

BENCH_MODULES = ("geo.cli", "ingest.cli", "analytics.cli", "analytics.alerts_cli", "apps.bench")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks: figures and ratios against an in-run baseline")
    bench_sub = p.add_subparsers(dest="bench_command", metavar="BENCHMARK", parser_class=type(p))
    bench_sub.required = True
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that package has no benchmarks (yet)
            raise
        if hasattr(module, "register_bench"):
            module.register_bench(bench_sub)
