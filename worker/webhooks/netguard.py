"""Which addresses a webhook may be sent to (the SSRF guard's one question).

The table is spelled out (after IANA's IPv4 and IPv6 special-purpose registries) rather than read
from `ipaddress`'s `is_private`/`is_global`, whose answers change between Python releases; those
flags remain a fallback for anything the table misses. Addresses that embed an IPv4 address
(IPv4-mapped, NAT64, 6to4) are judged by the embedded address too, so `::ffff:127.0.0.1` or
`64:ff9b::a00:1` cannot smuggle an internal target past the table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*pairs: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in pairs)


# First match wins, so narrower ranges come before the ranges that contain them.
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = _nets(
    ("0.0.0.0/32", "unspecified"),
    ("0.0.0.0/8", "reserved"),  # "this network"
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "CGNAT"),  # shared address space, RFC 6598
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata services live here
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved"),  # IETF protocol assignments
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved"),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "reserved"),  # deprecated IPv4-compatible addresses
    ("64:ff9b:1::/48", "private"),  # local-use NAT64
    ("100::/64", "reserved"),  # discard-only
    ("2001:db8::/32", "documentation"),
    ("2001::/23", "reserved"),  # IETF protocol assignments (Teredo, ORCHID, ...)
    ("fc00::/7", "private"),  # unique local
    ("fe80::/10", "link-local"),
    ("fec0::/10", "private"),  # deprecated site-local
    ("ff00::/8", "multicast"),
)

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_6TO4 = ipaddress.IPv6Network("2002::/16")


def parse_cidrs(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse an allow-list such as ``["127.0.0.0/8", "::1/128"]``; raises ValueError on junk."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour  # None outside 2002::/16


def blocked_reason(address: str | IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why `address` must not be contacted (e.g. ``"loopback address 127.0.0.1"``), or None.

    `allowed` opens ranges (an allow-list entry wins over the table); an IPv4-mapped address is
    reported and allowed as the IPv4 address it is.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return None
    for net, label in _BLOCKED:
        if ip.version == net.version and ip in net:
            return f"{label} address {ip}"
    if isinstance(ip, ipaddress.IPv6Address) and (inner := _embedded_ipv4(ip)) is not None:
        if (reason := blocked_reason(inner, allowed)) is not None:
            return f"{reason} (embedded in {ip})"
        return None
    if not ip.is_global or ip.is_multicast:
        return f"non-public address {ip}"
    return None


def literal_ip(host: str) -> IPAddress | None:
    """The IP address a URL host spells literally (brackets and a zone allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
