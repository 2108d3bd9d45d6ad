"""Chat over real sockets: sequencing, idempotency, history, reads, limits and filters."""

from __future__ import annotations

import asyncio

import pytest

from signaling.client import MSGPACK, RequestFailed
from tests.harness import Server, make_settings, running_server


async def test_retry_with_same_cid_gets_first_result_and_no_broadcast(server: Server) -> None:
    await server.create_room("idem")
    host, _ = await server.member("idem", "h", "host")
    viewer, _ = await server.member("idem", "v")
    first = await viewer.request("chat.send", room="idem", text="hello", cid="same")
    again = await viewer.request("chat.send", room="idem", text="hello", cid="same")
    assert (again["seq"], again["ts"]) == (first["seq"], first["ts"])
    await host.request("chat.send", room="idem", text="next", cid="same")  # other user, own cid
    events = [await host.event("chat") for _ in range(2)]
    assert [e["seq"] for e in events] == [1, 2]
    await asyncio.sleep(0.05)
    assert host.of_type("chat") == []


async def test_concurrent_senders_are_sequenced_and_ordered_for_everyone(server: Server) -> None:
    await server.create_room("order")
    host, _ = await server.member("order", "h", "host")
    senders = [(await server.member("order", f"s{i}", "moderator"))[0] for i in range(8)]
    watcher, _ = await server.member("order", "w", subprotocol=MSGPACK)

    async def send_many(index: int) -> list[int]:
        seqs = []
        for k in range(25):
            ok = await senders[index].request(
                "chat.send", room="order", text=f"{index}:{k}", cid=f"{index}-{k}"
            )
            seqs.append(ok["seq"])
        return seqs

    results = await asyncio.gather(*(send_many(i) for i in range(8)))
    accepted = sorted(s for seqs in results for s in seqs)
    assert accepted == list(range(1, 201))
    for client in (host, watcher):
        received = [await client.event("chat", timeout=10) for _ in range(200)]
        assert [e["seq"] for e in received] == list(range(1, 201))
        # Each sender's own messages arrive in the order it sent them.
        for index in range(8):
            mine = [int(e["text"].split(":")[1]) for e in received if e["user"] == f"s{index}"]
            assert mine == list(range(25))


async def test_history_paging(server: Server) -> None:
    await server.create_room("hist")
    host, _ = await server.member("hist", "h", "host")
    for i in range(1, 31):
        await host.request("chat.send", room="hist", text=str(i), cid=str(i))
    latest = await host.request("chat.history", room="hist", limit=5)
    assert [m["seq"] for m in latest["messages"]] == [26, 27, 28, 29, 30]
    before = await host.request("chat.history", room="hist", before=10, limit=3)
    assert [m["seq"] for m in before["messages"]] == [7, 8, 9]
    after = await host.request("chat.history", room="hist", after=27, limit=10)
    assert [m["seq"] for m in after["messages"]] == [28, 29, 30]
    default = await host.request("chat.history", room="hist", before=31)
    assert len(default["messages"]) == 30 and default["messages"][0]["seq"] == 1
    both = await host.call("chat.history", room="hist", before=5, after=1)
    assert both["code"] == "bad_request"
    too_many = await host.call("chat.history", room="hist", limit=201)
    assert too_many["code"] == "bad_request"


async def test_history_reports_gap_beyond_what_is_held() -> None:
    async with running_server(make_settings(history_size=10)) as srv:
        await srv.create_room("hg")
        host, _ = await srv.member("hg", "h", "host")
        for i in range(1, 26):
            await host.request("chat.send", room="hg", text=str(i), cid=str(i))
        page = await host.request("chat.history", room="hg", before=18, limit=10)
        assert [m["seq"] for m in page["messages"]] == list(range(16, 18))
        assert page["gap"] is True
        whole = await host.request("chat.history", room="hg", after=20, limit=10)
        assert whole["gap"] is False


async def test_read_marks_and_readers(server: Server) -> None:
    await server.create_room("reads")
    host, _ = await server.member("reads", "h", "host")
    a, _ = await server.member("reads", "a")
    b, _ = await server.member("reads", "b")
    for i in range(1, 6):
        await host.request("chat.send", room="reads", text=str(i), cid=str(i))
    await a.request("chat.read", room="reads", seq=5)
    await b.request("chat.read", room="reads", seq=3)
    await b.request("chat.read", room="reads", seq=2)  # marks never move back
    assert (await host.request("chat.readers", room="reads", seq=3))["count"] == 2
    assert (await host.request("chat.readers", room="reads", seq=4))["count"] == 1
    assert (await host.request("chat.readers", room="reads", seq=6))["count"] == 0
    beyond = await a.call("chat.read", room="reads", seq=99)
    assert beyond["code"] == "bad_request"


@pytest.mark.parametrize(
    ("text", "code"), [("   ", "bad_request"), ("x" * 2001, "bad_request"), (5, "bad_request")]
)
async def test_chat_text_is_validated(server: Server, text: object, code: str) -> None:
    await server.create_room("val")
    client, _ = await server.member("val", "v")
    reply = await client.call("chat.send", room="val", text=text, cid="c")
    assert reply["code"] == code
    assert (await client.request("chat.send", room="val", text="x" * 2000, cid="ok"))["seq"] == 1


