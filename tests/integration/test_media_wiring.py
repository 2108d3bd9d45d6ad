"""The app builds the SFU as the node's media backend; no WebRTC peer is opened here."""

from __future__ import annotations

from media.sfu import SFU
from tests.harness import make_settings, running_server


async def test_the_node_gets_the_sfu_and_media_requests_reach_it() -> None:
    async with running_server(make_settings(rtc_ip=("127.0.0.1",))) as srv:
        assert isinstance(srv.node.media, SFU)
        await srv.create_room("w")
        viewer, _ = await srv.member("w", "v")
        reply = await viewer.call("rtc.subscribe", room="w", publisher="nobody", sdp="v=0\r\n")
        assert reply["code"] == "not_found"
        reply = await viewer.call("rtc.unsubscribe", room="w", publisher="nobody")
        assert reply["t"] == "ok"


async def test_media_off_answers_unavailable() -> None:
    async with running_server(make_settings(media=False)) as srv:
        assert srv.node.media is None
        await srv.create_room("off")
        host, _ = await srv.member("off", "h", "host")
        reply = await host.call("rtc.publish", room="off", sdp="v=0\r\n")
        assert reply["code"] == "unavailable"
        for t, fields in (("rec.start", {}), ("rec.auto", {"on": True})):
            reply = await host.call(t, room="off", **fields)
            assert reply["code"] == "unavailable", t
        status, body = await srv.api("POST", "/api/rooms/off/recording", {"on": True})
        assert (status, body["code"]) == (503, "unavailable")
        status, body = await srv.api("POST", "/api/rooms", {"title": "x", "record_when_live": True})
        assert (status, body["code"]) == (503, "unavailable")
        await host.request("rec.auto", room="off", on=False)  # turning it off needs no media
