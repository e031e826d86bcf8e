"""``tongguan bench load``: logged-in operators at their screens, against the production server
and, in the same run, the development server (the baseline), while readings are ingested.

What one simulated operator does (think mode): every 2 s the page's live tick, every 10 s a
page view of a region inside their home region (province admin: province, a city, a county;
city operators: their city and one of its counties; county operators: their county). The
requests are not made up: the bench opens each page once in headless Chromium, logged in, and
records the Dash callback requests the page really sends (Chromium's network log); a page view
replays the page-load callbacks in the recorded order, a live tick replays the page's live
callback with the ``shown`` state the previous answer left, as the browser does. Scripts,
styles and boundaries are cached by a browser after the first load and are not replayed.

Each operator logs in with an account of their own from a loopback address of their own
(127.0.0.N), so the log-in rate limit per address applies to each as it would to real clients.

Latency is measured from the moment a request was due (not when it could be sent), so a server
that falls behind shows it in the percentiles instead of slowing the load down. ``--stress``
drops the think time: every operator sends the next request as soon as the previous answered;
the callbacks per second completed then is the saturation throughput.

Meanwhile the simulator produces about ``--ingest-rate`` readings/s and the store worker writes
them into the same database (topics of their own); the readings actually stored per second are
printed with the figures.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

BENCH_DB = "tongguan_bench_load"
TOPIC_PREFIX = "bench-load-"
LIVE_EVERY_S = 2.0
VIEW_EVERY_S = 10.0
TARGETS_MS = {"page view": 500, "live tick": 300}
SATURATION_TARGET = 4 * 23  # callbacks/s: four times what the development server saturates at


@dataclass(frozen=True)
class Profile:
    """An operator's account kind: home region, roles, and the pages they look at."""

    username: str
    home: str
    roles: tuple[str, ...]
    pages: tuple[str, ...]


# Guangdong admin; operators of Guangzhou and Shenzhen; of Tianhe (Guangzhou) and Futian (Shenzhen).
PROFILES = (
    Profile("province", "440000", ("admin", "operator"), ("/province/440000", "/city/440100", "/county/440106")),
    Profile("city-gz", "440100", ("operator",), ("/city/440100", "/county/440106")),
    Profile("city-sz", "440300", ("operator",), ("/city/440300", "/county/440304")),
    Profile("county-th", "440106", ("operator",), ("/county/440106",)),
    Profile("county-ft", "440304", ("operator",), ("/county/440304",)),
)
PAGES = tuple(dict.fromkeys(p for prof in PROFILES for p in prof.pages))
PAGE_RE = re.compile(r"^/(province|city|county)/(\d{6})$")


def page_kind(path: str) -> str:
    return PAGE_RE.match(path).group(1)


# --------------------------------------------------------------------------- capture
@dataclass
class Captured:
    """The callback requests (JSON bodies) one page sends: on load, and per live tick."""

    path: str
    load: list[dict]
    live: list[dict]  # one tick's callbacks, one per output (none: the page does not poll)
    endpoint: str = "/_dash-update-component"  # with the query the renderer adds (Dash 4: endId)


def _is_live(body: dict, page: str | None = None) -> bool:
    """A callback fired by a page's live interval (``<page>-live``)."""
    return any(isinstance(i, dict) and str(i.get("id", "")).endswith("-live")
               and (page is None or i["id"] == f"{page}-live") for i in body.get("inputs", []))


def capture(base: str, username: str, password: str, pages=PAGES, *, wait_live_s: float = 6.0) -> dict[str, Captured]:
    """Open each page in headless Chromium (logged in) and record its Dash callback requests."""
    from urllib.parse import urlsplit

    from apps.screenshot import browser, sign_in, wait_until

    def dash_posts(driver) -> list[tuple[float, str, dict]]:
        out = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg.get("method") != "Network.requestWillBeSent":
                continue
            req = msg["params"]["request"]
            if req.get("method") == "POST" and "/_dash-update-component" in req["url"] and req.get("postData"):
                url = urlsplit(req["url"])
                out.append((msg["params"]["timestamp"], url.path + ("?" + url.query if url.query else ""),
                            json.loads(req["postData"])))
        return sorted(out, key=lambda x: x[0])

    driver = browser(1600, 1000, performance_log=True)
    got: dict[str, Captured] = {}
    try:
        sign_in(driver, base, username, password)
        for path in pages:
            driver.get("about:blank")  # the previous page stops polling
            dash_posts(driver)  # drain what it sent
            driver.get(base + path)
            wait_until(driver, lambda d: d.find_elements("css selector", ".js-plotly-plot .main-svg"), 30)
            time.sleep(wait_live_s)  # the page settles and the live interval fires (every 2 s)
            recorded = dash_posts(driver)
            posts = [body for _, _, body in recorded]
            live = [b for b in posts if _is_live(b, page_kind(path))]
            load = [b for b in posts if not _is_live(b)]
            if not load:
                raise RuntimeError(f"capturing {path}: no page-load callback recorded (is the page rendering?)")
            one_tick = list({json.dumps(b.get("outputs", b.get("output")), sort_keys=True): b for b in reversed(live)}.values())
            got[path] = Captured(path, load, one_tick[::-1], recorded[0][1])
    finally:
        driver.quit()
    return got


