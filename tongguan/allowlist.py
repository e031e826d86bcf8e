"""Allow-list entries for outgoing requests (``TONGGUAN_WEBHOOK_ALLOW``), parsed apart from the
URL guard so that settings can check them at start without importing the guard (which reads the
settings)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tongguan import TongguanError

__all__ = ["Allowed", "parse_allow"]


@dataclass(frozen=True)
class Allowed:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def admits(self, ip, port: int) -> bool:
        return ip in self.network and (self.port is None or self.port == port)


def parse_allow(text: str | None) -> list[Allowed]:
    """``"127.0.0.1:8099, 10.20.0.0/16, [::1]:9000"`` → entries. Raises TongguanError on a bad entry.

    >>> [(str(a.network), a.port) for a in parse_allow("127.0.0.1:8099, 10.20.0.0/16")]
    [('127.0.0.1/32', 8099), ('10.20.0.0/16', None)]
    """
    out = []
    for raw in (text or "").split(","):
        entry = raw.strip()
        if not entry:
            continue
        port = None
        host = entry
        if entry.startswith("["):
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else None
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        try:
            out.append(Allowed(ipaddress.ip_network(host, strict=False), int(port) if port else None))
        except ValueError:
            raise TongguanError(f"TONGGUAN_WEBHOOK_ALLOW: bad entry {entry!r}; use an address with a port "
                                "(127.0.0.1:8099) or a network (10.20.0.0/16)") from None
    return out
