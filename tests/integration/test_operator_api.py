"""The store backend's calls: announcements, polls, products, kicks and room stats."""

from __future__ import annotations

import csv
import io

from tests.harness import Server


async def test_system_message_is_chat_with_seq_and_history(server: Server) -> None:
    await server.create_room("sys")
    viewer, _ = await server.member("sys", "v")
    await viewer.request("chat.send", room="sys", text="first", cid="1")
    status, body = await server.api(
        "POST", "/api/rooms/sys/messages", {"text": " Sale starts now! ", "cid": "a1"}
    )
    assert status == 201 and body["seq"] == 2
    event = await viewer.event("chat", where=lambda e: e["seq"] == 2)
    assert (
        event["role"] == "system"
        and event["text"] == "Sale starts now!"
        and event["name"] == "System"
    )
    again = await server.api(
        "POST", "/api/rooms/sys/messages", {"text": "Sale starts now!", "cid": "a1"}
    )
    assert again == (201, body)  # idempotent by cid
    history = await viewer.request("chat.history", room="sys")
    assert [m["seq"] for m in history["messages"]] == [1, 2]
    status, pinned = await server.api(
        "POST", "/api/rooms/sys/messages", {"text": "Use code LIVE10", "pin": True}
    )
    assert status == 201
    announcement = await viewer.event("announcement")
    assert announcement["message"]["text"] == "Use code LIVE10"
    _, snap = await server.member("sys", "late")
    assert snap["room"]["announcement"]["seq"] == pinned["seq"]
    assert (await server.api("POST", "/api/rooms/sys/messages", {"text": ""}))[0] == 400
    assert (await server.api("POST", "/api/rooms/nope/messages", {"text": "x"}))[0] == 404
    assert (
        await server.api(
            "POST",
            "/api/rooms/sys/messages",
            {"text": "x"},
            secret="wrong-secret-0123456789-0123456789",
        )
    )[0] == 401


async def test_backend_polls_products_and_kicks(server: Server) -> None:
    await server.create_room("ops")
    viewer, _ = await server.member("ops", "v")
    status, body = await server.api(
        "POST",
        "/api/rooms/ops/polls",
        {"question": "Size?", "options": ["S", "M"], "duration_s": 30},
    )
    assert status == 201 and body["poll"]["options"][0]["text"] == "S"
    assert (await viewer.event("poll.opened"))["poll"]["id"] == body["poll"]["id"]
    bad = await server.api(
        "POST", "/api/rooms/ops/polls", {"question": "?", "options": ["only one"]}
    )
    assert bad[0] == 400 and "options" in bad[1]["message"]
    status, _ = await server.api(
        "POST", "/api/rooms/ops/product", {"product": {"id": "p1", "title": "Kit", "price": 9.5}}
    )
    assert status == 200
    assert (await viewer.event("product.pinned"))["product"] == {
        "id": "p1",
        "title": "Kit",
        "price": "9.5",
    }
    assert (await server.api("POST", "/api/rooms/ops/product", {"product": None}))[0] == 200
    assert (await viewer.event("product.pinned"))["product"] is None
    assert (
        await server.api(
            "POST",
            "/api/rooms/ops/product",
            {"product": {"id": "p", "title": "t", "url": "javascript:x"}},
        )
    )[0] == 400
    assert (await server.api("POST", "/api/rooms/ops/kick", {"user": "ghost"}))[0] == 404
    assert (await server.api("POST", "/api/rooms/ops/kick", {"user": "v", "ban": True}))[0] == 204
    assert (await viewer.event("kicked"))["reason"] == "ban"
    rejoin = await viewer.call("join", room="ops", token=server.token("ops", "v"))
    assert rejoin["code"] == "banned"


async def test_stats_of_a_scripted_session(server: Server) -> None:
    await server.create_room("st", title="Stats")
    host, _ = await server.member("st", "h", "host")
    fans = [(await server.member("st", f"f{i}"))[0] for i in range(3)]
    for i, fan in enumerate(fans):
        await fan.request("chat.send", room="st", text="hi", cid=str(i))
        await fan.request("like", room="st", n=2)
    poll = (await host.request("poll.create", room="st", question="?", options=["a", "b"]))["poll"]
    await fans[0].request("poll.vote", room="st", poll=poll["id"], option=0)
    await fans[1].request("poll.vote", room="st", poll=poll["id"], option=1)
    await host.request("cohost.invite", room="st", user="f2")
    await fans[2].request("cohost.accept", room="st")
    await host.request("mod.mute", room="st", user="f1", seconds=10)
    await host.event("presence", where=lambda e: e["members"] == 4, timeout=5)
    status, stats = await server.api("GET", "/api/rooms/st/stats")
    assert status == 200
    assert (
        stats["chat"]["total"] == 3 and sum(b["messages"] for b in stats["chat"]["per_minute"]) == 3
    )
    assert stats["likes"] == 6
    assert stats["members"]["unique"] == 4 and stats["members"]["peak_concurrent"] == 4
    assert stats["polls"][0]["total"] == 2
    assert [s["user"] for s in stats["cohost_sessions"]] == ["f2"]
    assert stats["cohost_sessions"][0]["left_at"] is None
    assert [(a["action"], a["user"], a["by"]) for a in stats["moderation"]] == [("mute", "f1", "h")]
    status, text = await server.api("GET", "/api/rooms/st/stats?format=csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert status == 200 and ["chat", "total", "3"] in rows
    assert (await server.api("DELETE", "/api/rooms/st"))[0] == 204
    status, kept = await server.api("GET", "/api/rooms/st/stats")
    assert status == 200 and kept["ended_at"] is not None and kept["chat"]["total"] == 3
    assert kept["cohost_sessions"][0]["duration_s"] >= 0
    assert (await server.api("GET", "/api/rooms/never/stats"))[0] == 404


async def test_recording_setting_over_the_api_and_the_protocol(server: Server) -> None:
    await server.create_room("recset", record_when_live=True)
    host, snap = await server.member("recset", "h", "host")
    viewer, _ = await server.member("recset", "v")
    assert snap["room"]["record_when_live"] is True and snap["room"]["recording"] is False
    refused = await viewer.call("rec.auto", room="recset", on=False)
    assert refused["code"] == "forbidden"
    bad = await host.call("rec.auto", room="recset", on="no")
    assert bad["code"] == "bad_request"
    await host.request("rec.auto", room="recset", on=False)
    assert (await viewer.event("rec.auto")) == {"t": "rec.auto", "room": "recset", "on": False}
    status, body = await server.api(
        "POST", "/api/rooms/recset/recording", {"record_when_live": True}
    )
    assert (status, body) == (200, {"recording": False, "record_when_live": True})
    assert (await viewer.event("rec.auto"))["on"] is True
    _, late = await server.member("recset", "late")
    assert late["room"]["record_when_live"] is True
    path = "/api/rooms/recset/recording"
    assert (await server.api("POST", path, {}))[0] == 400
    assert (await server.api("POST", path, {"on": "yes"}))[0] == 400
    assert (await server.api("POST", "/api/rooms/nope/recording", {"on": True}))[0] == 404
    assert (await server.api("POST", "/api/rooms", {"title": "x", "record_when_live": 1}))[0] == 400
