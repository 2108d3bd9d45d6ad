"""The client address behind trusted proxies: who may set it, and which hop is the client."""

from __future__ import annotations

import ipaddress

import pytest

from roomserver.netaddr import (
    MAX_HOPS,
    client_address,
    networks,
    parse_address,
    parse_network,
)

PROXY = networks(("127.0.0.1", "10.0.0.0/8"))


# --- who is believed --------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], ()) == "203.0.113.9"


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_address("203.0.113.9", ["198.51.100.1"], PROXY) == "203.0.113.9"
    assert client_address("203.0.113.9", ["127.0.0.1"], PROXY) == "203.0.113.9"


def test_a_trusted_peer_names_the_client() -> None:
    assert client_address("127.0.0.1", ["198.51.100.1"], PROXY) == "198.51.100.1"


def test_a_trusted_peer_without_the_header_is_itself() -> None:
    assert client_address("127.0.0.1", [], PROXY) == "127.0.0.1"
    assert client_address("127.0.0.1", [""], PROXY) == "127.0.0.1"


# --- which hop --------------------------------------------------------------------------


def test_the_right_most_untrusted_hop_wins_over_what_the_client_wrote() -> None:
    # The client wrote "1.1.1.1"; nginx appended the address it saw.
    assert client_address("127.0.0.1", ["1.1.1.1, 198.51.100.7"], PROXY) == "198.51.100.7"


def test_trusted_hops_are_skipped() -> None:
    header = ["198.51.100.7, 10.1.2.3, 10.9.9.9"]
    assert client_address("127.0.0.1", header, PROXY) == "198.51.100.7"


def test_several_headers_count_as_one_list() -> None:
    assert client_address("127.0.0.1", ["1.1.1.1", "198.51.100.7, 10.0.0.1"], PROXY) == (
        "198.51.100.7"
    )


def test_when_every_hop_is_trusted_the_left_most_is_the_client() -> None:
    assert client_address("127.0.0.1", ["10.0.0.2, 10.0.0.1"], PROXY) == "10.0.0.2"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client_address("127.0.0.1", ["unknown"], PROXY) == "127.0.0.1"
    assert client_address("127.0.0.1", ["198.51.100.7, unknown, 10.0.0.3"], PROXY) == "10.0.0.3"
    # Garbage left of the client is the client's own business.
    assert client_address("127.0.0.1", ["<script>, 198.51.100.7"], PROXY) == "198.51.100.7"


def test_a_long_header_is_walked_only_so_far() -> None:
    header = ["198.51.100.7, " + ", ".join(["10.0.0.1"] * (MAX_HOPS + 5))]
    assert client_address("127.0.0.1", header, PROXY) == "10.0.0.1"


# --- normal form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("198.51.100.7", "198.51.100.7"),
        (" 198.51.100.7 ", "198.51.100.7"),
        ("198.51.100.7:5678", "198.51.100.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:198.51.100.7", "198.51.100.7"),
    ],
)
def test_addresses_come_back_in_one_form(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected
    assert client_address("127.0.0.1", [text], PROXY) == expected


@pytest.mark.parametrize("text", ["", "unknown", "[::1", "1.2.3", "999.1.1.1", "a:b"])
def test_not_addresses(text: str) -> None:
    assert parse_address(text) is None


def test_an_ipv4_mapped_peer_is_matched_against_ipv4_proxies() -> None:
    assert client_address("::ffff:127.0.0.1", ["198.51.100.7"], PROXY) == "198.51.100.7"
    assert client_address("::ffff:203.0.113.9", ["198.51.100.7"], PROXY) == "203.0.113.9"


def test_an_unparseable_peer_is_passed_through() -> None:
    assert client_address("", ["198.51.100.7"], PROXY) == ""


# --- the trusted set --------------------------------------------------------------------


def test_networks_accept_addresses_and_blocks() -> None:
    parsed = networks(("127.0.0.1", "10.0.0.0/8", "2001:db8::/32", "192.168.1.7/24"))
    assert parsed == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.168.1.0/24"),
    )


def test_an_ipv4_mapped_block_is_an_ipv4_block() -> None:
    assert parse_network("::ffff:10.0.0.0/104") == ipaddress.ip_network("10.0.0.0/8")


@pytest.mark.parametrize("text", ["nginx", "10.0.0.0/33", ""])
def test_a_bad_network_is_named(text: str) -> None:
    with pytest.raises(ValueError, match="not an IP address or CIDR block"):
        parse_network(text)
