"""Lucky draws end to end: commitment first, entries by rule, a result anyone can check."""

from __future__ import annotations

import hashlib

from roomserver.draws import verify
from tests.harness import Server


async def test_keyword_draw_is_verifiable(server: Server) -> None:
    await server.create_room("lucky")
    host, _ = await server.member("lucky", "h", "host")
    fans = [(await server.member("lucky", f"f{i}"))[0] for i in range(5)]
    started = await host.request(
        "draw.start",
        room="lucky",
        prize="Robot kit",
        winners=2,
        eligibility="keyword",
        keyword="Lucky",
        duration_s=5,
    )
    draw = started["draw"]
    announced = await fans[0].event("draw.started")
    assert announced["draw"]["commitment"] == draw["commitment"] and "seed" not in announced["draw"]
    for i, fan in enumerate(fans):
        text = "I feel LUCKY today" if i < 4 else "just watching"
        await fan.request("chat.send", room="lucky", text=text, cid="a")
        if i == 0:
            await fan.request("chat.send", room="lucky", text="lucky again", cid="b")
    entries = await host.event("draw.entries", where=lambda e: e["count"] == 4, timeout=3)
    assert entries["draw"] == draw["id"]
    _, snap = await server.member("lucky", "late")
    assert [d["id"] for d in snap["room"]["draws"]] == [draw["id"]]
    result = (await fans[1].event("draw.result", timeout=10))["draw"]
    assert result["eligible"] == ["f0", "f1", "f2", "f3"]  # one entry per user, sorted
    assert len(result["winners"]) == 2 and set(result["winners"]) <= set(result["eligible"])
    assert hashlib.sha256(result["seed"].encode()).hexdigest() == draw["commitment"]
    assert verify(result) == []
    _, after = await server.member("lucky", "later")
    assert (
        after["room"]["draws"] == [] and after["room"]["last_draw"]["winners"] == result["winners"]
    )


async def test_present_and_voted_draws(server: Server) -> None:
    await server.create_room("ppl")
    host, _ = await server.member("ppl", "h", "host")
    a, _ = await server.member("ppl", "a")
    poll = (await host.request("poll.create", room="ppl", question="?", options=["x", "y"]))["poll"]
    await a.request("poll.vote", room="ppl", poll=poll["id"], option=0)
    present = (
        await host.request(
            "draw.start", room="ppl", prize="Mug", winners=1, eligibility="present", duration_s=5
        )
    )["draw"]
    voted = (
        await host.request(
            "draw.start",
            room="ppl",
            prize="Cap",
            winners=3,
            eligibility="voted",
            poll=poll["id"],
            duration_s=5,
        )
    )["draw"]
    b, _ = await server.member("ppl", "b")  # joins during the present draw
    await b.request("poll.vote", room="ppl", poll=poll["id"], option=1)
    results = {}
    for _ in range(2):
        event = (await host.event("draw.result", timeout=10))["draw"]
        results[event["id"]] = event
    assert results[present["id"]]["eligible"] == ["a", "b", "h"]
    assert results[voted["id"]]["eligible"] == ["a", "b"]
    assert sorted(results[voted["id"]]["winners"]) == ["a", "b"]  # fewer entrants than prizes
    assert all(verify(r) == [] for r in results.values())


async def test_draw_rules_and_roles(server: Server) -> None:
    await server.create_room("rules")
    await server.member("rules", "h", "host")
    member, _ = await server.member("rules", "m")
    reply = await member.call(
        "draw.start", room="rules", prize="x", winners=1, eligibility="present", duration_s=5
    )
    assert reply["code"] == "forbidden"
    mod, _ = await server.member("rules", "mod", "moderator")
    missing = await mod.call(
        "draw.start",
        room="rules",
        prize="x",
        winners=1,
        eligibility="voted",
        poll="nope",
        duration_s=5,
    )
    assert missing["code"] == "not_found"
