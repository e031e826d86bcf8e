"""``tongguan bench report``: the page records each benchmark's output verbatim, says when one
failed or could not run, and ``--only`` keeps the other sections."""

from __future__ import annotations

import subprocess
import sys

from tongguan.bench_report import ENTRIES, Entry, _existing_sections, section


def _result(stdout="figures", rc=0, stderr=""):
    return {"command": "tongguan bench x", "stdout": stdout, "stderr": stderr, "rc": rc, "seconds": 1.0,
            "load_before": 1.0, "load_after": 2.0}


def test_sections_are_verbatim_and_failures_are_said():
    e = Entry("x", (), (), "a thing")
    ok = section(e, _result("  view  p95  12 ms  ratio 0.42"), None)
    assert "  view  p95  12 ms  ratio 0.42" in ok and "tongguan bench x" in ok and "Failed" not in ok
    bad = section(e, _result("", rc=1, stderr="Traceback\nboom: the database is down"), None)
    assert "**Failed** (exit status 1)" in bad and "boom: the database is down" in bad
    skipped = section(e, None, "its data is not here")
    assert "Not run: its data is not here." in skipped


def test_only_keeps_the_other_sections(tmp_path):
    page = tmp_path / "b.md"
    e1, e2 = Entry("geo", (), (), "one"), Entry("views", (), (), "two")
    page.write_text("# Benchmarks\n\n" + section(e1, _result("geo figures"), None) + "\n"
                    + section(e2, _result("views figures"), None), encoding="utf-8")
    kept = _existing_sections(page)
    assert set(kept) == {"geo", "views"}
    assert "geo figures" in kept["geo"] and "views figures" not in kept["geo"]


def test_every_registered_benchmark_is_on_the_page():
    from tongguan.cli import build_parser

    parser = build_parser()
    bench = next(a.choices["bench"] for a in parser._subparsers._group_actions if "bench" in a.choices)
    registered = {n for a in bench._subparsers._group_actions for n in a.choices} - {"report"}
    assert registered <= {e.name for e in ENTRIES}, registered - {e.name for e in ENTRIES}


def test_unknown_benchmark_is_one_line_exit_1(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tongguan.cli", "bench", "report", "--only", "nope",
                           "--write", str(tmp_path / "b.md")], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1 and "unknown benchmark(s) nope" in proc.stderr and "Traceback" not in proc.stderr
