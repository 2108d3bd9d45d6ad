"""Webhook signing, bodies, backoff and the bounded queue."""

from __future__ import annotations

import itertools

import orjson

from roomserver.webhooks import WebhookSender, backoff, payload, sign, verify

SECRET = "webhook-secret-0123456789-abcdefghijk"


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = b'{"id":"wh_1","event":"room.ended"}'
    header = sign(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(SECRET, body, header)
    assert not verify(SECRET, body + b" ", header)
    assert not verify("another-secret-0123456789-abcdefghijk", body, header)


def test_payload_carries_id_event_room_ts_and_data() -> None:
    first = orjson.loads(payload("moderation", "r1", 123, {"action": "kick"}))
    second = orjson.loads(payload("moderation", "r1", 123, {"action": "kick"}))
    assert first["event"] == "moderation" and first["room"] == "r1" and first["ts"] == 123
    assert first["data"] == {"action": "kick"}
    assert first["id"].startswith("wh_") and first["id"] != second["id"]


def test_backoff_doubles_up_to_the_cap() -> None:
    assert list(itertools.islice(backoff(0.5, 4.0), 6)) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_full_queue_drops_the_oldest_and_counts_it() -> None:
    sender = WebhookSender(["http://127.0.0.1:9/hook"], SECRET, queue_limit=3)
    for i in range(5):
        sender.send("member.joined", "r", i, {"user": str(i)})
    stats = sender.stats()["http://127.0.0.1:9/hook"]
    assert stats["queued"] == 3 and stats["dropped"] == 2


def test_no_endpoints_means_nothing_is_queued() -> None:
    sender = WebhookSender([], SECRET)
    sender.send("room.started", "r", 1, {})
    assert not sender.enabled and sender.stats() == {}
