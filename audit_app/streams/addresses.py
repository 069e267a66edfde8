"""Which addresses a stream may send to: only what IANA marks globally reachable.

The IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890, as updated; the
entries below as of 2025) are listed here explicitly, with their "Globally Reachable"
column: ``is_global`` alone is not enough (Python 3.11 calls 192.0.0.192 global, and knows
nothing of addresses that embed an IPv4 one). An address is allowed when the most specific
entry that contains it is globally reachable, or no entry contains it and it is ordinary
unicast (IPv4 outside multicast; IPv6 inside 2000::/3, the only space IANA allocates for
global unicast). Addresses that carry an IPv4 address are judged by it as well: NAT64
(64:ff9b::/96), 6to4 (2002::/16) and Teredo (2001::/32: its server and, obfuscated, its
client) are allowed only when every IPv4 address they embed is; IPv4-mapped,
IPv4-compatible and IPv4-translated addresses are never globally reachable.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, name, globally reachable); None: "N/A" in the registry, judged by the IPv4
# address it embeds
IPV4_SPECIAL: tuple[tuple[str, str, bool | None], ...] = (
    ("0.0.0.0/8", '"This network"', False),
    ("0.0.0.0/32", '"This host on this network"', False),
    ("10.0.0.0/8", "Private-Use", False),
    ("100.64.0.0/10", "Shared Address Space", False),
    ("127.0.0.0/8", "Loopback", False),
    ("169.254.0.0/16", "Link Local", False),
    ("172.16.0.0/12", "Private-Use", False),
    ("192.0.0.0/24", "IETF Protocol Assignments", False),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", False),
    ("192.0.0.8/32", "IPv4 dummy address", False),
    ("192.0.0.9/32", "Port Control Protocol Anycast", True),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", True),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", False),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", False),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", False),
    ("192.31.196.0/24", "AS112-v4", True),
    ("192.52.193.0/24", "AMT", True),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", False),
    ("192.168.0.0/16", "Private-Use", False),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", True),
    ("198.18.0.0/15", "Benchmarking", False),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", False),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", False),
    ("240.0.0.0/4", "Reserved", False),
    ("255.255.255.255/32", "Limited Broadcast", False),
    # not in the special-purpose registry, but no destination either
    ("224.0.0.0/4", "Multicast", False),
)
IPV6_SPECIAL: tuple[tuple[str, str, bool | None], ...] = (
    ("::1/128", "Loopback Address", False),
    ("::/128", "Unspecified Address", False),
    ("::ffff:0:0/96", "IPv4-mapped Address", False),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", True),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", False),
    ("100::/64", "Discard-Only Address Block", False),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", False),
    ("2001::/23", "IETF Protocol Assignments", False),
    ("2001::/32", "TEREDO", None),
    ("2001:1::1/128", "Port Control Protocol Anycast", True),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", True),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", True),
    ("2001:2::/48", "Benchmarking", False),
    ("2001:3::/32", "AMT", True),
    ("2001:4:112::/48", "AS112-v6", True),
    ("2001:10::/28", "Deprecated (previously ORCHID)", False),
    ("2001:20::/28", "ORCHIDv2", True),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", True),
    ("2001:db8::/32", "Documentation", False),
    ("2002::/16", "6to4", None),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", True),
    ("3fff::/20", "Documentation", False),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", False),
    ("fc00::/7", "Unique-Local", False),
    ("fe80::/10", "Link-Local Unicast", False),
    # not in the special-purpose registry: deprecated or not unicast destinations
    ("::/96", "IPv4-compatible Address (deprecated)", False),
    ("::ffff:0:0:0/96", "IPv4-translated Address", False),
    ("fec0::/10", "Site-Local (deprecated)", False),
    ("ff00::/8", "Multicast", False),
)
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
TEREDO = ipaddress.IPv6Network("2001::/32")


Entry = tuple[str, str, bool | None]


def _table(entries: tuple[Entry, ...]) -> list[tuple[Network, str, bool | None]]:
    """Most specific first, so the first entry that contains an address decides."""
    parsed = [(ipaddress.ip_network(net), name, reachable) for net, name, reachable in entries]
    return sorted(parsed, key=lambda entry: -entry[0].prefixlen)


_IPV4 = _table(IPV4_SPECIAL)
_IPV6 = _table(IPV6_SPECIAL)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries: the last 32 bits of NAT64 and of
    mapped, compatible or translated addresses; 6to4's bits 16-47; Teredo's server (bits
    32-63) and client (the last 32 bits, inverted)."""
    value = int(address)
    if address in SIX_TO_FOUR:
        return [ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)]
    if address in TEREDO:
        server = ipaddress.IPv4Address((value >> 64) & 0xFFFFFFFF)
        client = ipaddress.IPv4Address((value & 0xFFFFFFFF) ^ 0xFFFFFFFF)
        return [server, client]
    if address in NAT64 or value >> 32 in (0, 0xFFFF, 0xFFFF0000):  # compatible, mapped,
        return [ipaddress.IPv4Address(value & 0xFFFFFFFF)]  # translated
    return []


@lru_cache(maxsize=1024)
def refusal(text: str) -> str | None:
    """Why a stream must not send to this address (what it is), or None if it may."""
    address = ipaddress.ip_address(text.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        return _refusal_v6(address)
    return _refusal_v4(address)


def _refusal_v4(address: ipaddress.IPv4Address) -> str | None:
    for network, name, reachable in _IPV4:
        if address in network:
            return None if reachable else f"{name}, {network}"
    return None


def _refusal_v6(address: ipaddress.IPv6Address) -> str | None:
    for network, name, reachable in _IPV6:
        if address in network:
            if reachable is False:
                return f"{name}, {network}"
            break
    else:
        if address not in GLOBAL_UNICAST_V6:
            return "not in 2000::/3, the global unicast space"
    for inner in embedded_ipv4(address):
        why = _refusal_v4(inner)
        if why is not None:
            return f"it embeds {inner} ({why})"
    return None
