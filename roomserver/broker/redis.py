"""The Redis broker: many nodes share every room through one Redis.

Keys (``P`` is the configured prefix, ``R`` the room id; ``{R}`` is a hash tag
so one room's keys stay together under Redis Cluster):

=================================  ============================================
``P:{R}:info``                     hash: title, welcome, created_at (existence)
``P:{R}:seq``                      chat seq counter
``P:{R}:chat``                     stream, entry id ``seq-0``, capped (MAXLEN)
``P:{R}:del``                      zset of deleted seqs (pruned below history)
``P:{R}:cid:<len>:<user>:<cid>``   first ``seq:ts`` of a (user, cid); 24 h TTL
``P:{R}:reads``                    zset user -> read mark
``P:{R}:likes``                    like counter
``P:{R}:ctl``                      MessagePack control state (RoomState)
``P:{R}:known``                    hash user -> [name, role] of users who joined
``P:{R}:nodes``                    set of nodes that hold members
``P:{R}:users:<node>``             hash user -> 1 per node; 10 s TTL, heartbeat
``P:{R}:present``                  hash user -> live nodes holding the user
``P:{R}:polls``                    zset poll id -> creation order (``pollseq``)
``P:{R}:poll:<id>``                hash: question, options, counts, open, times
``P:{R}:poll:<id>:voters``         hash user -> option (one vote per user)
``P:{R}:claim:<what>``             coalescing claim, PX interval
``P:{R}:stats``                    hash: chat count, presence fold (peak, area)
``P:{R}:chatmin``                  hash minute -> chat messages
``P:{R}:log``                      list of analytics events, last 10,000
``P:report:{R}``                   a finished room's report, kept for retention
``P:{R}:ch``                       pub/sub channel of the room
``P:{R}:media``                    the node that holds the room's WebRTC
``P:{_}:alive:<node>``             a node's liveness, 10 s TTL, renewed every 3 s
``P:{_}:node:<node>``              a node's channel for calls from other nodes
=================================  ============================================

Why a stream for history: entries carry the seq as their id, so appending is
O(1), ``MAXLEN`` caps it exactly, and every read (``since``, ``before``,
``after``) is one ``XRANGE`` / ``XREVRANGE`` by seq.

Atomic steps (each one Lua script or ``WATCH``/``MULTI`` transaction):

* chat append: idempotency check, ``INCR`` seq, ``XADD`` capped, remember the
  cid, ``PUBLISH`` -- so a message that got a seq is in history, and chat is
  published in seq order.
* vote: exists, open, in range, ``HSETNX`` the voter, ``HINCRBY`` the count.
* poll close: flips ``open`` once; only that caller is told ``closed_now``.
* control state: ``WATCH`` the state key, apply the pure transition, write it
  and publish its events in one ``MULTI``; retried on conflict.

Sharding: given several Redis URLs (comma-separated), each room lives wholly
on one of them, chosen by a jump consistent hash of the room id
(:func:`shard_index`). Every guarantee above holds per room because all of a
room's keys and its channel are on its shard; a node keeps one subscription
connection per shard.

Delivery to a node is one subscription per room per node, decoded once per
event. The reader tracks the last chat seq delivered per room: a chat message
that skips seqs (missed while Redis was away) triggers a read of the missing
range from history first, and a repeated seq is dropped, so each node hands its
members every chat message once, in order. When Redis is unreachable, calls
raise ``Unavailable``; the reader reconnects with backoff, resubscribes every
room and catches up chat from history.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from roomserver.broker.base import (
    ControlChange,
    EventSink,
    JoinView,
    NodeHandler,
    PollView,
    Tally,
)
from roomserver.broker.batch import ScriptBatcher
from roomserver.broker.link import link_for
from roomserver.broker.packing import pack_with_hiredis
from roomserver.chat import after_gap, before_gap, resume_window
from roomserver.errors import (
    AlreadyVoted,
    BadRequest,
    ClientError,
    NotFound,
    PollClosed,
    Unavailable,
    error_from_wire,
)
from roomserver.events import STATE_EVENT, Envelope
from roomserver.ids import ChatDraft, ChatMessage, Identity, Role, UserId
from roomserver.polls import POLL_RECENT_MS
from roomserver.room import RoomInfo, RoomState
from roomserver.stats import PresenceFold, RoomCounters, minute_of

log = logging.getLogger(__name__)

CID_TTL_S = 24 * 3600
MEMBERS_TTL_S = 10  # with a 3 s heartbeat, a dead node drops out within 13 s
MAX_POLLS = 100
_CHAT = b"C"
_ENVELOPE = b"E"
_CALL = b"Q"
_REPLY = b"A"
ALIVE_TTL_S = 10

# Appends one chat message: {1, seq}, {0, "seq:ts"} for a cid already taken, or
# {-1, 0} when the room does not exist (KEYS[7], its info hash), checked here so that
# a message costs one round trip.
_APPEND = """
if redis.call('EXISTS', KEYS[7]) == 0 then return {-1, 0} end
local prev = redis.call('GET', KEYS[3])
if prev then return {0, prev} end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-0', 'm', ARGV[1])
redis.call('SET', KEYS[3], seq .. ':' .. ARGV[4], 'EX', ARGV[3])
redis.call('HINCRBY', KEYS[5], 'chat', 1)
redis.call('HINCRBY', KEYS[6], ARGV[5], 1)
redis.call('PUBLISH', KEYS[4], 'C' .. seq .. ' ' .. ARGV[1])
return {1, seq}
"""

# Folds a member count into the presence analytics; mirrors
# roomserver.stats.PresenceFold.sample. Prepended to the scripts that use it.
_FOLD_PRESENCE = """
local function fold_presence(key, ts, n)
  if redis.call('HEXISTS', key, 'first_ts') == 0 then
    redis.call('HSET', key, 'first_ts', ts, 'last_ts', ts)
  else
    local last = tonumber(redis.call('HGET', key, 'last_ts'))
    if ts > last then
      local last_n = tonumber(redis.call('HGET', key, 'last_n') or '0')
      redis.call('HINCRBYFLOAT', key, 'area', last_n * (ts - last))
      redis.call('HSET', key, 'last_ts', ts)
    end
  end
  redis.call('HSET', key, 'last_n', n)
  local peak = tonumber(redis.call('HGET', key, 'peak') or '0')
  if n > peak then redis.call('HSET', key, 'peak', n) end