# --------------------------------------------------------------------------- clients
class Client:
    """One operator's HTTP connection (keep-alive) from their own loopback address, with the
    session cookie of their log-in."""

    def __init__(self, host: str, port: int, source_ip: str):
        import urllib3

        self.base = f"http://{host}:{port}"
        self.pool = urllib3.HTTPConnectionPool(host, port, maxsize=1, block=True, retries=False,
                                               timeout=urllib3.Timeout(connect=10, read=120),
                                               source_address=(source_ip, 0))
        self.cookies: dict[str, str] = {}

    def _cookie_header(self) -> dict:
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}

    def _keep_cookies(self, resp) -> None:
        for raw in resp.headers.getlist("Set-Cookie"):
            name, _, rest = raw.partition("=")
            self.cookies[name.strip()] = rest.split(";", 1)[0]

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        from urllib3.exceptions import ProtocolError

        kwargs = {"body": body, "redirect": False, "preload_content": True,
                  "headers": {**self._cookie_header(), **(headers or {})}}
        try:
            resp = self.pool.request(method, path, **kwargs)
        except ProtocolError:
            # The server closed the idle keep-alive connection as this request went out;
            # browsers then send it again on a new connection, once.
            resp = self.pool.request(method, path, **kwargs)
        self._keep_cookies(resp)
        return resp

    def login(self, username: str, password: str) -> None:
        from urllib.parse import urlencode

        page = self.request("GET", "/login")
        m = re.search(rb'name="csrf_token" value="([^"]+)"', page.data)
        if page.status != 200 or not m:
            raise RuntimeError(f"log-in page answered {page.status}")
        resp = self.request("POST", "/login", urlencode({"csrf_token": m.group(1).decode(), "username": username,
                                                        "password": password, "next": ""}).encode(),
                            {"Content-Type": "application/x-www-form-urlencoded",
                             "Origin": self.base, "Referer": self.base + "/login"})
        if resp.status != 302:
            raise RuntimeError(f"log-in of {username} answered {resp.status}: {resp.data[:200]!r}")

    def callback(self, endpoint: str, body: bytes, page: str):
        return self.request("POST", endpoint, body, {
            "Content-Type": "application/json", "Accept": "application/json", "Origin": self.base,
            "Referer": self.base + page})

    def close(self) -> None:
        self.pool.close()


