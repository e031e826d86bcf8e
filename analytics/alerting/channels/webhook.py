"""The signed webhook: a JSON POST to the subscriber's URL, and a small receiver that verifies it.

Webhook signature (for receivers; see :func:`verify`)::

    X-Tongguan-Timestamp: <unix seconds>
    X-Tongguan-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    X-Tongguan-Delivery:  <delivery key>   (the same on every retry: de-duplicate on it)
    X-Tongguan-Attempt:   <attempt number, from 1>
    X-Tongguan-Resend:    1 when an earlier attempt may have reached you (the notifier stopped
                          before it recorded the answer): the same delivery again

Signing the timestamp with the body lets a receiver reject replays (a timestamp too far from its
clock) without keeping state; the delivery key lets it drop a retry it already processed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

from analytics.alerting.channels.base import Channel, Field, Outcome, body_bytes

USER_AGENT = "tongguan-notify/1"


# ------------------------------------------------------------------------------------ signing
def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """``sha256=<hex>`` over ``"<timestamp>." + body``.

    >>> sign("k", 1700000000, b'{"a":1}')[:15]
    'sha256=1b6ad1bc'
    """
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str | None, body: bytes, signature: str | None, *,
           tolerance: float = 300.0, now: float | None = None) -> tuple[bool, str]:
    """Check a delivery: the signature matches and the timestamp is fresh. Returns (ok, why)."""
    if not timestamp or not signature:
        return False, "missing X-Tongguan-Timestamp or X-Tongguan-Signature"
    try:
        ts = int(timestamp)
    except ValueError:
        return False, "bad timestamp"
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance:
        return False, f"timestamp {ts} is {abs(now - ts):.0f} s from now (replay?)"
    if not hmac.compare_digest(sign(secret, ts, body), signature):
        return False, "signature mismatch"
    return True, "ok"


# ------------------------------------------------------------------------------------ webhook
def send_webhook(url: str, secret: str, payload: dict, *, delivery_key: str, timeout: float = 5.0,
                 now: float | None = None, attempt: int = 1, resend: bool = False) -> Outcome:
    """POST the JSON, signed; 2xx is success, anything else (or no answer) is an error to retry."""
    from tongguan import netguard

    body = body_bytes(payload)
    ts = int(time.time() if now is None else now)
    # Through the URL guard: public addresses (or allow-listed ones) only, checked at connect
    # time, no redirects, and a generic outcome (users see it in the delivery log).
    answer = netguard.post(url, body, {
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
        "X-Tongguan-Timestamp": str(ts), "X-Tongguan-Signature": sign(secret or "", ts, body),
        "X-Tongguan-Delivery": delivery_key, "X-Tongguan-Attempt": str(attempt),
        **({"X-Tongguan-Resend": "1"} if resend else {})}, timeout=timeout)
    return Outcome(answer.ok, answer.detail)


# ----------------------------------------------------------------------------------- receiver
class WebhookReceiver:
    """A small HTTP server that verifies signed deliveries (the demo's subscriber, the bench's and
    the tests' endpoint). ``secret`` may be a string or a callable ``(path) -> secret``.

    Each verified delivery is passed to ``on_delivery(payload, headers)`` and kept in
    ``received``; ``fail_first`` answers HTTP 503 to that many requests first (retry tests), and
    duplicate delivery keys are acknowledged but not passed on (at-least-once → exactly-once).
    """

    def __init__(self, secret, *, host: str = "127.0.0.1", port: int = 0, on_delivery=None,
                 fail_first: int = 0, tolerance: float = 300.0):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received: list[dict] = []
        self.rejected: list[str] = []
        self.requests = 0
        self.fail_first = fail_first
        self.seen: set[str] = set()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with outer._lock:
                    outer.requests += 1
                    failing = outer.requests <= outer.fail_first
                if failing:
                    self.send_response(503)
                    self.end_headers()
                    return
                key = secret(self.path) if callable(secret) else secret
                ok, why = verify(key or "", self.headers.get("X-Tongguan-Timestamp"), body,
                                 self.headers.get("X-Tongguan-Signature"), tolerance=tolerance)
                if not ok:
                    with outer._lock:
                        outer.rejected.append(why)
                    self.send_response(401)
                    self.end_headers()
                    self.wfile.write(why.encode())
                    return
                payload = json.loads(body)
                delivery = self.headers.get("X-Tongguan-Delivery") or ""
                with outer._lock:
                    fresh = delivery not in outer.seen
                    outer.seen.add(delivery)
                    if fresh:
                        outer.received.append(payload)
                self.send_response(200)
                self.end_headers()
                if fresh and on_delivery is not None:
                    on_delivery(payload, dict(self.headers))

            def log_message(self, *args):  # quiet
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook-receiver")

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class WebhookChannel(Channel):
    name = "webhook"
    label_zh = "Webhook"
    label_en = "Webhook"
    order = 20
    fields = (Field("webhook_url", "Webhook 地址", "Webhook URL", r"^https?://",
                    "the webhook channel needs a webhook URL http(s)://… (--webhook-url)",
                    placeholder="https://…"),)
    generated = ("secret",)

    def validate(self, values) -> None:
        """The URL's form, then the outgoing-request policy (tongguan.netguard: public addresses
        unless allow-listed, no control characters, no credentials in the URL)."""
        from tongguan.netguard import check_url

        super().validate(values)
        check_url(values.get("webhook_url") or "")

    def generate(self, values, old=None) -> dict:
        # The signing secret is made once and kept across edits (the subscriber stored it).
        secret = (old or {}).get("secret") or values.get("secret") or secrets.token_hex(32)
        return {"secret": secret}

    def send(self, *, settings, config, sub, payload, delivery_key, attempt=1, resend=False) -> Outcome:
        return send_webhook(sub["webhook_url"], sub["secret"] or "", payload, delivery_key=delivery_key,
                            timeout=config.webhook_timeout, attempt=attempt, resend=resend)


CHANNEL = WebhookChannel()
