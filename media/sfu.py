"""The SFU: one aiortc peer connection per publication and per subscription.

Invariants:

* Every peer connection is in exactly one place: ``_negotiating`` while its
  offer/answer runs, ``_live`` (keyed by room, user and the publisher it
  receives from, ``None`` for the user's own publication) afterwards, and
  nowhere once closed. :attr:`SFU.peer_count` counts both, and a member may
  hold at most :data:`MAX_PEERS_PER_MEMBER` at once.
* A bad offer is refused (:mod:`media.offers`) before a peer connection is
  created; one that aiortc still rejects closes the connection it made.
* A second publish or subscribe with the same key replaces the first once the
  new one is negotiated. A republish with the same codecs keeps the feeds, so
  viewers carry on; otherwise subscriptions to the old one are closed.
* A publication's media is never decoded: its receivers are tapped twice,
  packets on arrival (:func:`media.hooks.tap_packets`) and complete frames
  (:func:`media.hooks.tap_receiver`, for recorders), both going to a
  :class:`~media.forward.Feed`. Each viewer's sender is driven packet by
  packet (:class:`~media.forward.PacketViewer` through
  :class:`media.hooks.PacketSender`); its own RTP loop only waits on a
  :class:`~media.forward.PacketTrack`.
* When a publication ends, for whatever reason, the subscriptions to it end
  too. When it ends by itself (ICE/DTLS failure, the peer closed, or no
  connection within :data:`CONNECT_TIMEOUT_S`), ``publisher_lost`` is called so
  the node can announce it; when the node ended it, the node announces.
* A connected peer that sends nothing at all (no media, RTCP or STUN) for
  :data:`SILENCE_S` is taken as gone: noticed within
  :data:`FAILURE_DETECTION_S`, under 10 s.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtpPacket

from media import hooks, offers
from media.forward import Feed, PacketTrack, PacketViewer
from media.ice import IcePolicy
from roomserver.config import Settings
from roomserver.errors import BadRequest, ClientError, Forbidden, NotFound

log = logging.getLogger(__name__)

MAX_PEERS_PER_MEMBER = 8
CONNECT_TIMEOUT_S = 10.0
SILENCE_S = 8.0
WATCH_INTERVAL_S = 0.5
FAILURE_DETECTION_S = SILENCE_S + WATCH_INTERVAL_S
CERTIFICATE_RENEW_S = 24 * 3600.0

#: (room, user, publisher or None for a publication, tab): a user may watch from
#: several connections (tabs) at once, each with its own subscriptions.
Key = tuple[str, str, str | None, str]


@dataclass(eq=False)
class Peer:
    """One peer connection: a user's publication (``publisher`` None) or subscription."""

    room: str
    user: str
    publisher: str | None
    pc: RTCPeerConnection
    tab: str = ""
    feeds: dict[str, Feed] = field(default_factory=dict)
    tracks: list[PacketTrack] = field(default_factory=list)
    closing: bool = False
    timer: asyncio.TimerHandle | None = None
    last_inbound: Callable[[], float] | None = None

    @property
    def key(self) -> Key:
        return (self.room, self.user, self.publisher, self.tab)

    @property
    def source(self) -> str:
        """The publisher whose media this peer carries."""
        return self.publisher if self.publisher is not None else self.user

    def __str__(self) -> str:
        what = "publish" if self.publisher is None else f"subscribe publisher={self.publisher}"
        return f"{what} room={self.room} user={self.user}"


