"""``tongguan screenshot``: PNGs of the province, city, county and wall views in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``), for the README and for looking at the product
without installing it."""

from __future__ import annotations

import threading
from urllib.parse import quote
import time
from dataclasses import dataclass
from pathlib import Path

from apps.errors import AppsError
from tongguan.db import engine_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--hide-scrollbars")


@dataclass(frozen=True)
class Shot:
    name: str
    path: str
    full_page: bool = True
    click_sensor: bool = False  # open the first sensor's series (county view)


DEFAULT_SHOTS = (
    Shot("province", "/province/440000"),
    Shot("city", "/city/440100"),
    Shot("county", "/county/440106", click_sensor=True),
    Shot("wall", "/province/440000?screen=wall", full_page=False),
    Shot("wall-city", "/city/440100?screen=wall", full_page=False),
    Shot("wall-county", "/county/440106?screen=wall", full_page=False),
    Shot("province-en", "/province/440000?lang=en&theme=flood"),
    Shot("alerts", "/alerts"),
    Shot("subscriptions", "/subscriptions"),
    Shot("search", "/search?q=%E5%A4%A9%E6%B2%B3"),  # 天河
)


def browser(width: int = 1920, height: int = 1080, *, performance_log: bool = False):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        raise AppsError("headless Chromium is missing: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={width},{height}")
    if performance_log:  # the network events, for recording the requests a page sends
        opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def wait_until(driver, predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate(driver):
                return True
        except Exception:
            pass
        time.sleep(0.25)
    return False


def _viewport(driver, width: int, height: int) -> None:
    """Exactly width x height CSS pixels (a window size would include the browser's frame)."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})


def sign_in(driver, base: str, username: str | None, password: str | None) -> None:
    driver.get(base + "/")
    wait_until(driver, lambda d: d.execute_script("return document.readyState") == "complete", 10)
    if "/login" not in driver.current_url:
        return
    if not (username and password):
        raise AppsError("the app asks for a log-in: pass --username and --password "
                        "(for example a demo user printed by `tongguan demo`)")
    driver.find_element("name", "username").send_keys(username)
    driver.find_element("name", "password").send_keys(password)
    driver.find_element("css selector", "form [type=submit]").click()
    if not wait_until(driver, lambda d: "/login" not in d.current_url, 15):
        raise AppsError(f"log-in as {username} failed; check the user name and password")


def take(base: str, out_dir: Path, shots=DEFAULT_SHOTS, *, username: str | None = None,
         password: str | None = None, width: int = 1920, height: int = 1080) -> list[Path]:
    """Open each view, wait until its maps are drawn, save ``<out_dir>/<name>.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    driver = browser(width, height)
    written = []
    try:
        sign_in(driver, base, username, password)
        for shot in shots:
            _viewport(driver, width, height)
            driver.get(base + shot.path)
            wait_until(driver, lambda d: d.find_elements("css selector", ".js-plotly-plot .main-svg")
                       or d.find_elements("css selector", "#error-message, .search-page, .alerts-page table, "
                                                          ".subscriptions-page, .alert-page"))
            time.sleep(2.0)  # let the plots finish laying out and the first live tick land
            if shot.click_sensor:
                _click_first_sensor(driver)
            if shot.full_page:
                h = driver.execute_script("return document.documentElement.scrollHeight")
                _viewport(driver, width, max(height, min(int(h), 4000)))
                time.sleep(1.0)
            path = out_dir / f"{shot.name}.png"
            driver.save_screenshot(str(path))
            written.append(path)
    finally:
        driver.quit()
    return written


def _click_first_sensor(driver) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    points = driver.find_elements("css selector", "#county-map .scattergeo:last-of-type path.point")
    if points:
        ActionChains(driver).move_to_element(points[0]).click().perform()
        wait_until(driver, lambda d: d.find_elements("id", "county-series-graph"), 10)
        time.sleep(1.5)


def pick_alert(engine, home: str | None = None) -> str | None:
    """The alert ``--alert auto`` shows: of those inside ``home`` (any when None), the one whose
    page shows the most of the closed loop — dispatched, escalated above its county, taken over,
    then the longest history (the detector's periodic updates not counted), the newest first."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT a.id FROM alerts a JOIN alert_handling h ON h.alert_id = a.id "
            "WHERE CAST(:home AS text) IS NULL OR :home IN (trim(a.adcode), trim(a.city), trim(a.province)) "
            "ORDER BY h.dispatched_at IS NOT NULL DESC, h.visible_at <> trim(a.adcode) DESC, "
            "h.owner_region <> trim(a.adcode) DESC, (SELECT count(*) FROM alert_history x WHERE x.alert_id = a.id "
            "AND x.action <> 'updated') DESC, a.last_seen DESC, a.id LIMIT 1"), {"home": home}).scalar()


def serve_in_thread(database_url: str, kafka_bootstrap: str):
    """The app on a free local port in a daemon thread; returns (base_url, stop)."""
    from werkzeug.serving import make_server

    from apps.app import AppConfig, create_app
    from tongguan.services import free_port

    app = create_app(AppConfig(database_url=database_url, kafka_bootstrap=kafka_bootstrap))
    port = free_port()
    srv = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{port}", srv.shutdown


def register(sub) -> None:
    p = sub.add_parser("screenshot", help="PNG screenshots of the province, city, county and wall views")
    p.add_argument("--url", help="a running server (default: start one on the configured database)")
    p.add_argument("--out", default="docs/screenshots", help="output directory (default docs/screenshots)")
    p.add_argument("--username", help="log-in user when the app asks for one")
    p.add_argument("--password", help="its password")
    p.add_argument("--only", nargs="*", choices=[s.name for s in DEFAULT_SHOTS], help="just these views")
    p.add_argument("--alert", nargs="?", const="auto",
                   help="also alert.png: the page of this alert id (/alert/<id>); without an id (or 'auto') the "
                        "alert of the user's region that shows most of the closed loop (dispatched, escalated, "
                        "taken over)")
    p.set_defaults(func=cmd_screenshot)


def _home(database_url: str, username: str | None) -> str | None:
    """The region of the user the screenshots are taken as (None: any region)."""
    import sqlalchemy as sa

    if not username:
        return None
    with engine_for(database_url).connect() as conn:
        home = conn.execute(sa.text("SELECT home_adcode FROM users WHERE username = :u"), {"u": username}).scalar()
    return str(home).strip() if home else None


def cmd_screenshot(args, ctx) -> int:
    shots = [s for s in DEFAULT_SHOTS if not args.only or s.name in args.only]
    if args.alert:
        alert_id = args.alert
        if alert_id == "auto":
            alert_id = pick_alert(engine_for(ctx.database_url), _home(ctx.database_url, args.username))
            if alert_id is None:
                raise AppsError("--alert: no alert in the database yet (start `tongguan demo` and wait a minute)")
        shots.append(Shot("alert", f"/alert/{quote(alert_id, safe='')}"))
    stop = None
    base = args.url
    if not base:
        base, stop = serve_in_thread(ctx.database_url, ctx.kafka_bootstrap)
    try:
        for path in take(base.rstrip("/"), Path(args.out), shots, username=args.username,
                         password=args.password):
            print(path)
    finally:
        if stop:
            stop()
    return 0
