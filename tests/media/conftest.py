"""Media tests: real aiortc peers, only inside a private network namespace.

Tests marked ``netns`` open WebRTC peer connections. They are skipped unless
``ROOMSERVER_NETNS=1`` says we run inside ``unshare --net`` with only ``lo``
up, where no packet can leave the machine; ``test_in_netns.py`` starts such a
run from a plain ``pytest``. The other tests here need no network.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from media.peers import Publisher, Viewer
from media.sfu import SFU
from signaling.client import RoomClient
from tests.harness import Server, make_settings, running_server

IN_NETNS = os.environ.get("ROOMSERVER_NETNS") == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns: opens WebRTC peers; runs only in a network namespace"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_NETNS:
        return
    skip = pytest.mark.skip(
        reason="WebRTC: runs inside unshare --net (tests/media/test_in_netns.py)"
    )
    for item in items:
        if item.get_closest_marker("netns") is not None:
            item.add_marker(skip)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A server whose SFU gathers and accepts 127.0.0.1 only."""
    async with running_server(make_settings(rtc_ip=("127.0.0.1",))) as srv:
        yield srv


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Wait for a condition on state that offers nothing to wait on (peer counts, frames)."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polled: aiortc and the SFU expose no event
            await asyncio.sleep(0.02)


def sfu_of(server: Server) -> SFU:
    media = server.node.media
    assert isinstance(media, SFU)
    return media


async def publish(
    client: RoomClient, room: str, peers: list[Publisher | Viewer], **kw: Any
) -> Publisher:
    """A synthetic publisher, negotiated through ``rtc.publish`` on ``client``."""
    publisher = Publisher(**kw)
    peers.append(publisher)
    answer = await client.request("rtc.publish", room=room, sdp=await publisher.offer())
    await publisher.accept(answer["sdp"])
    return publisher


async def subscribe(
    client: RoomClient, room: str, publisher: str, peers: list[Publisher | Viewer], **kw: Any
) -> Viewer:
    """A synthetic viewer of ``publisher``, negotiated through ``rtc.subscribe``."""
    viewer = Viewer(**kw)
    peers.append(viewer)
    sdp = await viewer.offer()
    answer = await client.request("rtc.subscribe", room=room, publisher=publisher, sdp=sdp)
    await viewer.accept(answer["sdp"])
    return viewer


@pytest.fixture
async def peers() -> AsyncIterator[list[Publisher | Viewer]]:
    """Peers a test made; closed after it, whatever happened."""
    made: list[Publisher | Viewer] = []
    yield made
    for peer in made:
        await peer.close()