end
"""

# The room's distinct users present: ``present`` counts, per user, the nodes whose
# users hash holds them, so a user connected to two nodes counts once. A node whose
# last user leaves drops out of the nodes set then (see _MEMBER); one whose users hash
# expired (the node died) is found here: it leaves the set, and the counts are rebuilt
# from the live nodes' hashes, O(members) once per dead node (and once if the counts
# are missing while users are present, as after an upgrade).
# Prepended to the scripts that count members.
_COUNT_PRESENT = """
local function count_present(nodes_key, present_key, users_prefix)
  local live, gone = {}, {}
  for _, node in ipairs(redis.call('SMEMBERS', nodes_key)) do
    if redis.call('EXISTS', users_prefix .. node) == 1 then
      live[#live + 1] = node
    else
      gone[#gone + 1] = node
    end
  end
  local lost = #live > 0 and redis.call('EXISTS', present_key) == 0  -- kept by no older node
  if #gone > 0 or lost then
    if #gone > 0 then redis.call('SREM', nodes_key, unpack(gone)) end
    redis.call('DEL', present_key)
    for _, node in ipairs(live) do
      for _, user in ipairs(redis.call('HKEYS', users_prefix .. node)) do
        redis.call('HINCRBY', present_key, user, 1)
      end
    end
  end
  return redis.call('HLEN', present_key)
end
"""

# Joins (ARGV[1] = 1) or leaves (0) a member on this node, then folds the room's
# new total into the presence analytics. KEYS: this node's users hash, nodes
# set, known hash, stats hash, present hash; every key shares the room's hash tag.
_MEMBER = (
    _FOLD_PRESENCE
    + _COUNT_PRESENT
    + """
if ARGV[1] == '1' then
  if redis.call('HSET', KEYS[1], ARGV[2], 1) == 1 then
    redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
  end
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('SADD', KEYS[2], ARGV[6])
  redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
elseif redis.call('HDEL', KEYS[1], ARGV[2]) == 1 then
  if redis.call('HINCRBY', KEYS[5], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[5], ARGV[2])
  end
  -- the node's last user left: the counts are right, no recount when it is found gone
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[6]) end
end
local total = count_present(KEYS[2], KEYS[5], ARGV[7])
fold_presence(KEYS[4], tonumber(ARGV[4]), total)
return total
"""
)

# Refreshes this node's users hash TTL (ARGV[2] > 0) and counts the room's users.
# KEYS: this node's users hash, nodes set, present hash. ARGV: users prefix, TTL.
_PRESENCE = (
    _COUNT_PRESENT
    + """
if tonumber(ARGV[2]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return count_present(KEYS[2], KEYS[3], ARGV[1])
"""
)

# Returns the room's media node if it is alive, else makes ARGV[1] the holder.
_CLAIM_MEDIA = """
local holder = redis.call('GET', KEYS[1])
if holder and redis.call('EXISTS', ARGV[2] .. holder) == 1 then return holder end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""

_DRAW_ENTER = """
if redis.call('HGET', KEYS[1], 'open') ~= '1' then
  if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
  return redis.call('SCARD', KEYS[2])
end
if #ARGV > 0 then redis.call('SADD', KEYS[2], unpack(ARGV)) end
return redis.call('SCARD', KEYS[2])
"""

_DRAW_CLOSE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'open', '0')
return 1
"""

_SAMPLE_PRESENCE = (
    _FOLD_PRESENCE
    + """
fold_presence(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return 1
"""
)

# Everything a join snapshot reads, in one round trip (see RedisBroker.join_view).
# KEYS: seq, del, chat, likes, nodes, polls, present.
# ARGV: limit, users key prefix, this node, refresh TTL (0: none), poll key prefix, user.
_JOIN_VIEW = (
    _COUNT_PRESENT
    + """
local seq = redis.call('GET', KEYS[1]) or '0'
local deleted = redis.call('ZRANGE', KEYS[2], 0, -1)
local entries = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', tonumber(ARGV[1]) + #deleted)
local likes = redis.call('GET', KEYS[4]) or '0'
if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', ARGV[2] .. ARGV[3], ARGV[4]) end
local members = count_present(KEYS[5], KEYS[7], ARGV[2])
local polls = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local key = ARGV[5] .. id
  local mine = redis.call('HGET', key .. ':voters', ARGV[6])
  polls[#polls + 1] = {id, redis.call('HGETALL', key), mine}
end
return {seq, deleted, entries, likes, members, polls}
"""
)

_CREATE_ROOM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'title', ARGV[1], 'welcome', ARGV[2], 'created_at', ARGV[3])
return 1
"""

_VOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'nf' end
local open = redis.call('HGET', KEYS[1], 'open')
local closes = tonumber(redis.call('HGET', KEYS[1], 'closes_at') or '0')
if open ~= '1' or (closes > 0 and tonumber(ARGV[3]) >= closes) then return 'closed' end
local option = tonumber(ARGV[2])
if option >= tonumber(redis.call('HGET', KEYS[1], 'n')) then return 'range' end
if redis.call('HSETNX', KEYS[2], ARGV[1], option) == 0 then return 'voted' end
redis.call('HINCRBY', KEYS[1], 'v' .. option, 1)
return 'ok'
"""

_CLOSE_POLL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'open') ~= '1' then return 0 end
redis.call('HSET', KEYS[1], 'open', '0', 'closed_at', ARGV[1])
return 1
"""

_CREATE_POLL = """
local count = redis.call('ZCARD', KEYS[1])
if count >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, -1)
  for _, id in ipairs(oldest) do
    if count < tonumber(ARGV[3]) then break end
    local key = ARGV[4] .. id
    if redis.call('HGET', key, 'open') ~= '1' then
      redis.call('DEL', key, key .. ':voters')
      redis.call('ZREM', KEYS[1], id)
      count = count - 1
    end
  end
  if count >= tonumber(ARGV[3]) then return 0 end
end
redis.call('ZADD', KEYS[1], redis.call('INCR', KEYS[2]), ARGV[1])
return 1
"""


def shard_index(room: str, shards: int) -> int:
    """The shard of ``room``: a jump consistent hash of the room id.

    Stable across nodes and restarts; growing from n to n+1 shards moves only
    about 1/(n+1) of the rooms (Lamping and Veach, "A Fast, Minimal Memory,
    Consistent Hash Algorithm").
    """
    key = int.from_bytes(hashlib.blake2b(room.encode(), digest_size=8).digest(), "big")
    bucket, jump = -1, 0
    while jump < shards:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


#: A room's shard is looked up for every Redis call: several per join and per message.
_cached_shard_index = functools.lru_cache(maxsize=4096)(shard_index)


#: Connections a node opens to one Redis. Requests beyond that wait for a free one
#: (up to POOL_WAIT_S) instead of failing: a burst of joins is queued, not refused.
#: 5,000 joins at once on two nodes of a 2-core machine kept requests waiting over 5 s
#: (262 refused as unavailable); the wait now outlasts such a burst.
POOL_SIZE = 64
POOL_WAIT_S = 20.0
#: Connections opened at start, so the first burst of joins does not pay for opening
#: them (a connect and a HELLO each); a two-node join burst grew each pool to its size.
WARM_CONNECTIONS = 16

#: How long ``subscribe`` waits for Redis to confirm a room's subscription. Until it
#: does, a message published from another connection may be processed first and
#: missed; past this wait (Redis slow or away) the room carries on and its chat is
#: caught up by sequence number as always.
SUBSCRIBE_WAIT_S = 2.0


def _connect(url: str) -> aioredis.Redis:
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_S,
        decode_responses=False,
        socket_connect_timeout=1.0,
        socket_timeout=3.0,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=5,
    )
    pack_with_hiredis(pool)
    return aioredis.Redis.from_pool(pool)  # the client owns the pool and closes it


@dataclass(eq=False)
class _Shard:
    """One Redis of the deployment and this node's subscription to it."""

    index: int
    url: str
    client: aioredis.Redis
    batcher: ScriptBatcher
    pubsub: PubSub | None = None
    reader: asyncio.Task[None] | None = None
    warming: asyncio.Task[None] | None = None
    connected: bool = False
    ever_connected: bool = False
    #: subscriptions waiting for Redis to confirm them, by channel
    confirming: dict[str, asyncio.Future[None]] = field(default_factory=dict)


def _pack(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def _unpack(data: Any) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class RedisBroker:
    """Shares rooms between nodes through Redis; see the module docstring for keys."""

    def __init__(
        self,
        urls: str | Sequence[str],
        node_id: str,
        *,
        prefix: str = "rs",
        history_size: int = 1000,
    ) -> None:
        self.node_id = node_id
        self._prefix = prefix
        self._history_size = history_size
        if isinstance(urls, str):
            urls = [u.strip() for u in urls.split(",") if u.strip()]
        if not urls:
            raise ValueError("at least one Redis URL is needed")
        self._shards = []
        for index, url in enumerate(urls):
            client = _connect(url)
            self._shards.append(_Shard(index, url, client, ScriptBatcher(client, link_for(url))))
        first = self._shards[0].client
        self._append = first.register_script(_APPEND)
        self._create_room = first.register_script(_CREATE_ROOM)
        self._vote = first.register_script(_VOTE)
        self._close_poll = first.register_script(_CLOSE_POLL)
        self._create_poll = first.register_script(_CREATE_POLL)
        self._sample = first.register_script(_SAMPLE_PRESENCE)
        self._member = first.register_script(_MEMBER)
        self._draw_enter = first.register_script(_DRAW_ENTER)
        self._draw_close = first.register_script(_DRAW_CLOSE)
        self._claim_media = first.register_script(_CLAIM_MEDIA)
        self._join_view = first.register_script(_JOIN_VIEW)
        self._presence = first.register_script(_PRESENCE)
        self._handler: NodeHandler | None = None
        self._pending_calls: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._call_tasks: set[asyncio.Task[None]] = set()
        self._sink: EventSink | None = None
        self._rooms: set[str] = set()
        self._last_seq: dict[str, int] = {}
        self._closed = False

    @property
    def connected(self) -> bool:
        """Whether every shard's subscription connection is up."""
        return all(shard.connected for shard in self._shards)

    def _shard(self, room: str) -> _Shard:
        shards = self._shards
        if len(shards) == 1:
            return shards[0]
        return shards[_cached_shard_index(room, len(shards))]

    def _batched(
        self, room: str, script: AsyncScript, keys: Sequence[Any], args: Sequence[Any]
    ) -> Awaitable[Any]:
        """A hot script's call on ``room``'s shard, sent with the tick's others (batch.py)."""
        return self._shard(room).batcher.call(script, keys, args)

    def _db(self, room: str) -> aioredis.Redis:
        """The Redis that holds ``room``: every key of a room lives on one shard."""
        return self._shard(room).client

    # -- keys -------------------------------------------------------------------------

    def _k(self, room: str, *parts: str) -> str:
        return ":".join((self._prefix, "{" + room + "}", *parts))

    def _channel(self, room: str) -> str:
        return self._k(room, "ch")

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for shard in self._shards:
            shard.reader = loop.create_task(self._read_forever(shard))
            shard.warming = loop.create_task(self._warm(shard))

    async def _warm(self, shard: _Shard) -> None:
        """Open ``WARM_CONNECTIONS`` pooled connections now; a Redis that is away is left
        to the subscription's reconnects, and the pool opens connections as needed."""
        pool = shard.client.connection_pool
        held = []
        try:
            for _ in range(WARM_CONNECTIONS):
                held.append(await pool.get_connection())  # type: ignore[no-untyped-call]
        except (RedisError, OSError) as exc:
            log.debug("redis pool not warmed shard=%d: %s", shard.index, exc)
        finally:
            for connection in held:
                await pool.release(connection)

    async def close(self) -> None:
        self._closed = True
        for shard in self._shards:
            if shard.warming is not None:
                shard.warming.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shard.warming
            if shard.reader is not None:
                shard.reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await shard.reader
            await shard.batcher.close()
            if shard.pubsub is not None:
                with contextlib.suppress(RedisError, OSError):
                    await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
            with contextlib.suppress(RedisError, OSError):
                await shard.client.aclose()

    def attach(self, sink: EventSink) -> None:
        self._sink = sink

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        """Run one Redis call; an unreachable Redis becomes ``Unavailable``.

        Results are ``Any``: redis-py's return types are unions over its
        decode modes, and this client always returns bytes.
        """
        try:
            return await awaitable
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py turned our cancellation into a timeout or connection error
                # (its pool wait runs under asyncio.timeout): cancelled it stays, or a
                # loop that rides out outages (the heartbeat) would never stop.
                raise asyncio.CancelledError from exc
            raise Unavailable(f"redis is unreachable: {exc}") from None

    # -- rooms ------------------------------------------------------------------------

    async def create_room(self, info: RoomInfo) -> bool:
        created = await self._call(
            self._create_room(
                client=self._db(info.id),
                keys=[self._k(info.id, "info")],
                args=[info.title, info.welcome or "", info.created_at],
            )
        )
        return bool(created)

    async def get_room(self, room: str) -> RoomInfo | None:
        data = await self._call(self._db(room).hgetall(self._k(room, "info")))
        if not data:
            return None
        welcome = data[b"welcome"].decode()
        return RoomInfo(
            id=room,
            title=data[b"title"].decode(),
            welcome=welcome or None,
            created_at=int(data[b"created_at"]),
        )

    async def delete_room(self, room: str) -> bool:
        if not await self._call(self._db(room).delete(self._k(room, "info"))):
            return False
        keys = [key async for key in self._scan(room, self._k(room, "*"))]
        if keys:
            await self._call(self._db(room).delete(*keys))
        return True

    async def _scan(self, room: str, pattern: str) -> AsyncIterator[bytes]:
        cursor = 0
        for _ in range(100_000):
            cursor, keys = await self._call(self._db(room).scan(cursor, match=pattern, count=500))
            for key in keys:
                yield key
            if cursor == 0:
                return

    # -- fan-out ------------------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        if room in self._rooms:
            return
        self._rooms.add(room)
        shard = self._shard(room)
        channel = self._channel(room)
        confirmed = shard.confirming.get(channel)
        if confirmed is None:
            confirmed = shard.confirming[channel] = asyncio.get_running_loop().create_future()
        try:
            if shard.pubsub is not None:  # else the shard's reader subscribes when it opens
                await self._call(shard.pubsub.subscribe(channel))
            self._last_seq[room] = await self.latest_seq(room)
        except Unavailable:
            self._rooms.discard(room)
            shard.confirming.pop(channel, None)
            raise
        try:
            await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_WAIT_S)
        except TimeoutError:
            log.warning("redis has not confirmed the subscription of room=%s yet", room)
        finally:
            if shard.confirming.get(channel) is confirmed:
                del shard.confirming[channel]

    async def unsubscribe(self, room: str) -> None:
        if room not in self._rooms:
            return
        self._rooms.discard(room)
        self._last_seq.pop(room, None)
        pubsub = self._shard(room).pubsub
        if pubsub is not None:
            with contextlib.suppress(Unavailable):
                await self._call(pubsub.unsubscribe(self._channel(room)))

    async def publish(self, room: str, envelope: Envelope) -> None:
        batcher = self._shard(room).batcher
        await self._call(batcher.command("PUBLISH", self._channel(room), _wrap(envelope)))

    async def _read_forever(self, shard: _Shard) -> None:
        """Keep one shard's subscription alive; resubscribe and catch up after outages."""
        backoff = 0.1
        while not self._closed:
            try:
                await self._open_subscription(shard)
                backoff = 0.1
                await self._pump(shard)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, Unavailable) as exc:
                if shard.connected:
                    log.warning("redis subscription lost shard=%d: %s", shard.index, exc)
                shard.connected = False
                if shard.pubsub is not None:
                    with contextlib.suppress(Exception):
                        await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
                    shard.pubsub = None
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 2.0)

    async def _open_subscription(self, shard: _Shard) -> None:
        # Confirmations are read (see _pump): subscribe() waits for its room's.
        pubsub = shard.client.pubsub(ignore_subscribe_messages=False)
        # The first subscribe opens the connection; a placeholder channel keeps it open.
        await pubsub.subscribe(self._node_channel(self.node_id))
        rooms = sorted(r for r in self._rooms if self._shard(r) is shard)
        if rooms:
            await pubsub.subscribe(*(self._channel(room) for room in rooms))
        shard.pubsub = pubsub
        was_down = not shard.connected and shard.ever_connected
        shard.connected = shard.ever_connected = True
        if was_down:
            log.info(
                "redis subscription restored shard=%d; catching up %d rooms",
                shard.index,
                len(rooms),
            )
            for room in rooms:
                await self._catch_up(room, None)
                await self._deliver_control(room)

    async def _pump(self, shard: _Shard) -> None:
        pubsub = shard.pubsub
        assert pubsub is not None
        while not self._closed:
            message = await pubsub.get_message(timeout=1.0)
            if message is None:
                continue
            if message.get("type") == "subscribe":
                confirmed = shard.confirming.get(message["channel"].decode())
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
                continue
            if message.get("type") != "message":
                continue
            channel = message["channel"].decode()
            if channel == self._node_channel(self.node_id):
                self._on_node_message(shard, message["data"])
                continue
            room = channel[len(self._prefix) + 2 : -len("}:ch")]
            if room not in self._rooms:
                continue
            await self._dispatch(room, message["data"])

    async def _dispatch(self, room: str, data: bytes) -> None:
        kind = data[:1]
        if kind == _CHAT:
            seq_text, _, payload = data[1:].partition(b" ")
            message = _chat_message(room, int(seq_text), payload)
            await self._catch_up(room, message.seq - 1)
            self._deliver_chat(room, message)
        elif kind == _ENVELOPE:
            self._deliver(room, Envelope.from_wire(_unpack(data[1:])))

    async def _catch_up(self, room: str, until: int | None) -> None:
        """Deliver held chat after the last seq delivered here, up to ``until`` (or latest)."""
        last = self._last_seq.get(room)
        if last is None:
            return
        target = until if until is not None else await self.latest_seq(room)
        while last < target:
            batch = await self._range(room, last + 1, min(target, last + 500))
            if not batch:
                self._last_seq[room] = last = min(target, last + 500)
                continue
            for message in batch:
                self._deliver_chat(room, message)
            last = self._last_seq[room]

    def _deliver_chat(self, room: str, message: ChatMessage) -> None:
        last = self._last_seq.get(room)
        if last is not None and message.seq <= last:
            return
        self._last_seq[room] = message.seq
        self._deliver(room, Envelope(message.to_event()))

    def _deliver(self, room: str, envelope: Envelope) -> None:
        if self._sink is not None and room in self._rooms:
            self._sink(room, envelope)

    async def _deliver_control(self, room: str) -> None:
        raw = await self._call(self._db(room).get(self._k(room, "ctl")))
        if raw is not None:
            event = {"t": STATE_EVENT, "room": room, "state": _unpack(raw)}
            self._deliver(room, Envelope(event))

    # -- chat -----------------------------------------------------------------------------

    async def append_chat(self, room: str, draft: ChatDraft, ts: int) -> tuple[ChatMessage, bool]:
        payload = _pack([ts, draft.user, draft.name, draft.role, draft.text, draft.cid])
        cid_key = self._k(room, "cid", f"{len(draft.user)}:{draft.user}:{draft.cid}")
        keys = [
            self._k(room, "seq"),
            self._k(room, "chat"),
            cid_key,
            self._channel(room),
            self._k(room, "stats"),
            self._k(room, "chatmin"),
            self._k(room, "info"),
        ]
        args: list[Any] = [payload, self._history_size, CID_TTL_S, ts, minute_of(ts)]
        new, value = await self._call(self._batched(room, self._append, keys, args))
        if new < 0:
            raise NotFound(f"room {room!r} does not exist")
        if new:
            seq = int(value)
            return ChatMessage(
                room, seq, ts, draft.user, draft.name, draft.role, draft.text, draft.cid
            ), True
        seq_text, _, ts_text = value.decode().partition(":")
        first = ChatMessage(
            room,
            int(seq_text),
            int(ts_text),
            draft.user,
            draft.name,
            draft.role,
            draft.text,
            draft.cid,
        )
        held = await self._range(room, first.seq, first.seq)
        return (held[0] if held else first), False

    async def latest_seq(self, room: str) -> int:
        value = await self._call(self._db(room).get(self._k(room, "seq")))
        return int(value) if value is not None else 0

    async def _bounds(self, room: str) -> tuple[int, int, set[int]]:
        """(first held seq, latest seq, deleted seqs) in one round trip."""
        pipe = self._db(room).pipeline(transaction=False)
        pipe.get(self._k(room, "seq"))
        pipe.xrange(self._k(room, "chat"), "-", "+", count=1)
        pipe.zrange(self._k(room, "del"), 0, -1)
        raw_seq, first, deleted = await self._call(pipe.execute())
        latest = int(raw_seq) if raw_seq is not None else 0
        first_held = _seq_of(first[0][0]) if first else latest + 1
        return first_held, latest, {int(s) for s in deleted}

    async def _range(self, room: str, low: int, high: int) -> list[ChatMessage]:
        if low > high:
            return []
        entries = await self._call(
            self._db(room).xrange(self._k(room, "chat"), f"{low}-0", f"{high}-0")
        )
        deleted = await self._deleted(room)
        return [
            _chat_message(room, seq, fields[b"m"])
            for entry_id, fields in entries
            if (seq := _seq_of(entry_id)) not in deleted
        ]

    async def _deleted(self, room: str) -> set[int]:
        return {
            int(s) for s in await self._call(self._db(room).zrange(self._k(room, "del"), 0, -1))
        }

    async def chat_latest(self, room: str, limit: int) -> list[ChatMessage]:
        deleted = await self._deleted(room)
        entries = await self._call(
            self._db(room).xrevrange(self._k(room, "chat"), "+", "-", count=limit + len(deleted))
        )
        return self._newest_first(room, entries, deleted, limit)

    async def join_view(
        self, room: str, user: str, limit: int, local_members: int, now_ms: int
    ) -> JoinView:
        keys = [
            self._k(room, "seq"),
            self._k(room, "del"),
            self._k(room, "chat"),
            self._k(room, "likes"),
            self._k(room, "nodes"),
            self._k(room, "polls"),
            self._k(room, "present"),
        ]
        args: list[str | int] = [
            limit,
            self._k(room, "users") + ":",
            self.node_id,
            MEMBERS_TTL_S if local_members else 0,
            self._k(room, "poll") + ":",
            user,
        ]
        raw = await self._call(self._batched(room, self._join_view, keys, args))
        seq, deleted_raw, entries, likes, members, poll_rows = raw
        deleted = {int(s) for s in deleted_raw}
        entries = [(entry_id, _pairs(fields)) for entry_id, fields in entries]
        polls = []
        for poll_id, fields, my_vote in poll_rows:
            found = _poll_from_hash(poll_id.decode(), _pairs(fields), my_vote or None)
            if found is None:
                continue
            view, closed_at = found
            if view["open"] or now_ms - closed_at < POLL_RECENT_MS:
                polls.append(view)
        return JoinView(
            seq=int(seq),
            history=self._newest_first(room, entries, deleted, limit),
            members=int(members),
            likes=int(likes),
            polls=polls,
        )

    def _newest_first(
        self, room: str, entries: Sequence[Any], deleted: set[int], limit: int
    ) -> list[ChatMessage]:
        out = [
            _chat_message(room, seq, fields[b"m"])
            for entry_id, fields in entries
            if (seq := _seq_of(entry_id)) not in deleted
        ][:limit]
        out.reverse()
        return out

    async def chat_since(self, room: str, since: int, limit: int) -> tuple[list[ChatMessage], bool]:
        first_held, latest, _ = await self._bounds(room)
        low, high, gap = resume_window(since, first_held, latest, limit)
        return await self._range(room, low, high), gap

    async def chat_before(self, room: str, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        first_held, _, deleted = await self._bounds(room)
        if seq <= 1:
            return [], before_gap(0, limit, first_held)
        entries = await self._call(
            self._db(room).xrevrange(
                self._k(room, "chat"), f"{seq - 1}-0", "-", count=limit + len(deleted)
            )
        )
        messages = self._newest_first(room, entries, deleted, limit)
        return messages, before_gap(len(messages), limit, first_held)

    async def chat_after(self, room: str, seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        first_held, _, deleted = await self._bounds(room)
        entries = await self._call(
            self._db(room).xrange(
                self._k(room, "chat"), f"{seq + 1}-0", "+", count=limit + len(deleted)
            )
        )
        messages = [
            _chat_message(room, s, fields[b"m"])
            for entry_id, fields in entries
            if (s := _seq_of(entry_id)) not in deleted
        ][:limit]
        return messages, after_gap(seq, first_held)

    async def delete_chat(self, room: str, seq: int) -> bool:
        first_held, latest, deleted = await self._bounds(room)
        if not first_held <= seq <= latest or seq in deleted:
            return False
        pipe = self._db(room).pipeline(transaction=True)
        pipe.zadd(self._k(room, "del"), {str(seq): seq})
        pipe.zremrangebyscore(self._k(room, "del"), "-inf", f"({first_held}")
        added, _ = await self._call(pipe.execute())
        return bool(added)

    async def mark_read(self, room: str, user: str, seq: int) -> None:
        await self._call(self._db(room).zadd(self._k(room, "reads"), {user: seq}, gt=True))

    async def readers(self, room: str, seq: int) -> int:
        count: int = await self._call(self._db(room).zcount(self._k(room, "reads"), seq, "+inf"))
        return count

    # -- polls ----------------------------------------------------------------------------

    def _poll_key(self, room: str, poll_id: str) -> str:
        return self._k(room, "poll", poll_id)

    async def create_poll(
        self,
        room: str,
        poll_id: str,
        question: str,
        options: Sequence[str],
        now_ms: int,
        duration_s: int | None,
    ) -> PollView:
        key = self._poll_key(room, poll_id)
        added = await self._call(
            self._create_poll(
                client=self._db(room),
                keys=[self._k(room, "polls"), self._k(room, "pollseq")],
                args=[poll_id, now_ms, MAX_POLLS, self._k(room, "poll", "")],
            )
        )
        if not added:
            raise BadRequest("too many open polls")
        fields: dict[Any, Any] = {
            "question": question,
            "options": _pack(list(options)),
            "n": len(options),
            "open": "1",
            "created_at": now_ms,
            "closes_at": now_ms + duration_s * 1000 if duration_s is not None else 0,
            "closed_at": 0,
        }
        fields.update({f"v{i}": 0 for i in range(len(options))})
        await self._call(self._db(room).hset(key, mapping=fields))
        found = await self._poll_view(room, poll_id, None)
        assert found is not None
        return found[0]

    async def _poll_view(
        self, room: str, poll_id: str, user: str | None
    ) -> tuple[PollView, int] | None:
        """The wire view of a poll and when it closed (0: open), or None if unknown."""
        pipe = self._db(room).pipeline(transaction=False)
        pipe.hgetall(self._poll_key(room, poll_id))
        if user is not None:
            pipe.hget(self._poll_key(room, poll_id) + ":voters", user)
        results = await self._call(pipe.execute())
        return _poll_from_hash(poll_id, results[0], results[1] if user is not None else None)

    async def vote(self, room: str, poll_id: str, user: str, option: int) -> Tally:
        key = self._poll_key(room, poll_id)
        outcome = await self._call(
            self._batched(room, self._vote, [key, key + ":voters"], [user, option, _now_ms()])
        )
        outcome = outcome.decode() if isinstance(outcome, bytes) else outcome
        if outcome == "nf":
            raise NotFound(f"poll {poll_id!r} does not exist")
        if outcome == "closed":
            raise PollClosed("the poll is closed")
        if outcome == "range":
            raise BadRequest("option: out of range for this poll")
        if outcome == "voted":
            raise AlreadyVoted("you already voted in this poll")
        return await self.poll_tally(room, poll_id)

    async def close_poll(self, room: str, poll_id: str, now_ms: int) -> tuple[PollView, bool]:
        result = await self._call(
            self._close_poll(
                client=self._db(room), keys=[self._poll_key(room, poll_id)], args=[now_ms]
            )
        )
        if result == -1:
            raise NotFound(f"poll {poll_id!r} does not exist")
        found = await self._poll_view(room, poll_id, None)
        if found is None:
            raise NotFound(f"poll {poll_id!r} does not exist")
        return found[0], result == 1

    async def poll_tally(self, room: str, poll_id: str) -> Tally:
        found = await self._poll_view(room, poll_id, None)
        if found is None:
            raise NotFound(f"poll {poll_id!r} does not exist")
        votes = [option["votes"] for option in found[0]["options"]]
        return votes, sum(votes)

    async def polls(self, room: str, user: str | None, now_ms: int) -> list[PollView]:
        ids = [
            i.decode()
            for i in await self._call(self._db(room).zrange(self._k(room, "polls"), 0, -1))
        ]
        views = []
        for poll_id in ids:
            found = await self._poll_view(room, poll_id, user)
            if found is None:
                continue
            view, closed_at = found
            if view["open"] or now_ms - closed_at < POLL_RECENT_MS:
                views.append(view)
        return views

    # -- control state ------------------------------------------------------------------

    async def refresh_control(self, state: RoomState) -> None:
        raw = await self._call(self._db(state.id).get(self._k(state.id, "ctl")))
        if raw is not None:
            state.load_control(_unpack(raw))

    async def update_control(self, state: RoomState, change: ControlChange) -> list[Envelope]:
        key = self._k(state.id, "ctl")
        channel = self._channel(state.id)
        blank = RoomState(state.info).control_to_wire()
        for _ in range(50):
            async with self._db(state.id).pipeline(transaction=True) as pipe:
                try:
                    await self._call(pipe.watch(key))
                    raw = await self._call(pipe.get(key))
                    state.load_control(_unpack(raw) if raw is not None else blank)
                    envelopes = change(state)
                    control = state.control_to_wire()
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(key, _pack(control))
                    for envelope in envelopes:
                        pipe.publish(channel, _wrap(envelope))
                    event = {"t": STATE_EVENT, "room": state.id, "state": control}
                    pipe.publish(channel, _wrap(Envelope(event)))
                    await self._call(pipe.execute())
                    return envelopes
                except WatchError:
                    continue
        raise Unavailable("room state is too contended; retry")

    # -- members --------------------------------------------------------------------------

    def _users_key(self, room: str, node: str) -> str:
        return self._k(room, "users", node)

    async def member_joined(self, room: str, who: Identity, ts: int) -> None:
        known = _pack([who.name, who.role.value])
        await self._member_change(room, "1", who.user, known, ts)

    async def member_left(self, room: str, user: str, ts: int) -> None:
        await self._member_change(room, "0", user, b"", ts)

    async def _member_change(self, room: str, join: str, user: str, known: bytes, ts: int) -> None:
        keys = [
            self._users_key(room, self.node_id),
            self._k(room, "nodes"),
            self._k(room, "known"),
            self._k(room, "stats"),
            self._k(room, "present"),
        ]
        prefix = self._k(room, "users", "")
        args: list[Any] = [join, user, known, ts, MEMBERS_TTL_S, self.node_id, prefix]
        await self._call(self._batched(room, self._member, keys, args))

    async def find_member(self, room: str, user: str) -> Identity | None:
        raw = await self._call(self._db(room).hget(self._k(room, "known"), user))
        if raw is None:
            return None
        name, role = _unpack(raw)
        return Identity(UserId(user), name, Role(role))

    async def _live_nodes(self, room: str) -> list[str]:
        return [
            n.decode() for n in await self._call(self._db(room).smembers(self._k(room, "nodes")))
        ]

    async def is_present(self, room: str, user: str) -> bool:
        nodes = await self._live_nodes(room)
        if not nodes:
            return False
        pipe = self._db(room).pipeline(transaction=False)
        for node in nodes:
            pipe.hexists(self._users_key(room, node), user)
        return any(await self._call(pipe.execute()))

    async def presence(self, room: str, local_members: int) -> int:
        """Distinct users on every live node; also refreshes this node's heartbeat for the room."""
        keys = [
            self._users_key(room, self.node_id),
            self._k(room, "nodes"),
            self._k(room, "present"),
        ]
        args = [self._k(room, "users", ""), MEMBERS_TTL_S if local_members else 0]
        return int(await self._call(self._batched(room, self._presence, keys, args)))

    # -- counters -------------------------------------------------------------------------

    async def add_likes(self, room: str, n: int) -> int:
        total: int = await self._call(self._db(room).incrby(self._k(room, "likes"), n))
        return total

    async def likes(self, room: str) -> int:
        value = await self._call(self._db(room).get(self._k(room, "likes")))
        return int(value) if value is not None else 0

    async def claim(self, room: str, what: str, interval_s: float) -> float:
        key = self._k(room, "claim", what)
        interval_ms = max(1, int(interval_s * 1000))
        if await self._call(self._db(room).set(key, self.node_id, px=interval_ms, nx=True)):
            return 0.0
        remaining = await self._call(self._db(room).pttl(key))
        return max(0.001, remaining / 1000) if remaining > 0 else 0.001

    # -- media node and calls between nodes ------------------------------------------

    def _node_channel(self, node: str) -> str:
        return self._k("_", "node", node)

    def _alive_key(self, node: str) -> str:
        return self._k("_", "alive", node)

    async def heartbeat(self) -> None:
        """Mark this node alive on every shard for ALIVE_TTL_S."""
        for shard in self._shards:
            await self._call(shard.client.set(self._alive_key(self.node_id), 1, ex=ALIVE_TTL_S))

    async def claim_media_node(self, room: str) -> str:
        await self.heartbeat()
        holder = await self._call(
            self._claim_media(
                client=self._db(room),
                keys=[self._k(room, "media")],
                args=[self.node_id, self._alive_key("")],
            )
        )
        return str(holder.decode() if isinstance(holder, bytes) else holder)

    async def media_node(self, room: str) -> str | None:
        db = self._db(room)
        holder = await self._call(db.get(self._k(room, "media")))
        if holder is None:
            return None
        node = str(holder.decode())
        alive = await self._call(db.exists(self._alive_key(node)))
        return node if alive else None

    def serve_calls(self, handler: NodeHandler) -> None:
        self._handler = handler

    async def call_node(
        self, node: str, room: str, request: dict[str, Any], timeout: float
    ) -> dict[str, Any]:
        """Ask ``node`` (through the room's shard) and wait for its answer."""
        call_id = secrets.token_hex(8)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_calls[call_id] = future
        body = _CALL + _pack({"id": call_id, "from": self.node_id, "req": request})
        try:
            receivers = await self._call(self._db(room).publish(self._node_channel(node), body))
            if not receivers:
                raise Unavailable(f"node {node} is not reachable")
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise Unavailable(f"node {node} did not answer in time") from None
        finally:
            self._pending_calls.pop(call_id, None)

    def _on_node_message(self, shard: _Shard, data: bytes) -> None:
        kind, body = data[:1], _unpack(data[1:])
        if kind == _REPLY:
            future = self._pending_calls.get(body["id"])
            if future is not None and not future.done():
                if body["ok"]:
                    future.set_result(body["result"])
                else:
                    error = error_from_wire(body["code"], body["message"], body["extra"])
                    future.set_exception(error)
        elif kind == _CALL and self._handler is not None:
            task = asyncio.get_running_loop().create_task(self._answer(shard, body))
            self._call_tasks.add(task)
            task.add_done_callback(self._call_tasks.discard)

    async def _answer(self, shard: _Shard, body: dict[str, Any]) -> None:
        assert self._handler is not None
        reply: dict[str, Any] = {"id": body["id"]}
        try:
            reply |= {"ok": True, "result": await self._handler(body["req"])}
        except ClientError as exc:
            reply |= {"ok": False, "code": exc.code, "message": exc.message, "extra": exc.extra}
        except Exception:
            log.exception("node call failed")
            reply |= {"ok": False, "code": "internal", "message": "internal error", "extra": {}}
        with contextlib.suppress(RedisError, OSError):
            await shard.client.publish(self._node_channel(body["from"]), _REPLY + _pack(reply))

    # -- lucky draws ------------------------------------------------------------------

    def _draw_keys(self, room: str, draw_id: str) -> list[str]:
        key = self._k(room, "draw", draw_id)
        return [key, key + ":entries"]

    async def create_draw(self, room: str, record: dict[str, Any]) -> None:
        key = self._draw_keys(room, record["id"])[0]
        await self._call(self._db(room).hset(key, mapping={"record": _pack(record), "open": "1"}))

    async def draw_enter(self, room: str, draw_id: str, users: Sequence[str]) -> int:
        keys = self._draw_keys(room, draw_id)
        batches = [list(users[i : i + 1000]) for i in range(0, len(users), 1000)] or [[]]
        count = 0
        for batch in batches:
            count = await self._call(self._draw_enter(client=self._db(room), keys=keys, args=batch))
            if count == -1:
                raise NotFound(f"draw {draw_id!r} does not exist")
        return int(count)

    async def close_draw(self, room: str, draw_id: str) -> tuple[dict[str, Any], list[str], bool]:
        keys = self._draw_keys(room, draw_id)
        result = await self._call(self._draw_close(client=self._db(room), keys=keys, args=[]))
        if result == -1:
            raise NotFound(f"draw {draw_id!r} does not exist")
        pipe = self._db(room).pipeline(transaction=False)
        pipe.hget(keys[0], "record")
        pipe.smembers(keys[1])
        raw, entries = await self._call(pipe.execute())
        return dict(_unpack(raw)), sorted(e.decode() for e in entries), result == 1

    async def present_users(self, room: str) -> list[str]:
        nodes = await self._live_nodes(room)
        pipe = self._db(room).pipeline(transaction=False)
        for node in nodes:
            pipe.hkeys(self._users_key(room, node))
        results = await self._call(pipe.execute()) if nodes else []
        return sorted({u.decode() for keys in results for u in keys})

    async def poll_voters(self, room: str, poll_id: str) -> list[str]:
        key = self._poll_key(room, poll_id)
        if not await self._call(self._db(room).exists(key)):
            raise NotFound(f"poll {poll_id!r} does not exist")
        voters = await self._call(self._db(room).hkeys(key + ":voters"))
        return sorted(v.decode() for v in voters)

    # -- analytics --------------------------------------------------------------------

    async def sample_presence(self, room: str, ts: int, members: int) -> None:
        await self._call(
            self._sample(client=self._db(room), keys=[self._k(room, "stats")], args=[ts, members])
        )

    async def record(self, room: str, entry: dict[str, Any]) -> None:
        key = self._k(room, "log")
        pipe = self._db(room).pipeline(transaction=False)
        pipe.rpush(key, _pack(entry))
        pipe.ltrim(key, -ROOM_LOG_LIMIT, -1)
        await self._call(pipe.execute())

    async def counters(self, room: str) -> RoomCounters:
        pipe = self._db(room).pipeline(transaction=False)
        pipe.hgetall(self._k(room, "stats"))
        pipe.hgetall(self._k(room, "chatmin"))
        pipe.get(self._k(room, "likes"))
        pipe.hlen(self._k(room, "known"))
        stats, per_minute, likes, unique = await self._call(pipe.execute())
        fields = {k.decode(): v.decode() for k, v in stats.items()}
        return RoomCounters(
            chat_total=int(fields.get("chat", 0)),
            chat_per_minute={int(k): int(v) for k, v in per_minute.items()},
            likes=int(likes or 0),
            unique_members=int(unique),
            presence=PresenceFold.from_wire(fields),
        )

    async def room_log(self, room: str) -> list[dict[str, Any]]:
        entries = await self._call(self._db(room).lrange(self._k(room, "log"), 0, -1))
        return [_unpack(e) for e in entries]

    async def all_polls(self, room: str) -> list[PollView]:
        ids = [
            i.decode()
            for i in await self._call(self._db(room).zrange(self._k(room, "polls"), 0, -1))
        ]
        views = []
        for poll_id in ids:
            found = await self._poll_view(room, poll_id, None)
            if found is not None:
                views.append(found[0])
        return views

    def _report_key(self, room: str) -> str:
        return ":".join((self._prefix, "report", room))

    async def keep_report(self, room: str, report: dict[str, Any], ttl_s: int) -> None:
        await self._call(self._db(room).set(self._report_key(room), _pack(report), ex=ttl_s))

    async def kept_report(self, room: str) -> dict[str, Any] | None:
        raw = await self._call(self._db(room).get(self._report_key(room)))
        return None if raw is None else dict(_unpack(raw))


ROOM_LOG_LIMIT = 10_000


def _wrap(envelope: Envelope) -> bytes:
    return _ENVELOPE + _pack(envelope.to_wire())


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A Redis flat field/value list (HGETALL, stream entry fields from Lua) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _seq_of(entry_id: bytes) -> int:
    return int(entry_id.split(b"-", 1)[0])


def _chat_message(room: str, seq: int, payload: bytes) -> ChatMessage:
    ts, user, name, role, text, cid = _unpack(payload)
    return ChatMessage(room, seq, ts, user, name, role, text, cid)


def _poll_from_hash(
    poll_id: str, data: dict[bytes, bytes], my_vote: bytes | None
) -> tuple[PollView, int] | None:
    if not data:
        return None
    options = _unpack(data[b"options"])
    votes = [int(data.get(f"v{i}".encode(), b"0")) for i in range(len(options))]
    view: PollView = {
        "id": poll_id,
        "question": data[b"question"].decode(),
        "options": [{"text": text, "votes": v} for text, v in zip(options, votes, strict=True)],
        "total": sum(votes),
        "open": data[b"open"] == b"1",
    }
    closes_at = int(data[b"closes_at"])
    if closes_at:
        view["closes_at"] = closes_at
    if my_vote is not None:
        view["my_vote"] = int(my_vote)
    return view, int(data[b"closed_at"])


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
