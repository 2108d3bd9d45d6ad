"""Several node processes sharing rooms through a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import aiohttp
import pytest

from roomserver.auth import mint_token
from signaling.client import RequestFailed, RoomClient
from tests.harness import SECRET
from tests.nodes import NodeProcess, nodes, start_node
from tests.redis_server import RedisServer

pytestmark = pytest.mark.slow
_prefixes = itertools.count(1)


def token(room: str, user: str, role: str = "member") -> str:
    return mint_token(SECRET, room=room, user=user, name=user.upper(), role=role)


async def create_room(node: NodeProcess, room: str) -> None:
    headers = {"Authorization": f"Bearer {SECRET}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(node.url + "/api/rooms", json={"id": room, "title": room}, headers=headers) as r,
    ):
        assert r.status == 201, await r.text()


async def join(
    node: NodeProcess, room: str, user: str, role: str = "member", **extra: Any
) -> tuple[RoomClient, dict[str, Any]]:
    client = await node.connect()
    snapshot = await client.request("join", room=room, token=token(room, user, role), **extra)
    return client, snapshot


def redis_args(redis: RedisServer) -> tuple[str, ...]:
    return ("--redis", redis.url, "--redis-prefix", f"mn{next(_prefixes)}")


async def test_chat_from_every_node_reaches_all_in_one_order(redis_server: RedisServer) -> None:
    async with nodes(3, *redis_args(redis_server)) as cluster:
        await create_room(cluster[0], "launch")
        members = [
            (await join(node, "launch", f"m{i}-{k}"))[0]
            for i, node in enumerate(cluster)
            for k in range(2)
        ]
        senders = [
            (await join(node, "launch", f"s{i}", "moderator"))[0] for i, node in enumerate(cluster)
        ]

        async def send(index: int) -> list[int]:
            seqs = []
            for k in range(30):
                ok = await senders[index].request(
                    "chat.send", room="launch", text=f"{index}:{k}", cid=str(k)
                )
                seqs.append(ok["seq"])
            return seqs

        acked = await asyncio.gather(*(send(i) for i in range(3)))
        assert sorted(s for seqs in acked for s in seqs) == list(range(1, 91))
        orders = []
        for client in members:
            received = [await client.event("chat", timeout=10) for _ in range(90)]
            assert [e["seq"] for e in received] == list(range(1, 91))
            orders.append([(e["seq"], e["user"], e["text"]) for e in received])
        assert all(order == orders[0] for order in orders)
        for client in members + senders:
            await client.close()


async def test_resume_on_another_node_has_no_gap_and_no_duplicate(
    redis_server: RedisServer,
) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "resume")
        host, _ = await join(a, "resume", "h", "host")
        viewer, snap = await join(a, "resume", "v")
        seen = [m["seq"] for m in snap["history"]]
        for i in range(5):
            await host.request("chat.send", room="resume", text=str(i), cid=f"a{i}")
        seen += [(await viewer.event("chat"))["seq"] for _ in range(5)]
        await viewer.close()
        for i in range(7):
            await host.request("chat.send", room="resume", text=str(i), cid=f"b{i}")
        again, snap2 = await join(b, "resume", "v", since=seen[-1])
        assert snap2["gap"] is False
        seen += [m["seq"] for m in snap2["history"]]
        await host.request("chat.send", room="resume", text="live", cid="live")
        seen.append((await again.event("chat"))["seq"])
        assert seen == list(range(1, 14))
        await host.close()
        await again.close()


async def test_same_user_voting_on_two_nodes_counts_once(redis_server: RedisServer) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "votes")
        host, _ = await join(a, "votes", "h", "host")
        on_a, _ = await join(a, "votes", "same")
        on_b, _ = await join(b, "votes", "same")
        for round_ in range(15):
            poll = (
                await host.request(
                    "poll.create", room="votes", question=f"{round_}?", options=["x", "y"]
                )
            )["poll"]
            replies = await asyncio.gather(
                on_a.call("poll.vote", room="votes", poll=poll["id"], option=0),
                on_b.call("poll.vote", room="votes", poll=poll["id"], option=1),
                on_a.call("poll.vote", room="votes", poll=poll["id"], option=1),
                on_b.call("poll.vote", room="votes", poll=poll["id"], option=0),
            )
            assert [r["t"] for r in replies].count("ok") == 1, replies
            assert sorted(r.get("code", "") for r in replies) == [
                "",
                "already_voted",
                "already_voted",
                "already_voted",
            ]
            final = await host.request("poll.close", room="votes", poll=poll["id"])
            assert final["poll"]["total"] == 1
        for client in (host, on_a, on_b):
            await client.close()


async def test_a_user_on_two_nodes_is_one_member(redis_server: RedisServer) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "tabs")
        host, _ = await join(a, "tabs", "h", "host")
        on_a, _ = await join(a, "tabs", "same")
        on_b, snap = await join(b, "tabs", "same")  # a second tab, routed to the other node
        assert snap["room"]["members"] == 2
        other, snap = await join(b, "tabs", "other")
        assert snap["room"]["members"] == 3
        await on_a.close()  # one tab closed: the user is still here
        await host.event("presence", where=lambda e: e["members"] == 3, timeout=5)
        await other.close()
        await host.event("presence", where=lambda e: e["members"] == 2, timeout=5)
        await on_b.close()
        await host.event("presence", where=lambda e: e["members"] == 1, timeout=5)
        await host.close()


async def test_link_mic_and_moderation_across_nodes(redis_server: RedisServer) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "mic")
        host, _ = await join(a, "mic", "h", "host")
        fan, _ = await join(b, "mic", "fan")
        watcher, _ = await join(b, "mic", "w")
        await fan.request("cohost.request", room="mic")
        assert (await host.event("cohost.requested"))["user"] == "fan"
        await host.request("cohost.invite", room="mic", user="fan")
        assert (await fan.event("cohost.invited"))["by"] == "h"
        await fan.request("cohost.accept", room="mic")
        assert (await watcher.event("cohost.joined"))["user"] == "fan"
        _, snap = await join(a, "mic", "late")
        assert snap["room"]["cohosts"] == ["fan"] and snap["room"]["host"] == "h"
        await host.request("mod.mute", room="mic", user="w", seconds=60)
        assert (await watcher.event("muted"))["until"] > 0
        await asyncio.sleep(0.2)
        refused = await watcher.call("chat.send", room="mic", text="hi", cid="1")
        assert refused["code"] == "muted"
        await host.request("mod.ban", room="mic", user="w")
        assert (await watcher.event("kicked"))["reason"] == "ban"
        rejoin = await watcher.call("join", room="mic", token=token("mic", "w"))
        assert rejoin["code"] == "banned"
        for client in (host, fan, watcher):
            await client.close()


async def test_killed_node_loses_no_acknowledged_message(redis_server: RedisServer) -> None:
    # History keeps the last --history-size messages by design; keep more than the talkers
    # can send (3 x 1,000), so that trimming never hides a lost message or fakes one.
    args = (*redis_args(redis_server), "--history-size", "10000")
    async with nodes(1, *args) as (survivor,):
        doomed = await start_node("doomed", *args)
        try:
            await create_room(survivor, "crash")
            observer, _ = await join(survivor, "crash", "obs", "moderator")
            talkers = [(await join(doomed, "crash", f"t{i}", "moderator"))[0] for i in range(3)]
            members = [(await join(doomed, "crash", f"m{i}"))[0] for i in range(4)]
            await observer.event("presence", where=lambda e: e["members"] == 8, timeout=5)
            acked: list[int] = []

            async def talk(client: RoomClient, index: int) -> None:
                for k in range(1000):
                    try:
                        ok = await client.request(
                            "chat.send",
                            room="crash",
                            text=f"{index}:{k}",
                            cid=f"{index}:{k}",
                            timeout=2,
                        )
                    except (RequestFailed, ConnectionError, TimeoutError, OSError):
                        return
                    acked.append(ok["seq"])

            tasks = [asyncio.create_task(talk(c, i)) for i, c in enumerate(talkers)]
            await asyncio.sleep(0.5)
            doomed.kill()
            killed_at = time.monotonic()
            await asyncio.gather(*tasks)
            assert len(acked) > 10
            history = await observer.request("chat.history", room="crash", after=0, limit=200)
            held = [m["seq"] for m in history["messages"]]
            for seq in range(200, max(acked) + 1, 200):
                page = await observer.request("chat.history", room="crash", after=seq, limit=200)
                held += [m["seq"] for m in page["messages"]]
            assert set(acked) <= set(held)
            assert held == sorted(set(held))  # each message once, in order
            # The dead node's 7 members drop out of the count within 15 s.
            await observer.event("presence", where=lambda e: e["members"] == 1, timeout=16)
            assert time.monotonic() - killed_at < 16
            # A member of the dead node resumes on the survivor without loss.
            received = [e["seq"] for e in members[0].of_type("chat")]
            assert received == list(range(1, len(received) + 1))
            back, snap = await join(survivor, "crash", "m0", since=received[-1])
            resumed = received + [m["seq"] for m in snap["history"]]
            assert snap["gap"] is (max(held) - received[-1] > 500)
            if not snap["gap"]:
                assert resumed == held
            for client in [observer, back]:
                await client.close()
            for client in talkers + members:
                await client.close()
        finally:
            doomed.kill()
            await doomed.process.wait()


async def test_redis_restart_gives_unavailable_then_full_service(tmp_path: Any) -> None:
    redis = RedisServer()
    redis.start()
    try:
        async with nodes(1, "--redis", redis.url, "--redis-prefix", "restart") as (node,):
            await create_room(node, "rr")
            # The room must survive the restart: ask Redis to write a snapshot first.
            host, _ = await join(node, "rr", "h", "host")
            viewer, _ = await join(node, "rr", "v")
            assert (await host.request("chat.send", room="rr", text="before", cid="1"))["seq"] == 1
            await _redis_command(redis.port, b"SAVE")
            redis.stop()
            outcomes = set()
            for i in range(5):
                reply = await host.call("chat.send", room="rr", text="down", cid=f"d{i}")
                outcomes.add(reply.get("code", reply["t"]))
            assert outcomes == {"unavailable"}
            redis.start()
            deadline = time.monotonic() + 15
            while True:
                reply = await host.call("chat.send", room="rr", text="after", cid="after")
                if reply["t"] == "ok":
                    break
                assert reply["code"] == "unavailable"
                assert time.monotonic() < deadline, "service did not come back"
                await asyncio.sleep(0.2)
            assert reply["seq"] == 2
            event = await viewer.event("chat", where=lambda e: e["seq"] == 2, timeout=10)
            assert event["text"] == "after"
            for client in (host, viewer):
                await client.close()
    finally:
        redis.cleanup()


async def _redis_command(port: int, command: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(command + b"\r\n")
    await writer.drain()
    await reader.readline()
    writer.close()


async def test_stats_are_correct_across_nodes(redis_server: RedisServer) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "stats")
        host, _ = await join(a, "stats", "h", "host")
        fans = [(await join(node, "stats", f"f{i}"))[0] for i, node in enumerate((a, b, b))]
        for i, fan in enumerate(fans):
            await fan.request("chat.send", room="stats", text="hi", cid=str(i))
            await fan.request("like", room="stats", n=5)
        poll = (await host.request("poll.create", room="stats", question="?", options=["x", "y"]))[
            "poll"
        ]
        for i, fan in enumerate(fans):
            await fan.request("poll.vote", room="stats", poll=poll["id"], option=i % 2)
        await host.request("cohost.invite", room="stats", user="f1")
        await fans[1].request("cohost.accept", room="stats")
        await host.request("cohost.end", room="stats", user="f1")
        await host.request("mod.kick", room="stats", user="f2")
        await host.event("presence", where=lambda e: e["members"] == 3, timeout=8)
        reports = []
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with aiohttp.ClientSession() as http:
            for node in (a, b):
                async with http.get(node.url + "/api/rooms/stats/stats", headers=headers) as r:
                    assert r.status == 200
                    reports.append(await r.json())
        for report in reports:
            assert report["chat"]["total"] == 3
            assert report["likes"] == 15
            assert report["members"]["unique"] == 4
            assert report["members"]["peak_concurrent"] == 4
            assert report["polls"][0]["total"] == 3
            assert [(s["user"], s["left_at"] is not None) for s in report["cohost_sessions"]] == [
                ("f1", True)
            ]
            assert [m["action"] for m in report["moderation"]] == ["kick"]
        assert (
            reports[0]["chat"] == reports[1]["chat"]
            and reports[0]["members"]["unique"] == reports[1]["members"]["unique"]
        )
        for client in [host, *fans]:
            await client.close()


async def test_killed_node_during_votes_and_likes_counts_each_acknowledged_once(
    redis_server: RedisServer,
) -> None:
    args = redis_args(redis_server)
    async with nodes(1, *args) as (survivor,):
        doomed = await start_node("doomed-votes", *args)
        try:
            await create_room(survivor, "votes-crash")
            host, _ = await join(survivor, "votes-crash", "h", "host")
            poll = (
                await host.request(
                    "poll.create", room="votes-crash", question="?", options=["a", "b"]
                )
            )["poll"]
            voters = [(await join(doomed, "votes-crash", f"v{i}"))[0] for i in range(60)]
            acked_votes: list[int] = []
            acked_likes: list[int] = []

            async def vote(index: int, client: RoomClient) -> None:
                await asyncio.sleep(index * 0.01)
                try:
                    await client.request(
                        "poll.vote",
                        room="votes-crash",
                        poll=poll["id"],
                        option=index % 2,
                        timeout=2,
                    )
                    acked_votes.append(index)
                    for _ in range(20):
                        await client.request("like", room="votes-crash", n=3, timeout=2)
                        acked_likes.append(3)
                except (RequestFailed, ConnectionError, TimeoutError, OSError):
                    return

            tasks = [asyncio.create_task(vote(i, c)) for i, c in enumerate(voters)]
            await asyncio.sleep(0.35)
            doomed.kill()
            await asyncio.gather(*tasks)
            assert 0 < len(acked_votes) < 60  # the kill landed mid-storm
            final = await host.request("poll.close", room="votes-crash", poll=poll["id"])
            # Every acknowledged vote is counted, exactly once; a vote whose answer was
            # lost with the node may also be counted, but never twice.
            assert len(acked_votes) <= final["poll"]["total"] <= 60
            headers = {"Authorization": f"Bearer {SECRET}"}
            async with (
                aiohttp.ClientSession() as http,
                http.get(survivor.url + "/api/rooms/votes-crash", headers=headers) as r,
            ):
                likes = (await r.json())["likes"]
            assert sum(acked_likes) <= likes <= sum(acked_likes) + 3 * len(voters)
            # Nobody can vote twice after the crash: each voter's retry on the survivor fails.
            for index in acked_votes[:10]:
                again, _ = await join(survivor, "votes-crash", f"v{index}")
                reply = await again.call("poll.vote", room="votes-crash", poll=poll["id"], option=0)
                assert reply["code"] == "poll_closed"
                await again.close()
            await host.close()
            for client in voters:
                await client.close()
        finally:
            doomed.kill()
            await doomed.process.wait()


async def test_two_nodes_over_three_shards(redis_shards: list[RedisServer]) -> None:
    urls = ",".join(s.url for s in redis_shards)
    async with nodes(2, "--redis", urls, "--redis-prefix", f"mn{next(_prefixes)}") as (a, b):
        rooms = [f"shard-{i}" for i in range(6)]
        clients = []
        for room in rooms:
            await create_room(a, room)
            sender, _ = await join(a, room, "s", "moderator")
            watcher, _ = await join(b, room, "w")
            clients.append((room, sender, watcher))
        for room, sender, _ in clients:
            for k in range(10):
                await sender.request("chat.send", room=room, text=str(k), cid=str(k))
        for room, sender, watcher in clients:
            got = [await watcher.event("chat", timeout=10) for _ in range(10)]
            assert [(e["room"], e["seq"]) for e in got] == [(room, k) for k in range(1, 11)]
            await sender.close()
            await watcher.close()


async def test_one_draw_entry_per_user_across_nodes(redis_server: RedisServer) -> None:
    async with nodes(2, *redis_args(redis_server)) as (a, b):
        await create_room(a, "draw")
        host, _ = await join(a, "draw", "h", "host")
        same_a, _ = await join(a, "draw", "same")
        same_b, _ = await join(b, "draw", "same")
        other, _ = await join(b, "draw", "other")
        draw = (
            await host.request(
                "draw.start",
                room="draw",
                prize="Kit",
                winners=1,
                eligibility="keyword",
                keyword="win",
                duration_s=5,
            )
        )["draw"]
        await asyncio.gather(
            same_a.request("chat.send", room="draw", text="win", cid="1"),
            same_b.request("chat.send", room="draw", text="WIN!", cid="2"),
            other.request("chat.send", room="draw", text="to win", cid="3"),
        )
        result = (await other.event("draw.result", timeout=12))["draw"]
        assert result["id"] == draw["id"] and result["eligible"] == ["other", "same"]
        await asyncio.sleep(0.3)
        assert len(other.of_type("draw.result")) == 0  # announced once, by one node
        for client in (host, same_a, same_b, other):
            await client.close()


async def test_a_node_whose_members_joined_later_closes_a_timed_poll(
    redis_server: RedisServer,
) -> None:
    """The node that opened a timed poll dies; a node whose member joined afterwards
    (and so never saw ``poll.opened``) closes it on time."""
    args = redis_args(redis_server)
    async with nodes(1, *args) as (survivor,):
        doomed = await start_node("opener", *args)
        try:
            await create_room(doomed, "timed")
            host, _ = await join(doomed, "timed", "h", "host")
            poll = (
                await host.request(
                    "poll.create", room="timed", question="Now?", options=["a", "b"], duration_s=3
                )
            )["poll"]
            late, snapshot = await join(survivor, "timed", "late")
            assert [p["id"] for p in snapshot["polls"]] == [poll["id"]]
            doomed.kill()
            closed = await late.event("poll.closed", timeout=8)
            assert closed["poll"]["id"] == poll["id"] and closed["poll"]["open"] is False
            await late.close()
        finally:
            doomed.kill()
            await doomed.process.wait()
