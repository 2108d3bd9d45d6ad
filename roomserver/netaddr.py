"""The client's address behind trusted reverse proxies; pure, no sockets.

Per-address limits (connections per IP, joins per second per IP) are only
worth something if a client cannot choose the address it is counted under.
So the rules are:

- ``X-Forwarded-For`` is believed only when the TCP peer is itself a trusted
  proxy. A client that connects directly is its TCP peer address, whatever
  headers it sends.
- The header is read right to left: each proxy appends the address it
  received the connection from, so the right-most entries are written by our
  own proxies and the left-most by whoever sent the request. Hops that are
  trusted proxies are skipped; the first address that is not trusted is the
  client. Anything left of it was written by the client and is ignored.
- When the walk cannot go further (the header is missing, an entry is not an
  address, or every hop is trusted) the answer is the last trusted address
  reached: never a value that only the client wrote.
- Addresses come back in one normal form (IPv4-mapped IPv6 as IPv4, no port,
  no brackets), so one client is one key in the per-address counters.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_HOPS = 64
"""Entries of ``X-Forwarded-For`` looked at, at most: bounds the work per request."""


def parse_network(text: str) -> Network:
    """An address (``10.0.0.5``) or a CIDR block (``10.0.0.0/8``); ValueError names the text."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"not an IP address or CIDR block: {text!r}") from None
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:  # ::ffff:10.0.0.0/104 is 10.0.0.0/8
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


@functools.lru_cache(maxsize=16)
def networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The parsed trusted set of a settings value; cached so each connection pays nothing."""
    return tuple(parse_network(value) for value in values)


def parse_address(text: str) -> Address | None:
    """One address in normal form, or None if ``text`` is not one.

    Accepts what proxies write: ``1.2.3.4``, ``1.2.3.4:5678``, ``2001:db8::1``,
    ``[2001:db8::1]`` and ``[2001:db8::1]:443``.
    """
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(address: Address, trusted: Sequence[Network]) -> bool:
    return any(address in network for network in trusted)


def client_address(peer: str, forwarded_for: Iterable[str], trusted: Sequence[Network]) -> str:
    """The address a request's limits are counted under.

    ``peer`` is the TCP peer, ``forwarded_for`` the values of every
    ``X-Forwarded-For`` header in order (several headers count as one list),
    ``trusted`` the proxies whose header is believed.
    """
    if not trusted:
        return peer
    current = parse_address(peer)
    if current is None:
        return peer
    if not is_trusted(current, trusted):
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for text in reversed(hops[-MAX_HOPS:]):
        hop = parse_address(text)
        if hop is None:
            break
        current = hop
        if not is_trusted(hop, trusted):
            break
    return str(current)