@dataclass
class Tally:
    """Latencies (ms) and errors per kind of request, and completed callbacks."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    callbacks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, ms: float | None, error: str | None = None, callbacks: int = 0) -> None:
        with self.lock:
            self.callbacks += callbacks
            if error is not None:
                self.errors[kind] = self.errors.get(kind, 0) + 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{kind}: {error}")
            else:
                self.latencies.setdefault(kind, []).append(ms)


def _pct(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


@dataclass
class Operator:
    client: Client
    profile: Profile
    captured: dict[str, Captured]
    rng: random.Random
    page: str = ""
    shown: dict = field(default_factory=dict)  # (page, store id) -> what the live callbacks last left there
    ticks: dict = field(default_factory=dict)  # page -> n_intervals of its live interval
    view_i: int = 0

    def __post_init__(self):
        self.page = self.profile.pages[0]

    def page_view(self, tally: Tally, due: float) -> None:
        self.page = self.profile.pages[self.view_i % len(self.profile.pages)]
        self.view_i += 1
        cap = self.captured[self.page]
        kind = f"{page_kind(self.page)} page view"
        for body in cap.load:
            err = self._send(json.dumps(body).encode())
            if err:
                tally.add(kind, None, err)
                return
        tally.add(kind, (time.perf_counter() - due) * 1000, callbacks=len(cap.load))
        # A fresh page shows what its layout rendered, and its interval counts from zero.
        for key in [k for k in self.shown if k[0] == self.page]:
            del self.shown[key]
        self.ticks[self.page] = 0

    def live_tick(self, tally: Tally, due: float) -> None:
        """The page's live callbacks of one tick, with the interval's count and the ``shown``
        stores as the previous answers left them (the browser's state)."""
        cap = self.captured[self.page]
        if not cap.live:
            return  # this page does not poll
        n = self.ticks.get(self.page, 0) + 1
        self.ticks[self.page] = n
        for template in cap.live:
            body = json.loads(json.dumps(template))
            for inp in body.get("inputs", []):
                if str(inp.get("id", "")).endswith("-live") and inp.get("property") == "n_intervals":
                    inp["value"] = n
            for st in body.get("state", []):
                if (self.page, st.get("id")) in self.shown:
                    st["value"] = self.shown[(self.page, st["id"])]
            answer: dict = {}
            err = self._send(json.dumps(body).encode(), out=answer)
            if err:
                tally.add("live tick", None, err)
                return
            for comp_id, props in (answer.get("response") or {}).items():
                if isinstance(props, dict) and isinstance(props.get("data"), dict | list):
                    self.shown[(self.page, comp_id)] = props["data"]
        tally.add("live tick", (time.perf_counter() - due) * 1000, callbacks=len(cap.live))

    def _send(self, body: bytes, out: dict | None = None) -> str | None:
        from urllib3.exceptions import HTTPError

        try:
            resp = self.client.callback(self.captured[self.page].endpoint, body, self.page)
        except (HTTPError, OSError) as exc:  # a refused or dropped connection is an error of this request
            return f"{type(exc).__name__}: {exc}"
        if resp.status not in (200, 204):
            return f"HTTP {resp.status}: {resp.data[:160]!r}"
        if out is not None and resp.status == 200:
            try:
                out.update(json.loads(resp.data))
            except ValueError:
                return "answer is not JSON"
        return None


def _run_operator(op: Operator, tally: Tally, t_end: float, stress: bool) -> None:
    if stress:
        while time.perf_counter() < t_end:
            op.page_view(tally, time.perf_counter())
            for _ in range(int(VIEW_EVERY_S / LIVE_EVERY_S) - 1):
                if time.perf_counter() >= t_end:
                    return
                op.live_tick(tally, time.perf_counter())
        return
    now = time.perf_counter()
    next_live = now + op.rng.uniform(0, LIVE_EVERY_S)
    next_view = now + op.rng.uniform(0, VIEW_EVERY_S)
    while True:
        due = min(next_live, next_view)
        if due >= t_end:
            return
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        if next_view <= next_live:
            op.page_view(tally, next_view)
            next_view += VIEW_EVERY_S
        else:
            op.live_tick(tally, next_live)
            next_live += LIVE_EVERY_S
        # A tick that fell a whole period behind is skipped, as the browser coalesces them.
        now = time.perf_counter()
        while next_live + LIVE_EVERY_S < now:
            next_live += LIVE_EVERY_S


def run_load(operators: list[Operator], *, duration: float, stress: bool) -> tuple[Tally, float]:
    tally = Tally()
    t0 = time.perf_counter()
    t_end = t0 + duration
    threads = [threading.Thread(target=_run_operator, args=(op, tally, t_end, stress), daemon=True)
               for op in operators]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return tally, time.perf_counter() - t0


def summarise(tally: Tally, wall_s: float) -> list[dict]:
    rows = []
    kinds = sorted(set(tally.latencies) | set(tally.errors), key=lambda k: (k == "live tick", k))
    for kind in kinds:
        ms = sorted(tally.latencies.get(kind, []))
        rows.append({"kind": kind, "n": len(ms), "per_s": len(ms) / wall_s, "errors": tally.errors.get(kind, 0),
                     "p50": statistics.median(ms) if ms else float("nan"),
                     "p95": _pct(ms, 0.95) if ms else float("nan"), "p99": _pct(ms, 0.99) if ms else float("nan")})
    return rows


# --------------------------------------------------------------------------- processes
def _tongguan(*words: str) -> list[str]:
    return [sys.executable, "-m", "tongguan.cli", *words]


def _wait_http(port: int, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    import urllib3
    from urllib3.exceptions import HTTPError

    deadline = time.monotonic() + timeout
    pool = urllib3.HTTPConnectionPool("127.0.0.1", port, retries=False, timeout=2)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering")
        try:
            if pool.request("GET", "/login").status == 200:
                return
        except (HTTPError, OSError):
            pass  # not listening yet
        time.sleep(0.3)
    raise RuntimeError(f"no answer on port {port} within {timeout:.0f} s")


def _stop(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Servers:
    """Start and stop ``tongguan serve`` (production or --dev) and the ingest pair for the bench."""

    def __init__(self, env: dict, log_dir: Path):
        # A benchmark on a development machine: say so, or `serve` refuses the development key.
        self.env = {"TONGGUAN_ENV": "development", **env}
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, words: list[str], extra_env: dict | None = None) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "ab") as out:  # the child keeps its own descriptor
            return subprocess.Popen(_tongguan(*words), env={**self.env, **(extra_env or {})}, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def serve(self, name: str, port: int, extra: list[str]) -> subprocess.Popen:
        proc = self._spawn(name, ["serve", "--host", "127.0.0.1", "--port", str(port), *extra])
        try:
            _wait_http(port, proc=proc)
        except Exception:
            _stop(proc)
            raise
        return proc

    def ingest(self, readings_per_s: float, seed: int = 11) -> list[subprocess.Popen]:
        from ingest.simulator import GATEWAY_SIZE

        # Half the sensors send single readings, half through gateways (GATEWAY_SIZE readings a
        # message): messages/s for the requested readings/s.
        msgs = readings_per_s * (0.5 + 0.5 / GATEWAY_SIZE)
        worker = self._spawn("ingest", ["ingest"])
        # Real time (speedup 1) for longer than any run: each sensor reports about every second,
        # stamped now; the bench stops it when it ends.
        sim = self._spawn("simulate", ["simulate", "--rate", f"{msgs:.0f}", "--duration", "86400", "--speedup", "1",
                                       "--seed", str(seed)])
        return [worker, sim]


def session_cpu_s(sid: int) -> float:
    """CPU seconds (user + system) of the live processes of session ``sid`` (a server started
    with ``start_new_session``: its gunicorn master and workers). Unlike latency, this does not
    depend on how busy the rest of the machine is."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid:  # fields after "(comm)": state ppid pgrp session … utime stime
            total += int(fields[11]) + int(fields[12])
    return total / tick


def stored_since(engine, since) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM readings WHERE ingested_at >= :t"), {"t": since}).scalar()


# --------------------------------------------------------------------------- command
def register_bench(bench_sub) -> None:
    p = bench_sub.add_parser("load", help="logged-in operators against the production and development servers")
    p.add_argument("--users", default="10,25,50", help="operator counts, one run each (default 10,25,50)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds per run (default 60)")
    p.add_argument("--stress", action="store_true", help="also a zero-think-time run per server at the largest "
                                                         "count: the saturation throughput")
    p.add_argument("--ingest-rate", type=float, default=2000.0, help="readings/s ingested meanwhile (default 2000; 0: none)")
    p.add_argument("--workers", type=int, default=None, help="production server workers (default: its own)")
    p.add_argument("--threads", type=int, default=None, help="production server threads per worker")
    p.add_argument("--readings", type=int, default=500_000, help="raw readings in the database before the run")
    p.add_argument("--no-baseline", action="store_true", help="skip the development server")
    p.add_argument("--no-cache", action="store_true",
                   help="both servers without the view query cache (TONGGUAN_VIEW_CACHE_S=0)")
    p.add_argument("--fresh", action="store_true", help="drop and rebuild the benchmark database")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    p.set_defaults(func=cmd_bench_load)


def _users_arg(text: str) -> list[int]:
    from tongguan import TongguanError

    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise TongguanError(f"--users takes operator counts such as 10,25,50 (got {text!r})")
    return counts


def _accounts(engine, n: int, rng: random.Random) -> list[tuple[Profile, str, str]]:
    """``n`` operator accounts in the benchmark database, cycling through the profiles;
    fresh passwords each run."""
    from apps.identity import add_user, get_user, reset_password

    out = []
    for i in range(n):
        prof = PROFILES[i % len(PROFILES)]
        name = f"bench-{prof.username}-{i:03d}"
        pw = f"bench-{rng.getrandbits(64):016x}"
        if get_user(engine, name) is None:
            add_user(engine, name, pw, home=prof.home, roles=prof.roles)
        else:
            reset_password(engine, name, pw)
        out.append((prof, name, pw))
    return out


def prepare_db(ctx, *, readings: int, fresh: bool, log=print) -> str:
    """The benchmark database, filled as for ``bench views`` (kept between runs)."""
    from apps.bench import bench_url, prepare

    url, created = bench_url(ctx, fresh, name=BENCH_DB)
    log(f"tongguan bench load — database {BENCH_DB} ({'new' if created else 'reused'})")
    t = time.perf_counter()
    sz = prepare(url, readings=readings, days=7, log=log)
    log(f"  prepared in {time.perf_counter() - t:.1f} s: readings {sz['readings']:,}, db {sz['db_size']}")
    return url


def bench(ctx, url: str, *, users: list[int], duration: float, stress: bool, ingest_rate: float,
          workers: int | None = None, threads: int | None = None, baseline: bool = True,
          topic_prefix: str = TOPIC_PREFIX, log_dir: Path | None = None, cache: bool = True, log=print) -> dict:
    """Run the load against the production server and (``baseline``) the development server,
    on the prepared database at ``url``; returns the figures (see ``format_run``)."""
    from tongguan.db import engine_for
    from tongguan.services import free_port

    eng = engine_for(url)
    rng = random.Random(16)
    accounts = _accounts(eng, max(users), rng)
    env = {**os.environ, "TONGGUAN_DATABASE_URL": url, "TONGGUAN_KAFKA_BOOTSTRAP": ctx.kafka_bootstrap,
           "TONGGUAN_HOME": str(ctx.settings.home), "TONGGUAN_TOPIC_PREFIX": topic_prefix,
           "TONGGUAN_ENV": os.environ.get("TONGGUAN_ENV", "development")}
    if not cache:
        env["TONGGUAN_VIEW_CACHE_S"] = "0"
    servers = Servers(env, log_dir or Path(ctx.settings.home) / "bench-load")
    result: dict = {"users": users, "duration_s": duration, "ingest_target": ingest_rate, "servers": {}, "cache": cache,
                    "cpus": os.cpu_count(), "loadavg_before": os.getloadavg()}
    plan = [("production", ["--workers", str(workers)] if workers else [])]
    if threads:
        plan[0][1].extend(["--threads", str(threads)])
    if baseline:
        plan.append(("development (baseline)", ["--dev"]))
    captured = None
    ingest_procs = servers.ingest(ingest_rate) if ingest_rate > 0 else []
    try:
        for name, extra in plan:
            port = free_port()
            proc = servers.serve(name.split()[0], port, extra)
            try:
                if captured is None:
                    t = time.perf_counter()
                    _, user, pw = accounts[0]
                    captured = capture(f"http://127.0.0.1:{port}", user, pw)
                    (servers.log_dir / "captured.json").write_text(json.dumps(
                        {p: dataclasses.asdict(c) for p, c in captured.items()}, indent=1), encoding="utf-8")
                    log(f"  captured the callbacks of {len(captured)} pages in Chromium in "
                        f"{time.perf_counter() - t:.1f} s: " + ", ".join(
                            f"{p} {len(c.load)} + {len(c.live)} a tick" for p, c in captured.items()))
                result["servers"][name] = _bench_server(port, accounts, captured, users=users, duration=duration,
                                                        stress=stress, engine=eng, name=name, log=log,
                                                        server_sid=proc.pid)
            finally:
                _stop(proc)
    finally:
        for proc in reversed(ingest_procs):
            _stop(proc)
    result["loadavg_after"] = os.getloadavg()
    return result


def _bench_server(port: int, accounts, captured, *, users, duration, stress, engine, name, log,
                  server_sid: int) -> dict:
    from datetime import UTC, datetime

    clients = []
    for i, (prof, user, pw) in enumerate(accounts):
        c = Client("127.0.0.1", port, f"127.0.{1 + i // 250}.{1 + i % 250}")
        c.login(user, pw)
        clients.append((prof, c))
    out = {"runs": []}
    try:
        runs = [(n, False) for n in users] + ([(max(users), True)] if stress else [])
        for n, is_stress in runs:
            ops = [Operator(c, prof, captured, random.Random(1000 + i)) for i, (prof, c) in enumerate(clients[:n])]
            since = datetime.now(UTC)
            load1 = os.getloadavg()[0]
            cpu0 = session_cpu_s(server_sid)
            tally, wall = run_load(ops, duration=duration, stress=is_stress)
            cpu = session_cpu_s(server_sid) - cpu0
            stored = stored_since(engine, since)
            run = {"users": n, "stress": is_stress, "wall_s": wall, "callbacks_per_s": tally.callbacks / wall,
                   "ingested_per_s": stored / wall, "rows": summarise(tally, wall),
                   "server_cpu_ms_per_callback": cpu * 1000 / max(tally.callbacks, 1),
                   "loadavg": [load1, os.getloadavg()[0]], "error_samples": tally.error_samples}
            out["runs"].append(run)
            log(format_run(name, run))
    finally:
        for _, c in clients:
            c.close()
    return out


def format_run(server: str, run: dict) -> str:
    mode = "stress (no think time)" if run["stress"] else "operators"
    lines = [(f"\n  {server}: {run['users']} {mode}, {run['wall_s']:.0f} s — {run['callbacks_per_s']:.1f} callbacks/s, "
              f"server CPU {run['server_cpu_ms_per_callback']:.1f} ms a callback, "
              f"ingest {run['ingested_per_s']:,.0f} readings/s stored, load average "
              f"{run['loadavg'][0]:.1f} → {run['loadavg'][1]:.1f}"),
             f"    {'request':<22} {'n':>6} {'per s':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'errors':>6}  target p95"]
    for r in run["rows"]:
        target = next((v for k, v in TARGETS_MS.items() if r["kind"].endswith(k)), None)
        verdict = "" if target is None or run["stress"] else f"< {target} ms " + ("ok" if r["p95"] < target else "MISSED")
        lines.append(f"    {r['kind']:<22} {r['n']:>6} {r['per_s']:>7.1f} {r['p50']:>6.0f}ms {r['p95']:>6.0f}ms "
                     f"{r['p99']:>6.0f}ms {r['errors']:>6}  {verdict}")
    for s in run.get("error_samples", []):
        lines.append(f"    error: {s}")
    return "\n".join(lines)


def format_comparison(result: dict) -> str:
    """Production against the development server, run by run (ratios of p95 and throughput)."""
    servers = result["servers"]
    prod = servers.get("production")
    base = servers.get("development (baseline)")
    if not prod or not base:
        return ""
    lines = ["\n  production vs development server (same run):",
             f"    {'run':<26} {'callbacks/s':>18} {'page view p95':>22} {'live tick p95':>22} "
             f"{'server CPU ms/callback':>24}"]
    for a, b in zip(prod["runs"], base["runs"]):
        def p95(run, suffix):
            vals = [r["p95"] for r in run["rows"] if r["kind"].endswith(suffix)]
            return max(vals) if vals else float("nan")

        label = f"{a['users']} {'stress' if a['stress'] else 'operators'}"
        lines.append(f"    {label:<26} {a['callbacks_per_s']:>6.1f} vs {b['callbacks_per_s']:>5.1f} "
                     f"(×{a['callbacks_per_s'] / max(b['callbacks_per_s'], 1e-9):.1f}) "
                     f"{p95(a, 'page view'):>6.0f} vs {p95(b, 'page view'):>5.0f} ms "
                     f"{p95(a, 'live tick'):>6.0f} vs {p95(b, 'live tick'):>5.0f} ms "
                     f"{a['server_cpu_ms_per_callback']:>10.1f} vs {b['server_cpu_ms_per_callback']:>5.1f}")
    stress = [r for r in prod["runs"] if r["stress"]]
    if stress:
        got = stress[-1]["callbacks_per_s"]
        lines.append(f"    saturation: {got:.1f} callbacks/s (target ≥ {SATURATION_TARGET}: "
                     f"{'ok' if got >= SATURATION_TARGET else 'MISSED'})")
    return "\n".join(lines)


def cmd_bench_load(args, ctx) -> int:
    users = _users_arg(args.users)
    if args.duration <= 0:
        from tongguan import TongguanError

        raise TongguanError("--duration must be positive seconds")
    url = prepare_db(ctx, readings=args.readings, fresh=args.fresh)
    result = bench(ctx, url, users=users, duration=args.duration, stress=args.stress, ingest_rate=args.ingest_rate,
                   workers=args.workers, threads=args.threads, baseline=not args.no_baseline, cache=not args.no_cache)
    print(format_comparison(result))
    print(f"\n  machine: {result['cpus']} CPUs, load average (1 min) {result['loadavg_before'][0]:.1f} before / "
          f"{result['loadavg_after'][0]:.1f} after; latency is from when a request was due, client included.")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
    return 0
