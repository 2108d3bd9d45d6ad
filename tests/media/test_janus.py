"""The bench's Janus baseline (media/janus.py): its configuration, and real media through it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from media import janus
from media.peers import Publisher, Viewer
from tests.media.conftest import until
from tests.media.test_forwarding import assert_in_order

needs_janus = pytest.mark.skipif(
    not janus.available(), reason="no janus binary (.ci/run installs Debian's janus)"
)


def test_the_configuration_keeps_janus_on_its_veth_with_videoroom_and_http_only(
    tmp_path: Path,
) -> None:
    core = janus.write_config(tmp_path, 18123).read_text()
    assert f'ice_enforce_list = "{janus.VETH}"' in core
    assert f'configs_folder = "{tmp_path}"' in core
    disabled = core.split("plugins: {")[1].split("}")[0]
    assert "libjanus_streaming.so" in disabled and "videoroom" not in disabled
    http = (tmp_path / "janus.transport.http.jcfg").read_text()
    assert "port = 18123" in http and 'ip = "127.0.0.1"' in http
    assert (tmp_path / "janus.plugin.videoroom.jcfg").exists()


@needs_janus
@pytest.mark.netns
async def test_a_viewer_of_janus_decodes_the_publisher_in_order(
    peers: list[Publisher | Viewer],
) -> None:
    port = janus.free_port()
    async with janus.running(port), aiohttp.ClientSession() as http:
        session = await janus.JanusSession.create(http, f"http://127.0.0.1:{port}/janus")
        try:
            await janus.create_room(session, 800_000)
            publisher = Publisher()
            peers.append(publisher)
            await publisher.accept(await janus.publish(session, await publisher.offer()))
            # Janus offers the feed to subscribers once the publisher's media is up.
            await until(lambda: publisher.video.count >= 10, timeout=10)
            viewer = Viewer()
            peers.append(viewer)
            handle, offer = await janus.subscribe_offer(session)
            assert "a=candidate:" in offer and " 127.0.0.1 " in offer  # gathered on its veth
            await janus.start(session, handle, await viewer.answer(offer))
            await viewer.wait_frames(60, timeout=15)
            assert_in_order(viewer.got.numbers, 60)
            assert viewer.got.numbers[0] > 0  # joined mid-stream, at a keyframe Janus asked for
        finally:
            await session.close()


@needs_janus
@pytest.mark.netns
async def test_a_request_janus_refuses_raises_its_error() -> None:
    port = janus.free_port()
    async with janus.running(port), aiohttp.ClientSession() as http:
        session = await janus.JanusSession.create(http, f"http://127.0.0.1:{port}/janus")
        try:
            with pytest.raises(janus.JanusError, match="No such room"):
                await janus.subscribe_offer(session)  # no room created
        finally:
            await session.close()
