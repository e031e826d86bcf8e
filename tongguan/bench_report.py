"""``tongguan bench report``: run every benchmark (short settings by default) and write what
each printed, with its command and the machine, to ``docs/benchmarks.md``.

Each benchmark prints its own figures and the ratios to its in-run baseline; this command does
not compute or round anything of its own, it records the output verbatim, so the page is only
ever what the benchmarks said. A benchmark that fails is recorded as failed (with the last
lines of its error output), never left out silently.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    short: tuple[str, ...]  # arguments of the short run (the default)
    full: tuple[str, ...]  # arguments of the figures (--full)
    what: str
    needs: str | None = None  # a path that must exist (a data set that is not shipped)


SKAB = os.environ.get("TONGGUAN_SKAB_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data" / "skab" / "data"))

ENTRIES = (
    Entry("geo", ("--points", "200000"), ("--points", "1000000"),
          "spatial assignment of points to county / city / province / grid"),
    Entry("ingest", ("--events", "50000"), ("--events", "200000"),
          "store worker (Kafka → PostGIS, exactly once, rollups) vs a bare COPY of the same rows"),
    Entry("latency", ("--duration", "15"), (), "reading → alert latency under background load"),
    Entry("notify-latency", (), (), "alert on city.alerts → signed webhook received"),
    Entry("views", ("--readings", "500000", "--repeat", "10"), ("--readings", "5000000"),
          "server time of the province / city / county views, one request at a time"),
    Entry("load", ("--users", "10,50", "--duration", "30", "--stress"), ("--stress",),
          "logged-in operators against the production server and the development server"),
    Entry("detect", ("--skab", SKAB, "--sim-days", "1"), ("--skab", SKAB),
          "the live detector on SKAB beside baselines", needs=SKAB),
    Entry("chaos", ("--kills", "5", "--outage", "10"), (), "the store worker under kills, a database outage and a broker kill"),
    Entry("chaos-alerts", ("--kills", "2", "--sensors", "100", "--hours", "2"), (),
          "detector kills, notifier kill and receiver outage: extra / missing alerts, undelivered deliveries"),
    Entry("memory", ("--duration", "120", "--warmup", "40"), ("--duration", "3600", "--warmup", "300"),
          "RSS of the store, detect and notify workers and of the broker over a stream at ~2,000 readings/s"),
)


def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("report", help="run every benchmark and write their figures to a Markdown page")
    p.add_argument("--write", default="docs/benchmarks.md", help="the page to write (default docs/benchmarks.md)")
    p.add_argument("--only", nargs="*", help="just these benchmarks (the others keep their section from the page)")
    p.add_argument("--full", action="store_true", help="the issue's sizes instead of the short runs")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark (default 1800)")
    p.set_defaults(func=cmd_bench_report)


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{os.cpu_count()} CPUs ({cpu}){mem}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _available(bench_sub_names: set[str], entry: Entry) -> str | None:
    """Why the benchmark cannot run here (None: it can)."""
    if entry.name not in bench_sub_names:
        return "not in this version of tongguan"
    if entry.needs and not Path(entry.needs).exists():
        return f"its data is not here ({entry.needs}; set TONGGUAN_SKAB_DIR)"
    return None


def run_entry(entry: Entry, *, full: bool, timeout: float) -> dict:
    args = ["bench", entry.name, *(entry.full if full else entry.short)]
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", "tongguan.cli", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err, rc = f"timed out after {timeout:.0f} s", -1
    return {"command": "tongguan " + " ".join(_shown(a) for a in args), "stdout": out.rstrip(), "stderr": err,
            "rc": rc, "seconds": time.monotonic() - t0, "load_before": load, "load_after": os.getloadavg()[0]}


def _shown(arg: str) -> str:
    return arg.replace(str(Path.home()), "~") if arg.startswith("/") else arg


def section(entry: Entry, result: dict | None, why_not: str | None) -> str:
    lines = [f"## `bench {entry.name}` — {entry.what}", ""]
    if why_not:
        lines += [f"Not run: {why_not}.", ""]
        return "\n".join(lines)
    lines += [(f"Command: `{result['command']}` — {result['seconds']:.0f} s, load average (1 min) "
              f"{result['load_before']:.1f} before / {result['load_after']:.1f} after."), ""]
    if result["rc"] != 0:
        tail = "\n".join(result["stderr"].strip().splitlines()[-8:])
        lines += [f"**Failed** (exit status {result['rc']}):", "", "```", tail, "```", ""]
    if result["stdout"]:
        lines += ["```", result["stdout"], "```", ""]
    return "\n".join(lines)


HEADER = """# Benchmarks

Every `tongguan bench …`, as last run by `tongguan bench report --write docs/benchmarks.md`
({mode}). Each section is the benchmark's own output, verbatim: its figures and the ratios to
the baseline it measures in the same run (a bare COPY for ingest, the development server for
load, and so on). Nothing here is edited by hand; rerun the command to refresh it
(`--only NAME …` reruns some and keeps the other sections).

- written: {when}
- machine: {machine}
- load average (1 min) at the start: {load:.1f} — this machine is shared; figures taken on a
  busy machine are slower than on a quiet one, the in-run ratios much less so.

"""


def _existing_sections(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out, name, buf = {}, None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("## `bench "):
            if name:
                out[name] = "\n".join(buf).rstrip() + "\n"
            name, buf = line.split("`")[1].split()[1], [line]
        elif name:
            buf.append(line)
    if name:
        out[name] = "\n".join(buf).rstrip() + "\n"
    return out


def cmd_bench_report(args, ctx) -> int:
    from tongguan import TongguanError
    from tongguan.cli import build_parser

    parser = build_parser()
    bench_names = set()
    for action in parser._subparsers._group_actions:  # the bench subcommands actually registered
        bench = action.choices.get("bench")
        if bench is not None:
            bench_names = {n for a in bench._subparsers._group_actions for n in a.choices} - {"report"}
    known = {e.name for e in ENTRIES}
    if args.only and set(args.only) - known:
        raise TongguanError(f"--only: unknown benchmark(s) {', '.join(sorted(set(args.only) - known))} "
                            f"(known: {', '.join(sorted(known))})")
    path = Path(args.write)
    kept = _existing_sections(path) if args.only else {}
    load = os.getloadavg()[0]
    parts = []
    for entry in ENTRIES:
        if args.only and entry.name not in args.only:
            if entry.name in kept:
                parts.append(kept[entry.name])
            continue
        why_not = _available(bench_names, entry)
        result = None
        if why_not is None:
            print(f"running `tongguan bench {entry.name}` …", file=sys.stderr, flush=True)
            result = run_entry(entry, full=args.full, timeout=args.timeout)
        parts.append(section(entry, result, why_not))
    path.parent.mkdir(parents=True, exist_ok=True)
    text = HEADER.format(mode="the issue's sizes, --full" if args.full else "short runs, the default",
                         when=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), machine=machine(), load=load)
    path.write_text(text + "\n".join(p.rstrip() + "\n" for p in parts), encoding="utf-8")
    print(path)
    return 0
