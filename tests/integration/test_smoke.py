from tests.harness import Server


async def test_join_and_chat(server: Server) -> None:
    await server.create_room("r1", welcome="hi")
    host, snap = await server.member("r1", "h", "host")
    assert snap["me"]["role"] == "host"
    viewer, _ = await server.member("r1", "v")
    ok = await viewer.request("chat.send", room="r1", text=" hello ", cid="c1")
    assert ok["seq"] == 1
    event = await host.event("chat")
    assert event["text"] == "hello" and event["seq"] == 1
