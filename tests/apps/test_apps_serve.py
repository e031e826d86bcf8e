"""``tongguan serve``: worker defaults and argument errors (the server itself runs in
test_apps_bench_load.py, under gunicorn and under the development server)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from apps.cli import default_workers


def test_default_workers_follow_the_cpu_count():
    assert default_workers(1) == 2
    assert default_workers(2) == 2
    assert default_workers(8) == 8


@pytest.mark.parametrize("args", [["--workers", "0"], ["--threads", "x"], ["--workers", "-3"]])
def test_bad_worker_arguments_get_one_line_and_exit_2(args):
    proc = subprocess.run([sys.executable, "-m", "tongguan.cli", "serve", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert args[0] in proc.stderr