class SFU:
    """The node's :class:`~roomserver.node.MediaBackend` on aiortc."""

    def __init__(
        self, settings: Settings, publisher_lost: Callable[[str, str], Awaitable[None]]
    ) -> None:
        hooks.install()
        self.ice = IcePolicy.from_settings(settings.rtc_ip, settings.ice_server)
        self._publisher_lost = publisher_lost
        self._live: dict[Key, Peer] = {}
        self._negotiating: set[Peer] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False
        self.counters: Counter[str] = Counter()
        self._gone: Counter[str] = Counter()  # packet counts of closed peers
        self._certificate = hooks.SharedCertificate.generate()
        self._certificate_made = time.monotonic()

    # -- MediaBackend -------------------------------------------------------------------

    async def publish(self, room: str, user: str, sdp: str) -> str:
        description = offers.parse_offer(sdp)
        sections = offers.plan_publish(description)
        peer = self._admit(room, user, None)
        receivers: dict[str, RTCRtpReceiver] = {}

        def setup() -> None:
            for section in sections:
                transceiver = peer.pc.addTransceiver(section.kind, direction="recvonly")
                transceiver.setCodecPreferences(section.preferences)
                self._tap(peer, section.kind, transceiver.receiver)
                receivers[section.kind] = transceiver.receiver

        answer, codecs = await self._negotiate(peer, sdp, setup)
        old = self._live.get(peer.key)
        for section in sections:
            if section.kind not in codecs or section.codec is None:
                continue
            reused = old.feeds.pop(section.kind, None) if old is not None else None
            if reused is not None and not reused.ended and reused.codec == section.codec:
                feed = reused
            else:
                if reused is not None and old is not None:
                    old.feeds[section.kind] = reused
                feed = Feed(section.kind, section.codec)
            feed.start_source(peer)
            feed.keyframes.send = functools.partial(
                self._send_pli, receivers[section.kind], section.media_ssrc
            )
            peer.feeds[section.kind] = feed
        self._go_live(peer)
        if old is not None:
            if old.feeds:
                # A kind or codec changed: those viewers must subscribe again.
                await self._close_subscriptions_to(room, user)
            await self._close(old)
        self.counters["publish"] += 1
        return answer

    async def subscribe(self, room: str, user: str, publisher: str, sdp: str, tab: str = "") -> str:
        publication = self._live.get((room, publisher, None, ""))
        feeds = {}
        if publication is not None:
            feeds = {kind: f for kind, f in publication.feeds.items() if not f.ended}
        if not feeds:
            raise NotFound(f"{publisher!r} has no live tracks on this node")
        description = offers.parse_offer(sdp)
        sections = offers.plan_subscribe(
            description, {kind: feed.codec for kind, feed in feeds.items()}
        )
        if "video" in feeds:
            feeds["video"].expect_viewer()  # a keyframe, if needed, comes while it connects
        peer = self._admit(room, user, publisher, tab)

        def setup() -> None:
            for section in sections:
                feed = feeds.get(section.kind)
                if feed is None:
                    peer.pc.addTransceiver(section.kind, direction="inactive")
                    continue
                transceiver = peer.pc.addTransceiver(section.kind, direction="sendonly")
                transceiver.setCodecPreferences(section.preferences)
                link = hooks.PacketSender(transceiver.sender)
                track = PacketTrack(feed, functools.partial(self._packet_viewer, feed, link))
                transceiver.sender.replaceTrack(track)
                peer.tracks.append(track)
                hooks.on_keyframe_request(
                    transceiver.sender, functools.partial(feed.request_keyframe, "viewer")
                )

        answer, _ = await self._negotiate(peer, sdp, setup, codecs=False)
        if any(feed.ended for feed in feeds.values()):  # unpublished meanwhile
            await self._close(peer)
            raise NotFound(f"{publisher!r} stopped publishing")
        old = self._live.get(peer.key)
        self._go_live(peer)
        if old is not None:
            await self._close(old)
        self.counters["subscribe"] += 1
        return answer

    async def unpublish(self, room: str, user: str) -> None:
        await self._close_where(lambda p: p.room == room and p.source == user)

    async def unsubscribe(self, room: str, user: str, publisher: str, tab: str = "") -> None:
        await self._close_where(lambda p: p.key == (room, user, publisher, tab))

    async def member_gone(self, room: str, user: str, tab: str = "") -> None:
        """Free a user's peers: with ``tab``, that connection's subscriptions only (another
        tab stays); without, everything of the user and every subscription to it."""
        if tab:
            await self._close_where(lambda p: p.room == room and p.user == user and p.tab == tab)
        else:
            await self._close_where(lambda p: p.room == room and user in (p.user, p.source))

    async def guests_gone(self, room: str, prefix: str) -> None:
        """Close the subscriptions of another room's viewers (a PK battle ended)."""
        await self._close_where(lambda p: p.room == room and p.user.startswith(prefix))

    async def room_ended(self, room: str) -> None:
        await self._close_where(lambda p: p.room == room)

    async def close(self) -> None:
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        await self._close_where(lambda p: True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- inspection (tests, metrics, benchmarks) ------------------------------------------

    @property
    def peer_count(self) -> int:
        """Peer connections held: negotiating and live."""
        return len(self._live) + len(self._negotiating)

    def peers(self) -> list[Peer]:
        return [*self._live.values(), *self._negotiating]

    def feeds(self, room: str, publisher: str) -> dict[str, Feed]:
        publication = self._live.get((room, publisher, None, ""))
        return dict(publication.feeds) if publication is not None else {}

    def stats(self) -> dict[str, Any]:
        feeds = [f for p in self._live.values() for f in p.feeds.values()]
        requests: Counter[str] = Counter()
        for feed in feeds:
            requests.update(feed.keyframes.requests)
        tracks = [t for p in self._live.values() for t in p.tracks]
        viewers = [t.viewer for t in tracks if t.viewer is not None]
        return {
            "peers": self.peer_count,
            "publications": sum(1 for p in self._live.values() if p.publisher is None),
            "subscriptions": sum(1 for p in self._live.values() if p.publisher is not None),
            "frames_in": sum(f.frames_in for f in feeds),
            # Packet counts only grow: live peers' plus those of peers closed before.
            "packets_in": self._gone["packets_in"] + sum(f.packets_in for f in feeds),
            "packets_out": self._gone["packets_out"] + sum(v.packets_out for v in viewers),
            "retransmitted": self._gone["retransmitted"] + sum(v.retransmitted for v in viewers),
            "dropped": self._gone["dropped"] + sum(v.dropped for v in viewers),
            "unanswered": self._gone["unanswered"] + sum(v.unanswered for v in viewers),
            "plis_sent": sum(f.keyframes.sent for f in feeds),
            "keyframe_requests": dict(requests),
            **self.counters,
        }

    # -- peer connections --------------------------------------------------------------

    def _admit(self, room: str, user: str, publisher: str | None, tab: str = "") -> Peer:
        held = sum(1 for p in self.peers() if p.room == room and p.user == user)
        if held >= MAX_PEERS_PER_MEMBER:
            raise Forbidden(f"too many peer connections: at most {MAX_PEERS_PER_MEMBER} per member")
        with hooks.shared_certificate(self._node_certificate()):
            pc = RTCPeerConnection(self.ice.configuration())
        peer = Peer(room, user, publisher, pc, tab)
        self._negotiating.add(peer)
        peer.pc.on("connectionstatechange", lambda p=peer: self._state_changed(p))
        return peer

    def _node_certificate(self) -> hooks.SharedCertificate:
        """The DTLS certificate of new peer connections: one per node, renewed daily
        (aiortc's certificates are valid for 30 days)."""
        if time.monotonic() - self._certificate_made > CERTIFICATE_RENEW_S:
            self._certificate = hooks.SharedCertificate.generate()
            self._certificate_made = time.monotonic()
        return self._certificate

    async def _negotiate(
        self, peer: Peer, sdp: str, setup: Callable[[], None], codecs: bool = True
    ) -> tuple[str, dict[str, RTCRtpCodecParameters]]:
        """Set up and answer ``sdp`` on ``peer``; on any failure the peer connection is closed.

        Also returns the codecs the answer settled on, unless ``codecs`` is false (a
        subscription is locked to the publisher's codecs already, and parsing the answer
        again is a good part of a subscribe's CPU)."""
        try:
            setup()
            offer = RTCSessionDescription(sdp=self.ice.filter_offer(sdp), type="offer")
            try:
                await peer.pc.setRemoteDescription(offer)
            except Exception as exc:
                if peer.closing:
                    raise
                raise BadRequest(f"sdp: refused ({exc or type(exc).__name__})") from None
            try:
                answer = await peer.pc.createAnswer()
                with self.ice.gathering():
                    await peer.pc.setLocalDescription(answer)
            except Exception as exc:
                if peer.closing:
                    raise
                log.warning("%s: offer passed our checks, not aiortc's", peer, exc_info=True)
                raise BadRequest(f"sdp: cannot be answered ({exc or type(exc).__name__})") from None
            peer.last_inbound = hooks.watch_inbound(peer.pc)  # before __connect runs
            local = peer.pc.localDescription.sdp
            if peer.closing:
                raise NotFound("closed while it was being set up")
            answered = offers.answered_codecs(local) if codecs else {}
            return self.ice.rewrite_answer(local), answered
        except BaseException as exc:
            was_closing = peer.closing
            await self._close(peer)
            if was_closing and isinstance(exc, Exception) and not isinstance(exc, ClientError):
                raise NotFound("closed while it was being set up") from None
            raise

    def _go_live(self, peer: Peer) -> None:
        self._negotiating.discard(peer)
        self._live[peer.key] = peer
        loop = asyncio.get_running_loop()
        peer.timer = loop.call_later(CONNECT_TIMEOUT_S, self._connect_deadline, peer)
        if self._watchdog is None:
            self._watchdog = loop.create_task(self._watch())
        log.info("%s: live", peer)

    def _connect_deadline(self, peer: Peer) -> None:
        peer.timer = None
        if not peer.closing and peer.pc.connectionState != "connected":
            log.info("%s: no connection within %.0f s", peer, CONNECT_TIMEOUT_S)
            self._spawn(self._lost(peer))

    async def _watch(self) -> None:
        """Drop connected peers that went silent (unplugged, crashed, network gone)."""
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            now = time.monotonic()
            for peer in list(self._live.values()):
                heard = peer.last_inbound
                if peer.closing or heard is None or peer.pc.connectionState != "connected":
                    continue
                if now - heard() > SILENCE_S:
                    log.info("%s: silent for %.0f s", peer, SILENCE_S)
                    self._spawn(self._lost(peer))

    def _state_changed(self, peer: Peer) -> None:
        state = peer.pc.connectionState
        if state == "connected" and peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        elif state in ("failed", "closed") and not peer.closing:
            log.info("%s: connection %s", peer, state)
            self._spawn(self._lost(peer))

    async def _lost(self, peer: Peer) -> None:
        """``peer`` ended by itself; a publication's end is announced through the node."""
        if peer.closing or self._live.get(peer.key) is not peer:
            return
        self.counters["lost"] += 1
        await self._close(peer)
        if peer.publisher is None:
            await self._close_subscriptions_to(peer.room, peer.user)
            if not self._closed:
                await self._publisher_lost(peer.room, peer.user)

    async def _close_subscriptions_to(self, room: str, publisher: str) -> None:
        await self._close_where(lambda p: p.room == room and p.publisher == publisher)

    async def _close_where(self, match: Callable[[Peer], bool]) -> None:
        chosen = [p for p in self.peers() if match(p)]
        await asyncio.gather(*(self._close(p) for p in chosen))

    async def _close(self, peer: Peer) -> None:
        if peer.closing:
            return
        peer.closing = True
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        self._negotiating.discard(peer)
        if self._live.get(peer.key) is peer:
            del self._live[peer.key]
        for feed in peer.feeds.values():
            feed.source_ended(peer)
            if feed.ended:  # a feed carried on by a republish is counted there
                self._gone["packets_in"] += feed.packets_in
        for track in peer.tracks:
            viewer = track.viewer
            if viewer is not None:
                self._gone["packets_out"] += viewer.packets_out
                self._gone["retransmitted"] += viewer.retransmitted
                self._gone["dropped"] += viewer.dropped
                self._gone["unanswered"] += viewer.unanswered
            track.stop()
        try:
            await peer.pc.close()
        except Exception:
            log.exception("%s: close failed", peer)
        log.info("%s: closed", peer)

    # -- media -------------------------------------------------------------------------

    def _tap(self, peer: Peer, kind: str, receiver: RTCRtpReceiver) -> None:
        def on_frame(codec: RTCRtpCodecParameters, frame: JitterFrame) -> None:
            feed = peer.feeds.get(kind)
            if feed is not None:
                feed.push(frame.data, frame.timestamp, peer)

        def on_end() -> None:
            feed = peer.feeds.get(kind)
            if feed is not None:
                feed.source_ended(peer)

        def on_packet(packet: RtpPacket) -> None:
            feed = peer.feeds.get(kind)
            if feed is not None:
                feed.push_packet(
                    packet.sequence_number, packet.timestamp, packet.marker, packet.payload, peer
                )

        hooks.tap_receiver(receiver, on_frame, on_end)
        hooks.drop_late_packets(receiver)  # the frames (cache, recording) never go back
        hooks.tap_packets(receiver, on_packet)  # in front: every packet is forwarded
        hooks.repeat_nacks(receiver)

    @staticmethod
    def _packet_viewer(feed: Feed, link: hooks.PacketSender) -> PacketViewer:
        viewer = PacketViewer(feed, link)
        link.on_nack(viewer.retransmit)
        return viewer

    def _send_pli(self, receiver: RTCRtpReceiver, ssrc: int | None) -> None:
        if ssrc is None:
            sources = receiver.getSynchronizationSources()
            if len(sources) != 1:
                log.debug("no media SSRC known for a keyframe request")
                return
            ssrc = sources[0].source
        self._spawn(hooks.send_pli(receiver, ssrc))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media task failed", exc_info=task.exception())