async def test_members_are_rate_limited_and_staff_are_not() -> None:
    async with running_server(make_settings(chat_rate=1, chat_burst=3)) as srv:
        await srv.create_room("rl")
        host, _ = await srv.member("rl", "h", "host")
        member, _ = await srv.member("rl", "m")
        for i in range(3):
            await member.request("chat.send", room="rl", text=str(i), cid=str(i))
        limited = await member.call("chat.send", room="rl", text="x", cid="x")
        assert limited["code"] == "rate_limited"
        assert 0 < limited["retry_after_ms"] <= 1000
        for i in range(20):
            await host.request("chat.send", room="rl", text=str(i), cid=f"h{i}")
        await asyncio.sleep(limited["retry_after_ms"] / 1000 + 0.05)
        assert (await member.request("chat.send", room="rl", text="x", cid="x"))["seq"] == 24


async def test_word_filter_blocks_members_only() -> None:
    async with running_server(make_settings(words=("spamword", "垃圾"))) as srv:
        await srv.create_room("wf")
        host, _ = await srv.member("wf", "h", "host")
        member, _ = await srv.member("wf", "m")
        blocked = await member.call("chat.send", room="wf", text="buy SPAMWORD now", cid="1")
        assert blocked["code"] == "blocked"
        cjk = await member.call("chat.send", room="wf", text="这是垃圾", cid="2")
        assert cjk["code"] == "blocked"
        assert (await member.request("chat.send", room="wf", text="fine text", cid="3"))["seq"]
        assert (await host.request("chat.send", room="wf", text="spamword", cid="4"))["seq"]


async def test_repeated_violations_auto_mute() -> None:
    settings = make_settings(words=("bad",), auto_mute_strikes=5, auto_mute_seconds=600)
    async with running_server(settings) as srv:
        await srv.create_room("am")
        member, _ = await srv.member("am", "m")
        codes = [
            (await member.call("chat.send", room="am", text="bad", cid=str(i)))["code"]
            for i in range(5)
        ]
        assert codes == ["blocked"] * 4 + ["muted"]
        muted = await member.event("muted")
        assert muted["room"] == "am" and muted["until"] > 0
        after = await member.call("chat.send", room="am", text="good", cid="g")
        assert after["code"] == "muted" and after["until"] == muted["until"]


async def test_moderator_mute_expires(server: Server) -> None:
    await server.create_room("mute")
    mod, _ = await server.member("mute", "mod", "moderator")
    member, _ = await server.member("mute", "m")
    await mod.request("mod.mute", room="mute", user="m", seconds=1)
    event = await member.event("muted")
    refused = await member.call("chat.send", room="mute", text="hi", cid="1")
    assert refused["code"] == "muted" and refused["until"] == event["until"]
    assert (await member.request("like", room="mute"))["t"] == "ok"  # only chat is barred
    await asyncio.sleep(1.1)
    assert (await member.request("chat.send", room="mute", text="hi", cid="1"))["seq"] == 1


async def test_delete_removes_from_history_and_tells_everyone(server: Server) -> None:
    await server.create_room("del")
    mod, _ = await server.member("del", "mod", "moderator")
    viewer, _ = await server.member("del", "v")
    for i in range(1, 4):
        await viewer.request("chat.send", room="del", text=str(i), cid=str(i))
    await mod.request("mod.delete", room="del", seq=2)
    deleted = await viewer.event("chat.deleted")
    assert deleted == {"t": "chat.deleted", "room": "del", "seq": 2}
    history = await viewer.request("chat.history", room="del")
    assert [m["seq"] for m in history["messages"]] == [1, 3]
    assert history["gap"] is False
    again = await mod.call("mod.delete", room="del", seq=2)
    assert again["code"] == "not_found"
    _, snap = await server.member("del", "late", since=0)
    assert [m["seq"] for m in snap["history"]] == [1, 3] and snap["gap"] is False


async def test_member_cannot_delete(server: Server) -> None:
    await server.create_room("nodel")
    member, _ = await server.member("nodel", "m")
    await member.request("chat.send", room="nodel", text="x", cid="1")
    reply = await member.call("mod.delete", room="nodel", seq=1)
    assert reply["code"] == "forbidden"


async def test_rate_limit_error_does_not_lose_accepted_messages() -> None:
    async with running_server(make_settings(chat_rate=2, chat_burst=2)) as srv:
        await srv.create_room("keep")
        member, _ = await srv.member("keep", "m")
        accepted = []
        for i in range(6):
            try:
                accepted.append(
                    (await member.request("chat.send", room="keep", text=str(i), cid=str(i)))["seq"]
                )
            except RequestFailed as exc:
                assert exc.code == "rate_limited"
        history = await member.request("chat.history", room="keep")
        assert [m["seq"] for m in history["messages"]] == accepted == [1, 2]
