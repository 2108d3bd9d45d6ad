"""Polls, likes and pinned products over real sockets."""

from __future__ import annotations

import asyncio

from tests.harness import Server


async def test_poll_lifecycle(server: Server) -> None:
    await server.create_room("poll")
    host, _ = await server.member("poll", "h", "host")
    a, _ = await server.member("poll", "a")
    b, _ = await server.member("poll", "b")
    created = await host.request(
        "poll.create", room="poll", question="Which colour?", options=["red", "blue", "green"]
    )
    poll = created["poll"]
    assert poll["open"] is True and poll["total"] == 0 and "closes_at" not in poll
    opened = await a.event("poll.opened")
    assert opened["poll"]["id"] == poll["id"]
    await a.request("poll.vote", room="poll", poll=poll["id"], option=1)
    await b.request("poll.vote", room="poll", poll=poll["id"], option=1)
    again = await a.call("poll.vote", room="poll", poll=poll["id"], option=0)
    assert again["code"] == "already_voted"
    out_of_range = await b.call("poll.vote", room="poll", poll=poll["id"], option=3)
    assert out_of_range["code"] == "bad_request"
    missing = await b.call("poll.vote", room="poll", poll="nope", option=0)
    assert missing["code"] == "not_found"
    tally = await host.event("poll.tally", where=lambda e: e["total"] == 2, timeout=3)
    assert tally["votes"] == [0, 2, 0] and tally["poll"] == poll["id"]
    _, late = await server.member("poll", "a")
    assert late["polls"][0]["my_vote"] == 1 and late["polls"][0]["total"] == 2
    final = await host.request("poll.close", room="poll", poll=poll["id"])
    assert final["poll"]["open"] is False and final["poll"]["total"] == 2
    closed = await b.event("poll.closed")
    assert closed["poll"]["options"][1] == {"text": "blue", "votes": 2}
    after = await host.call("poll.vote", room="poll", poll=poll["id"], option=0)
    assert after["code"] == "poll_closed"
    closed_again = await host.request("poll.close", room="poll", poll=poll["id"])
    assert closed_again["poll"]["total"] == 2
    await asyncio.sleep(0.05)
    assert b.of_type("poll.closed") == []  # closing twice announces once


async def test_poll_auto_closes_after_duration(server: Server) -> None:
    await server.create_room("auto")
    host, _ = await server.member("auto", "h", "host")
    viewer, _ = await server.member("auto", "v")
    created = await host.request(
        "poll.create", room="auto", question="Quick?", options=["y", "n"], duration_s=1
    )
    assert created["poll"]["closes_at"] > 0
    closed = await viewer.event("poll.closed", timeout=3)
    assert closed["poll"]["id"] == created["poll"]["id"] and closed["poll"]["open"] is False
    late = await viewer.call("poll.vote", room="auto", poll=created["poll"]["id"], option=0)
    assert late["code"] == "poll_closed"


async def test_tallies_are_coalesced_and_final_state_is_sent(server: Server) -> None:
    await server.create_room("storm")
    host, _ = await server.member("storm", "h", "host")
    voters = [(await server.member("storm", f"v{i}"))[0] for i in range(40)]
    poll = (await host.request("poll.create", room="storm", question="?", options=["a", "b"]))[
        "poll"
    ]
    await asyncio.gather(
        *(
            v.request("poll.vote", room="storm", poll=poll["id"], option=i % 2)
            for i, v in enumerate(voters)
        )
    )
    last = await host.event("poll.tally", where=lambda e: e["total"] == 40, timeout=3)
    assert last["votes"] == [20, 20]
    assert len(host.of_type("poll.tally")) <= 3  # 40 votes, at most 5 tallies per second


async def test_member_cannot_create_or_close_polls(server: Server) -> None:
    await server.create_room("pf")
    member, _ = await server.member("pf", "m")
    reply = await member.call("poll.create", room="pf", question="?", options=["a", "b"])
    assert reply["code"] == "forbidden"
    assert (await member.call("poll.close", room="pf", poll="x"))["code"] == "forbidden"


async def test_likes_are_counted_and_coalesced(server: Server) -> None:
    await server.create_room("likes")
    host, _ = await server.member("likes", "h", "host")
    fans = [(await server.member("likes", f"f{i}"))[0] for i in range(10)]
    await asyncio.gather(*(f.request("like", room="likes", n=5) for f in fans))
    await asyncio.gather(*(f.request("like", room="likes") for f in fans))
    last = await host.event("likes", where=lambda e: e["total"] == 60, timeout=3)
    assert last["room"] == "likes"
    assert len(host.of_type("likes")) <= 2  # at most 2 per second
    bad = await fans[0].call("like", room="likes", n=51)
    assert bad["code"] == "bad_request"
    status, body = await server.api("GET", "/api/rooms/likes")
    assert status == 200
    assert body["likes"] == 60


async def test_pin_and_unpin_product(server: Server) -> None:
    await server.create_room("shop")
    mod, _ = await server.member("shop", "mod", "moderator")
    viewer, _ = await server.member("shop", "v")
    product = {
        "id": "p9",
        "title": "Robot kit",
        "price": "39.90",
        "currency": "EUR",
        "url": "https://shop.example/p9",
        "image": "https://shop.example/p9.jpg",
    }
    await mod.request("product.pin", room="shop", product=product)
    assert (await viewer.event("product.pinned"))["product"] == product
    _, snap = await server.member("shop", "late")
    assert snap["room"]["pinned"] == product
    await mod.request("product.unpin", room="shop")
    assert (await viewer.event("product.pinned"))["product"] is None
    evil = dict(product, url="javascript:alert(1)")
    assert (await mod.call("product.pin", room="shop", product=evil))["code"] == "bad_request"
    assert (await viewer.call("product.pin", room="shop", product=product))["code"] == "forbidden"
