"""Outgoing HTTP to user-given URLs (webhooks) without server-side request forgery.

A webhook URL comes from any user, so without a guard the notifier and "test delivery" would POST
wherever it points: the database port, the app's own API, a cloud metadata address, the
intranet — and report back "connection refused" or "timeout", a port scanner. The rules:

- ``http`` or ``https`` only, a host name, no user name or password in the URL, no character at or
  below 0x20 (CR/LF/TAB/space) and no DEL anywhere;
- every address the host resolves to must be public: loopback, private, link-local, multicast,
  reserved, unspecified, shared (CGNAT) and the like are refused unless ``TONGGUAN_WEBHOOK_ALLOW``
  lists them (``127.0.0.1:8099`` one address and port, ``10.20.0.0/16`` a network, any port);
- the address is checked again when connecting, and the connection goes to the checked address,
  so a name that resolves differently the second time (DNS rebinding) gains nothing;
- redirects are not followed;
- users see a generic outcome (``HTTP 503``, ``no answer``, ``refused by the URL policy``); the
  low-level cause goes to the server log only.

``check_url`` validates when a subscription is saved; ``post`` sends.
"""

from __future__ import annotations

import http.client
import ipaddress
import logging
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from tongguan import TongguanError
from tongguan.allowlist import Allowed, parse_allow

log = logging.getLogger(__name__)

# Shown to users: the same text whatever the cause, so it cannot map the network.
REFUSED = "refused by the URL policy / 地址不允许"
NO_ANSWER = "no answer from the webhook / 未收到回应"


class UnsafeURL(TongguanError):
    """A webhook URL breaks the outgoing-request policy (the message is safe to show users)."""


def default_allow() -> list[Allowed]:
    from tongguan.settings import get_settings

    return parse_allow(get_settings().webhook_allow)


def _public(ip) -> bool:
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _check_address(ip_text: str, port: int, allow: list[Allowed]) -> bool:
    ip = ipaddress.ip_address(ip_text.split("%", 1)[0])
    return _public(ip) or any(a.admits(ip, port) for a in allow)


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path-and-query) of a URL that passes the syntax rules."""
    if not isinstance(url, str) or not url:
        raise UnsafeURL("a webhook needs an http(s):// URL")
    if len(url) > 2048:
        raise UnsafeURL("the webhook URL is too long (at most 2048 characters)")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UnsafeURL("the webhook URL contains spaces or control characters / 地址含有控制字符")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeURL("the webhook URL is malformed / 地址格式错误") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("the webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise UnsafeURL("the webhook URL has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise UnsafeURL("the webhook URL must not carry a user name or password")
    if "\\" in url:
        raise UnsafeURL("the webhook URL must not contain backslashes")
    port = port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port, target


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL(f"the webhook host {host} cannot be resolved / 无法解析主机") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def check_url(url: str, allow: list[Allowed] | None = None) -> str:
    """The URL when it may be used as a webhook; UnsafeURL (a user-safe message) otherwise.

    A name that does not resolve now (an intranet name, a machine without DNS) is accepted: it
    gains nothing, since every send resolves and checks again when it connects."""
    allow = default_allow() if allow is None else allow
    _, host, port, _ = _split(url)
    try:
        addresses = _resolve(host, port)
    except UnsafeURL:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            log.info("webhook host %s does not resolve now; it is checked again at each send", host)
            return url
        raise
    if not addresses or not all(_check_address(a, port, allow) for a in addresses):
        log.info("webhook URL refused: %s resolves to %s", host, addresses)
        raise UnsafeURL(f"the webhook host {host} is not reachable under the URL policy "
                        "(internal addresses need TONGGUAN_WEBHOOK_ALLOW) / 不允许的内部地址")
    return url


def _connect(host: str, port: int, timeout: float, allow: list[Allowed]) -> socket.socket:
    """A socket to a checked address of ``host`` (resolved now, at connect time)."""
    last: OSError | None = None
    for address in _resolve(host, port):
        if not _check_address(address, port, allow):
            raise UnsafeURL(REFUSED)
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    raise last or OSError("no address")


class _GuardedHTTP(http.client.HTTPConnection):
    def __init__(self, host, port, *, timeout, allow):
        super().__init__(host, port, timeout=timeout)
        self._allow = allow

    def connect(self):
        self.sock = _connect(self.host, self.port, self.timeout, self._allow)


class _GuardedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host, port, *, timeout, allow):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._allow = allow

    def connect(self):
        sock = _connect(self.host, self.port, self.timeout, self._allow)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Answer:
    ok: bool
    detail: str  # safe to show users
    status: int | None = None


def post(url: str, body: bytes, headers: dict, *, timeout: float = 5.0,
         allow: list[Allowed] | None = None) -> Answer:
    """POST ``body`` to a checked URL; 2xx is success, a redirect is an answer like any other
    (not followed). Never raises for network trouble: the outcome says what users may know."""
    allow = default_allow() if allow is None else allow
    try:
        scheme, host, port, target = _split(url)
        cls = _GuardedHTTPS if scheme == "https" else _GuardedHTTP
        conn = cls(host, port, timeout=timeout, allow=allow)
        try:
            conn.request("POST", target, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read(65536)
            return Answer(200 <= resp.status < 300, f"HTTP {resp.status}", resp.status)
        finally:
            conn.close()
    except UnsafeURL as exc:
        log.info("webhook to %r refused: %s", url[:200], exc)
        return Answer(False, REFUSED)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        log.info("webhook to %r failed: %s: %s", url[:200], type(exc).__name__, exc)
        return Answer(False, NO_ANSWER)
