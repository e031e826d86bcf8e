"""Where a worker's memory goes: tracemalloc snapshots, diffed against one taken after warm-up.

Off unless ``TONGGUAN_TRACEMALLOC_S`` is set (seconds between reports; tracemalloc slows Python
down several times, so never in production). The first report, after one interval, only takes the
baseline; every later one logs the allocation sites (with their call stacks) that grew most since
the baseline, so what still grows after warm-up stands at the top. ``TONGGUAN_TRACEMALLOC_FRAMES``
sets the stack depth (default 3). Taking the snapshot itself still pauses the worker (seconds on
a busy machine), and the whole process runs several times slower while tracing: for diagnosis
only.

>>> from tongguan.settings import Settings
>>> MemTrace.from_settings("detect", Settings(tracemalloc_s=0)) is None
True
"""

from __future__ import annotations

import logging
import threading
import time
import tracemalloc

log = logging.getLogger("tongguan.memtrace")

# tracemalloc's own bookkeeping and the import system are not the worker's memory
_IGNORED = (tracemalloc.__file__, "<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>",
            "<unknown>")


class MemTrace:
    """``maybe_report()`` from a worker's loop; it does something once per ``every_s``."""

    def __init__(self, name: str, every_s: float, *, frames: int = 3, top: int = 12, clock=time.monotonic):
        self.name, self.every_s, self.frames, self.top = name, float(every_s), frames, top
        self._clock = clock
        self._baseline: tracemalloc.Snapshot | None = None
        self._next = clock() + self.every_s
        self._thread: threading.Thread | None = None
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)

    @classmethod
    def from_settings(cls, name: str, settings) -> MemTrace | None:
        """None unless ``settings.tracemalloc_s`` (``TONGGUAN_TRACEMALLOC_S``) is set."""
        if not settings.tracemalloc_s:
            return None
        return cls(name, settings.tracemalloc_s, frames=settings.tracemalloc_frames)

    def maybe_report(self) -> threading.Thread | None:
        """Take a snapshot when one is due and report on it from a thread of its own (returned,
        else None): diffing a snapshot takes seconds of Python, and the worker's poll loop must not
        stop that long or its consumer is put out of its group (max_poll_interval_ms)."""
        if self._clock() < self._next or (self._thread is not None and self._thread.is_alive()):
            return None
        self._next = self._clock() + self.every_s
        t0 = time.monotonic()
        snap = tracemalloc.take_snapshot()
        self._thread = threading.Thread(target=self.report, args=(snap, time.monotonic() - t0),
                                        name="memtrace", daemon=True)
        self._thread.start()
        return self._thread

    def report(self, snap: tracemalloc.Snapshot, took_s: float = 0.0) -> list[str]:
        """The first snapshot becomes the baseline; the later ones are diffed against it. The
        report's lines, also logged."""
        t0 = time.monotonic()
        snap = snap.filter_traces([tracemalloc.Filter(False, f) for f in _IGNORED])
        if self._baseline is None:
            self._baseline = snap
            total = sum(s.size for s in snap.statistics("filename"))
            lines = [f"memtrace {self.name}: baseline taken, {total / 2**20:.1f} MiB traced "
                     f"(snapshot {took_s:.1f} s, report {time.monotonic() - t0:.1f} s)"]
        else:
            diffs = snap.compare_to(self._baseline, "traceback")
            total = sum(d.size_diff for d in diffs)
            lines = [f"memtrace {self.name}: {total / 2**20:+.2f} MiB traced since the baseline "
                     f"(snapshot {took_s:.1f} s, report {time.monotonic() - t0:.1f} s); growth by site:"]
            for d in diffs[:self.top]:
                if d.size_diff <= 0:
                    break
                lines.append(f"  {d.size_diff / 1024:+10.1f} KiB {d.count_diff:+8d} blocks "
                             f"(now {d.size / 1024:.1f} KiB)")
                lines.extend(f"      {frame.filename}:{frame.lineno}" for frame in reversed(d.traceback))
        for line in lines:
            log.warning("%s", line)
        return lines
