"""Which addresses a webhook may be sent to (the SSRF guard's one question)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# CGNAT (RFC 6598) is not covered by `is_private` on every Python version, so it is named here.
_EXTRA_BLOCKED: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),
)


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse an allow-list such as ``["127.0.0.0/8", "::1/128"]``; raises ValueError on junk."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def blocked_reason(address: str | IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` must not be contacted, or None when it may be.

    IPv4-mapped and 6to4/NAT64-style embeddings are unwrapped first, so `::ffff:127.0.0.1`
    is judged as `127.0.0.1`.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    for label, hit in (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return f"{label} address {ip}"
    if isinstance(ip, ipaddress.IPv4Address) and any(ip in net for net in _EXTRA_BLOCKED):
        return f"private address {ip}"
    if not ip.is_global:
        return f"non-public address {ip}"
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The IP address a URL host spells literally (brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
