"""Which addresses the SFU offers and accepts for ICE, and which STUN/TURN servers it uses.

Invariants:

* ICE servers come only from ``--ice-server``; with none configured the
  configuration carries an empty list, never ``None``, because aiortc
  replaces ``None`` with a public Google STUN server.
* With ``--rtc-ip`` set, our answers carry host candidates for exactly those
  addresses. An address assigned to this machine (or loopback, which aioice
  never gathers by itself) is bound directly; any other is taken as the
  public side of a 1:1 NAT and announced in place of the machine's own
  addresses, which are bound instead.
* When every ``--rtc-ip`` is loopback, remote candidates outside
  127.0.0.0/8 are removed from offers before aiortc sees them, so no check
  (and no mDNS query) ever leaves the machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from aiortc import RTCConfiguration, RTCIceServer

from media import hooks

_TURN_CREDENTIALS = re.compile(
    r"^(?P<scheme>turns?):(?P<user>[^:@/]+):(?P<password>[^@/]+)@(?P<rest>.+)$"
)


def parse_ice_server(url: str) -> RTCIceServer:
    """``stun:host[:port]`` or ``turn[s]:user:password@host[:port][?transport=udp|tcp]``."""
    match = _TURN_CREDENTIALS.match(url)
    if match:
        return RTCIceServer(
            urls=f"{match['scheme']}:{match['rest']}",
            username=unquote(match["user"]),
            credential=unquote(match["password"]),
        )
    if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
        raise ValueError(f"ice-server: not a stun: or turn: URL: {url!r}")
    return RTCIceServer(urls=url)


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class IcePolicy:
    """The ICE side of :class:`~roomserver.config.Settings`, resolved once."""

    announce: tuple[str, ...] = ()
    servers: tuple[RTCIceServer, ...] = ()
    machine: tuple[str, ...] = field(default_factory=lambda: tuple(hooks.machine_addresses()))

    @classmethod
    def from_settings(cls, rtc_ip: Sequence[str], ice_server: Sequence[str]) -> IcePolicy:
        for address in rtc_ip:
            ipaddress.ip_address(address)  # ValueError names a bad --rtc-ip
        return cls(tuple(rtc_ip), tuple(parse_ice_server(url) for url in ice_server))

    @property
    def loopback_only(self) -> bool:
        return bool(self.announce) and all(_is_loopback(a) for a in self.announce)

    @property
    def _nat_addresses(self) -> tuple[str, ...]:
        return tuple(a for a in self.announce if not _is_loopback(a) and a not in self.machine)

    @property
    def bind(self) -> tuple[str, ...]:
        """Addresses ICE binds sockets to; empty means aioice's own choice."""
        direct = [a for a in self.announce if a not in self._nat_addresses]
        if self._nat_addresses:
            direct += [a for a in self.machine if a not in direct and not _is_loopback(a)]
        return tuple(direct)

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self.servers))

    @contextlib.contextmanager
    def gathering(self) -> Iterator[None]:
        """Wrap ``setLocalDescription`` in this so only our addresses are gathered."""
        if not self.announce:
            yield
            return
        with hooks.host_addresses(self.bind):
            yield

    def accepts_remote(self, address: str) -> bool:
        return not self.loopback_only or _is_loopback(address)

    def filter_offer(self, sdp: str) -> str:
        """The offer without remote candidates we must not contact."""
        if not self.loopback_only:
            return sdp
        lines = sdp.splitlines(keepends=True)
        return "".join(line for line in lines if self._keeps(line))

    def _keeps(self, line: str) -> bool:
        if not line.startswith("a=candidate:"):
            return True
        bits = line.split()
        return len(bits) > 4 and self.accepts_remote(bits[4])

    def rewrite_answer(self, sdp: str) -> str:
        """Announce the NAT's public addresses in place of the machine's own."""
        public = self._nat_addresses
        if not public:
            return sdp
        hidden = set(self.bind) - set(self.announce)
        out: list[str] = []
        for line in sdp.splitlines(keepends=True):
            bits = line.split(" ")
            if line.startswith("a=candidate:") and len(bits) > 4 and bits[4] in hidden:
                for address in public:
                    out.append(" ".join([*bits[:4], address, *bits[5:]]))
                continue
            if line.startswith("c=IN IP4 ") and line.split()[-1] in hidden:
                line = f"c=IN IP4 {public[0]}\r\n"
            out.append(line)
        return "".join(out)
