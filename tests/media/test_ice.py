"""ICE policy: configured servers only, announced addresses only, loopback-only filtering."""

from __future__ import annotations

import pytest

from media.ice import IcePolicy, parse_ice_server
from media.sfu import SFU
from tests.harness import make_settings


async def _lost(room: str, user: str) -> None:
    return None


def test_no_ice_server_by_default_not_even_aiortcs_public_stun() -> None:
    policy = IcePolicy.from_settings((), ())
    configuration = policy.configuration()
    assert configuration.iceServers == []  # None would make aiortc use stun.l.google.com


async def test_the_sfu_uses_the_configured_servers() -> None:
    settings = make_settings(ice_server=("stun:stun.example.org:3478",), rtc_ip=("127.0.0.1",))
    sfu = SFU(settings, _lost)
    try:
        assert [s.urls for s in sfu.ice.servers] == ["stun:stun.example.org:3478"]
    finally:
        await sfu.close()


def test_ice_server_urls() -> None:
    turn = parse_ice_server("turn:alice:s3cr%40t@turn.example.org:3478?transport=tcp")
    assert turn.urls == "turn:turn.example.org:3478?transport=tcp"
    assert (turn.username, turn.credential) == ("alice", "s3cr@t")
    assert parse_ice_server("stun:stun.example.org").urls == "stun:stun.example.org"
    with pytest.raises(ValueError, match="ice-server"):
        parse_ice_server("http://example.org")


def test_bad_rtc_ip_is_refused() -> None:
    with pytest.raises(ValueError):
        IcePolicy.from_settings(("not-an-ip",), ())


OFFER = (
    "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 97\r\n"
    "a=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\n"
    "a=candidate:2 1 udp 1 10.0.0.8 5001 typ host\r\n"
    "a=candidate:3 1 udp 1 abcd.local 5002 typ host\r\n"
    "a=candidate:4 1 udp 1 127.3.4.5 5003 typ host\r\n"
    "a=end-of-candidates\r\n"
)


def test_loopback_only_keeps_remote_candidates_in_127_slash_8() -> None:
    policy = IcePolicy.from_settings(("127.0.0.1",), ())
    assert policy.loopback_only and policy.bind == ("127.0.0.1",)
    kept = policy.filter_offer(OFFER)
    assert "127.0.0.1 5000" in kept and "127.3.4.5 5003" in kept
    assert "10.0.0.8" not in kept and ".local" not in kept
    assert kept.endswith("a=end-of-candidates\r\n")


def test_other_addresses_keep_every_remote_candidate() -> None:
    policy = IcePolicy(announce=("192.0.2.10",), machine=("192.0.2.10",))
    assert not policy.loopback_only
    assert policy.filter_offer(OFFER) == OFFER
    assert policy.bind == ("192.0.2.10",)
    assert policy.rewrite_answer(OFFER) == OFFER  # a local address is announced as is


def test_unset_rtc_ip_leaves_gathering_to_aioice() -> None:
    policy = IcePolicy.from_settings((), ())
    assert policy.bind == () and not policy.loopback_only


def test_an_address_not_on_this_machine_is_announced_for_its_own_addresses() -> None:
    policy = IcePolicy(announce=("203.0.113.5",), machine=("10.0.0.8",))
    assert policy.bind == ("10.0.0.8",)
    answer = (
        "m=video 5001 UDP/TLS/RTP/SAVPF 97\r\nc=IN IP4 10.0.0.8\r\n"
        "a=candidate:2 1 udp 1 10.0.0.8 5001 typ host\r\n"
    )
    rewritten = policy.rewrite_answer(answer)
    assert "10.0.0.8" not in rewritten
    assert "a=candidate:2 1 udp 1 203.0.113.5 5001 typ host\r\n" in rewritten
    assert "c=IN IP4 203.0.113.5\r\n" in rewritten
