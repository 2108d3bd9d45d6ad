"""Every place where the SFU reaches into aiortc or aioice internals, and nowhere else.

aiortc is pinned to :data:`AIORTC_VERSION`. Each hook below names the private
attribute or function it relies on, and :func:`check` verifies all of them
(existence, signature, and that the code calling them still does), so an
upgrade that breaks one fails at startup and in ``tests/media/test_hooks.py``
instead of silently decoding, leaking or mis-routing media.

The hooks:

* **Receive without decoding** (:func:`tap_receiver`): ``RTCRtpReceiver``
  hands each depacketized frame to ``__decoder_queue`` (a ``queue.Queue``
  read by a decoder thread). We swap that queue, before ``receive()`` starts
  the thread, for a :class:`Tap` that gives the encoded frame to the SFU on
  the event loop and parks the thread until the receiver stops. No decoder is
  ever created; the thread only exists because ``receive()`` insists on it.
* **Picture loss upstream** (:func:`send_pli`): ``RTCRtpReceiver._send_rtcp_pli``
  sends a PLI for a given media SSRC.
* **Picture loss from viewers** (:func:`on_keyframe_request`):
  ``RTCRtpSender._handle_rtcp_packet`` calls ``self._send_keyframe()`` on
  PLI/FIR, which only matters for a sender that encodes. We replace it per
  sender so the request goes to the publisher instead.
* **Host candidates** (:func:`host_addresses`): ``aioice.ice.gather_candidates``
  calls the module function ``get_host_addresses(use_ipv4, use_ipv6)``, which
  leaves out loopback. We wrap it once; inside ``host_addresses([...])`` it
  returns exactly the given addresses, elsewhere it behaves as before.
* **Inbound activity** (:func:`watch_inbound`): aioice's ``StunProtocol``
  hands every non-STUN datagram (DTLS, SRTP, SRTCP) to
  ``Connection.data_received``, and every STUN request to
  ``Connection.request_received``; we wrap both per connection to note when
  the peer last sent anything. aioice's own consent checks take 30 s to give
  up on a peer, and shortening them (one unanswered 0.5 s check at a time)
  drops healthy peers whenever a machine is briefly overloaded; silence is a
  sturdier sign.
* **Codec compatibility** (:func:`codec_compatible`): the same test aiortc's
  ``setRemoteDescription`` uses, so our codec choice always agrees with its
  negotiation.
* **Packets before the jitter buffer** (:func:`tap_packets`):
  ``RTCRtpReceiver._handle_rtp_packet`` recovers retransmissions (RTX), sends
  NACKs upstream, then calls ``__jitter_buffer.add(packet)``. We put a
  :class:`PacketTap` in front of that buffer, so the SFU sees each packet the
  moment it arrives, and the buffer still assembles frames for recording.
* **Late packets dropped, not a restart** (:func:`drop_late_packets`, on the
  node's receivers from publishers and in the test and load viewers): aiortc's
  ``JitterBuffer.add`` takes a packet 100 or more behind its ``_origin`` for a
  restarted stream, starts again from it and asks the sender for a keyframe,
  so a retransmission that lands after the buffer gave up on its gap (a busy
  receiver, reading its socket late) sends the frames back in time. A
  :class:`LateDropper` in front of ``__jitter_buffer`` drops such packets, as
  libwebrtc's packet buffer does; a jump back of more than
  :data:`RESTART_JUMP` packets still restarts. On the node it sits behind the
  :class:`PacketTap`, which still forwards every packet.
* **NACKs that repeat** (:func:`repeat_nacks`): ``_handle_rtp_packet`` calls
  ``__nack_generator.add(packet)`` for each (unwrapped) packet and, when it
  returns true, NACKs ``sorted(__nack_generator.missing)``. aiortc's own
  generator asks for a packet again only when another gap appears; we swap it
  for a :class:`RepeatingNacks` (see :mod:`media.nack`) that asks every
  repair round trip until the packet comes.
* **Sending past the sender's RTP loop** (:class:`PacketSender`): a viewer's
  ``RTCRtpSender`` keeps its RTCP loop (sender reports, NACK and PLI
  handling), but its packets are written by the SFU. We capture the
  parameters ``send()`` receives (payload types, ``mid``), read
  ``__rtp_header_extensions_map``, ``__rtx_payload_type`` and ``_rtx_ssrc``,
  keep ``__ntp_timestamp``, ``__rtp_timestamp``, ``__octet_count`` and
  ``__packet_count`` current for the sender reports, and replace
  ``_retransmit`` so NACKs are answered from the SFU's history. Packets are
  protected with the DTLS transport's ``_tx_srtp`` and written to the
  nominated ICE pair's datagram transport (``Connection._nominated``), as
  ``RTCDtlsTransport._send_rtp`` and aioice's ``Connection.sendto`` do, minus
  two coroutines per packet.
* **One DTLS certificate for the node** (:class:`SharedCertificate`,
  :func:`shared_certificate`): ``RTCPeerConnection.__init__`` calls
  ``RTCCertificate.generateCertificate()`` (a new EC key and a signed
  certificate), and every DTLS transport computes three fingerprints and
  builds an ``SSL.Context`` (``_create_ssl_context``). The module name
  ``aiortc.rtcpeerconnection.RTCCertificate`` is replaced once by a subclass
  whose ``generateCertificate`` returns the given certificate inside
  ``shared_certificate(...)`` and a new one elsewhere; the shared one computes
  its fingerprints once and keeps one context per set of SRTP profiles.
  Browsers, too, use one certificate for many connections: what identifies
  the connection to the peer is the fingerprint signed into the SDP.
* **Bitrate estimator on demand** (:class:`LazyBitrateEstimator`): every video
  ``RTCRtpReceiver`` builds a ``RemoteBitrateEstimator`` in ``__init__``, whose
  1,000-bucket rate counter costs about 4 ms of CPU, and a viewer's peer
  connection has a video receiver too, although it never receives. The module
  name ``aiortc.rtcrtpreceiver.RemoteBitrateEstimator`` is replaced once by a
  stand-in that builds the real estimator on the first packet; the receiver
  only ever calls ``add()`` on it, and sends a REMB for each estimate it
  returns, which the stand-in paces.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCCertificate, RTCDtlsFingerprint
from aiortc.rtcrtpparameters import (
    RTCRtpCodecCapability,
    RTCRtpCodecParameters,
    RTCRtpSendParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator
from aiortc.rtp import (
    RTCP_PSFB_APP,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from media.nack import NackSchedule
from media.rtp import SEQ_MOD, RtpWriter

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_NACK_ATTR = "_RTCRtpReceiver__nack_generator"
_EXTENSIONS_ATTR = "_RTCRtpSender__rtp_header_extensions_map"
_RTX_PT_ATTR = "_RTCRtpSender__rtx_payload_type"

#: Bytes queued on a viewer's socket (the kernel's buffer was full) past which
#: packets are dropped rather than queued without bound; NACK and PLI recover.
WRITE_BUFFER_LIMIT = 256 * 1024


class HookError(RuntimeError):
    """An aiortc/aioice internal the SFU relies on is missing or has changed."""


# -- receive side --------------------------------------------------------------------

FrameSink = Callable[[RTCRtpCodecParameters, JitterFrame], None]


class Tap:
    """Stands in for a receiver's decoder queue: frames go to the SFU, not a decoder.

    ``put`` runs on the event loop (``RTCRtpReceiver._handle_rtp_packet``), and
    ``put(None)`` when the receiver stops; ``get`` runs in the receiver's
    decoder thread and blocks until then, so that thread never decodes.
    """

    def __init__(self, on_frame: FrameSink, on_end: Callable[[], None]) -> None:
        self._on_frame = on_frame
        self._on_end = on_end
        self._ended = threading.Event()
        self.frames = 0

    def put(self, item: tuple[RTCRtpCodecParameters, JitterFrame] | None) -> None:
        if item is None:
            if not self._ended.is_set():
                self._ended.set()
                self._on_end()
            return
        if not self._ended.is_set():
            self.frames += 1
            self._on_frame(*item)

    def get(self) -> None:
        self._ended.wait()
        return None


def tap_receiver(receiver: RTCRtpReceiver, on_frame: FrameSink, on_end: Callable[[], None]) -> Tap:
    """Route ``receiver``'s encoded frames to ``on_frame``; call before it starts receiving."""
    if getattr(receiver, _THREAD_ATTR) is not None:
        raise HookError("tap_receiver: the receiver has already started")
    if not isinstance(getattr(receiver, _QUEUE_ATTR), queue.Queue):
        raise HookError(f"tap_receiver: {_QUEUE_ATTR} is not a queue.Queue")
    tap = Tap(on_frame, on_end)
    setattr(receiver, _QUEUE_ATTR, tap)
    return tap


def is_tapped(receiver: RTCRtpReceiver) -> bool:
    """True when ``receiver`` gives its frames to the SFU rather than to a decoder."""
    return isinstance(getattr(receiver, _QUEUE_ATTR), Tap)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """Ask the remote sender of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    result: Awaitable[None] = receiver._send_rtcp_pli(media_ssrc)
    return result


PacketSink = Callable[[RtpPacket], None]


class PacketTap:
    """Stands in for a receiver's jitter buffer: each packet goes to the SFU, then on."""

    def __init__(self, buffer: JitterBuffer | LateDropper, on_packet: PacketSink) -> None:
        self._buffer = buffer
        self._on_packet = on_packet
        self.packets = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        self.packets += 1
        self._on_packet(packet)
        return self._buffer.add(packet)


def tap_packets(receiver: RTCRtpReceiver, on_packet: PacketSink) -> PacketTap:
    """Give ``receiver``'s packets (retransmissions recovered) to ``on_packet`` on arrival.

    Call :func:`drop_late_packets` first, if at all: the tap goes in front of it.
    """
    buffer = getattr(receiver, _JITTER_ATTR)
    if not isinstance(buffer, JitterBuffer | LateDropper):
        raise HookError(f"tap_packets: {_JITTER_ATTR} is not a JitterBuffer")
    tap = PacketTap(buffer, on_packet)
    setattr(receiver, _JITTER_ATTR, tap)
    return tap


#: A packet this far or farther behind a jitter buffer's origin is a restarted stream.
RESTART_JUMP = 4096


class LateDropper:
    """Stands in for a receiver's jitter buffer: packets behind its origin are dropped."""

    def __init__(self, buffer: JitterBuffer) -> None:
        self._buffer = buffer
        self.dropped = 0

    @property
    def capacity(self) -> int:
        return self._buffer.capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        origin = self._buffer._origin
        if origin is not None:
            behind = (origin - packet.sequence_number) % SEQ_MOD
            if 0 < behind < RESTART_JUMP:
                self.dropped += 1
                return False, None
        return self._buffer.add(packet)


def drop_late_packets(receiver: RTCRtpReceiver) -> LateDropper:
    """Make ``receiver`` drop packets its jitter buffer has moved past: :class:`LateDropper`."""
    buffer = getattr(receiver, _JITTER_ATTR)
    if isinstance(buffer, LateDropper):
        return buffer
    if not isinstance(buffer, JitterBuffer):
        raise HookError(f"drop_late_packets: {_JITTER_ATTR} is not a JitterBuffer")
    dropper = LateDropper(buffer)
    setattr(receiver, _JITTER_ATTR, dropper)
    return dropper


class RepeatingNacks:
    """Stands in for a receiver's ``NackGenerator``, asking as :class:`NackSchedule` says."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.schedule = NackSchedule()
        self.missing: list[int] = []  # what the receiver NACKs when add() is true
        self._clock = clock

    def add(self, packet: RtpPacket) -> bool:
        self.missing = self.schedule.add(packet.sequence_number, self._clock())
        return bool(self.missing)


def repeat_nacks(receiver: RTCRtpReceiver) -> RepeatingNacks | None:
    """Make a video ``receiver`` ask for lost packets until they come (None for audio)."""
    generator = getattr(receiver, _NACK_ATTR)
    if generator is None:
        return None
    if isinstance(generator, RepeatingNacks):
        return generator
    if not isinstance(generator, NackGenerator):
        raise HookError(f"repeat_nacks: {_NACK_ATTR} is not a NackGenerator")
    repeating = RepeatingNacks()
    setattr(receiver, _NACK_ATTR, repeating)
    return repeating


# -- send side -----------------------------------------------------------------------


class PacketSender:
    """A viewer's ``RTCRtpSender`` whose packets the SFU writes itself.

    Wrap the sender before negotiation; once its RTP loop has started (the
    sender's track is first read), :meth:`writer`, :attr:`rtx` and
    :meth:`transmitter` describe and reach the negotiated stream.
    """

    def __init__(self, sender: RTCRtpSender) -> None:
        self.sender = sender
        self.parameters: RTCRtpSendParameters | None = None
        original = sender.send

        async def send(parameters: RTCRtpSendParameters) -> None:
            self.parameters = parameters
            await original(parameters)

        sender.send = send  # type: ignore[method-assign]

    def writer(self) -> RtpWriter:
        """Packets with the sender's SSRC, payload type and ``mid`` header extension."""
        if self.parameters is None or not self.parameters.codecs:
            raise HookError("PacketSender.writer: the sender was never started")
        payload_type = self.parameters.codecs[0].payloadType
        if payload_type is None:
            raise HookError("PacketSender.writer: no payload type negotiated")
        template = RtpPacket(payload_type=payload_type, ssrc=self.sender._ssrc)
        template.extensions.mid = self.parameters.muxId
        serialized = template.serialize(getattr(self.sender, _EXTENSIONS_ATTR))
        return RtpWriter(self.sender._ssrc, payload_type, serialized[12:])

    @property
    def rtx(self) -> tuple[int, int] | None:
        """(payload type, SSRC) of the negotiated retransmission stream, if any."""
        payload_type = getattr(self.sender, _RTX_PT_ATTR)
        return None if payload_type is None else (payload_type, self.sender._rtx_ssrc)

    def transmitter(self) -> Callable[[bytes], bool]:
        """A function that protects and sends one RTP packet now; False if it could not."""
        dtls = self.sender.transport
        nominated = dtls.transport._connection._nominated
        connected = aiortc.rtcdtlstransport.State.CONNECTED

        def transmit(data: bytes) -> bool:
            pair = nominated.get(1)
            if pair is None or dtls._state is not connected:
                return False
            transport: Any = pair.protocol.transport
            if transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
                return False
            transport.sendto(dtls._tx_srtp.protect(data), pair.remote_addr)
            return True

        return transmit

    def clock(self, rtp_timestamp: int, ntp_time: int) -> None:
        """Pair ``rtp_timestamp`` with ``ntp_time`` (now) for the next sender report
        (RFC 3550 6.4.1)."""
        sender: Any = self.sender
        sender._RTCRtpSender__ntp_timestamp = ntp_time
        sender._RTCRtpSender__rtp_timestamp = rtp_timestamp

    def count(self, packets: int, payload_bytes: int) -> None:
        """Add to the packet and octet counts of the sender reports."""
        sender: Any = self.sender
        sender._RTCRtpSender__packet_count += packets
        sender._RTCRtpSender__octet_count += payload_bytes

    def on_nack(self, retransmit: Callable[[int], None]) -> None:
        """Answer the remote receiver's NACKs with ``retransmit(sequence_number)``."""

        async def answer(sequence_number: int) -> None:
            retransmit(sequence_number)

        self.sender._retransmit = answer  # type: ignore[method-assign]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote receiver of ``sender`` sends PLI or FIR."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def cap_bitrate(sender: RTCRtpSender, bitrate: int) -> None:
    """Hold ``sender``'s encoder at or under ``bitrate`` bit/s, whatever the receiver's
    estimate (REMB) allows: a publisher at a fixed rate, as in a benchmark's scenario."""
    handle = sender._handle_rtcp_packet

    async def capped(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            with contextlib.suppress(ValueError):
                estimate, ssrcs = unpack_remb_fci(packet.fci)
                if estimate > bitrate:
                    packet = RtcpPsfbPacket(
                        fmt=packet.fmt,
                        ssrc=packet.ssrc,
                        media_ssrc=packet.media_ssrc,
                        fci=pack_remb_fci(bitrate, ssrcs),
                    )
        await handle(packet)

    sender._handle_rtcp_packet = capped  # type: ignore[method-assign]


# -- DTLS ----------------------------------------------------------------------------


class SharedCertificate(RTCCertificate):
    """A DTLS certificate used by many peer connections: fingerprints and contexts made once."""

    def __init__(self, key: Any, cert: Any) -> None:
        super().__init__(key=key, cert=cert)
        self._fingerprints = super().getFingerprints()
        self._contexts: dict[tuple[bytes, ...], Any] = {}

    @classmethod
    def generate(cls) -> SharedCertificate:
        made = RTCCertificate.generateCertificate()
        return cls(key=made._key, cert=made._cert)

    def getFingerprints(self) -> list[RTCDtlsFingerprint]:
        return list(self._fingerprints)

    def _create_ssl_context(self, srtp_profiles: list[Any]) -> Any:
        key = tuple(profile.openssl_profile for profile in srtp_profiles)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = super()._create_ssl_context(srtp_profiles)
        return context


_certificate: contextvars.ContextVar[RTCCertificate | None] = contextvars.ContextVar(
    "roomserver_certificate", default=None
)


class _PeerConnectionCertificate(RTCCertificate):
    """What ``RTCPeerConnection.__init__`` calls: the shared certificate when one is set."""

    @classmethod
    def generateCertificate(cls) -> Any:
        return _certificate.get() or RTCCertificate.generateCertificate()


@contextlib.contextmanager
def shared_certificate(certificate: SharedCertificate) -> Iterator[None]:
    """Peer connections created within this block use ``certificate``."""
    install()
    token = _certificate.set(certificate)
    try:
        yield
    finally:
        _certificate.reset(token)


# -- ICE -----------------------------------------------------------------------------

_host_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "roomserver_host_addresses", default=None
)
_original_get_host_addresses: Callable[[bool, bool], list[str]] = aioice.ice.get_host_addresses


def machine_addresses() -> list[str]:
    """This machine's addresses as aioice gathers them by default (loopback left out)."""
    return _original_get_host_addresses(True, True)


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    chosen = _host_addresses.get()
    if chosen is None:
        return _original_get_host_addresses(use_ipv4, use_ipv6)
    return list(chosen)


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Within this block, ICE gathering binds and announces exactly ``addresses``.

    Wrap ``setLocalDescription`` (where aiortc gathers) in it. Tasks started
    inside inherit the choice, tasks started elsewhere are not affected.
    """
    install()
    token = _host_addresses.set(tuple(addresses))
    try:
        yield
    finally:
        _host_addresses.reset(token)


def watch_inbound(pc: RTCPeerConnection) -> Callable[[], float]:
    """A function giving the ``time.monotonic()`` of the last datagram ``pc``'s peer sent.

    Call it once the ICE transports are final (after ``setRemoteDescription``)
    and before media flows (before ``__connect`` runs).
    """
    last = [time.monotonic()]
    connections = {id(c): c for c in _ice_connections(pc)}
    for connection in connections.values():
        data_received = connection.data_received
        request_received = connection.request_received

        def on_data(data: bytes, component: int, forward: Any = data_received) -> None:
            last[0] = time.monotonic()
            forward(data, component)

        def on_request(
            message: Any, addr: Any, protocol: Any, forward: Any = request_received
        ) -> None:
            last[0] = time.monotonic()
            forward(message, addr, protocol)

        connection.data_received = on_data  # type: ignore[method-assign]
        connection.request_received = on_request  # type: ignore[method-assign]
    return lambda: last[0]


def _ice_connections(pc: RTCPeerConnection) -> list[aioice.Connection]:
    return [t.receiver.transport.transport._connection for t in pc.getTransceivers()]


def codec_compatible(
    a: RTCRtpCodecParameters | RTCRtpCodecCapability,
    b: RTCRtpCodecParameters | RTCRtpCodecCapability,
) -> bool:
    """Whether aiortc's negotiation would match ``a`` with ``b`` (H.264 profiles included)."""
    result: bool = aiortc.rtcpeerconnection.is_codec_compatible(a, b)  # type: ignore[arg-type]
    return result


def sever(pc: RTCPeerConnection) -> None:
    """Close ``pc``'s sockets without a goodbye, as a crashed or unplugged peer would.

    For tests and benchmarks of failure detection; ``pc.close()`` still works after.
    """
    for connection in _ice_connections(pc):
        for protocol in list(connection._protocols):
            protocol.transport.close()


#: Least time between two REMB reports to a publisher, unless the estimate falls.
REMB_INTERVAL_MS = 250


class LazyBitrateEstimator:
    """aiortc's ``RemoteBitrateEstimator``, built when the first packet arrives.

    It also paces the estimates it returns (each becomes a REMB packet to the
    publisher): aiortc's returns one for every packet while its detector sees
    overuse, which a busy server's own scheduling jitter triggers. A new
    estimate goes out at most every :data:`REMB_INTERVAL_MS`, or at once when
    it is lower than the last one sent, so the publisher still backs off
    without delay.
    """

    def __init__(self) -> None:
        self.real: RemoteBitrateEstimator | None = None
        self._sent_at: int | None = None
        self._sent_bitrate = 0

    def add(
        self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int
    ) -> tuple[int, list[int]] | None:
        if self.real is None:
            self.real = RemoteBitrateEstimator()
        estimate = self.real.add(arrival_time_ms, abs_send_time, payload_size, ssrc)
        if estimate is None:
            return None
        bitrate = estimate[0]
        due = self._sent_at is None or arrival_time_ms - self._sent_at >= REMB_INTERVAL_MS
        if not due and bitrate >= self._sent_bitrate:
            return None
        self._sent_at = arrival_time_ms
        self._sent_bitrate = bitrate
        return estimate


# -- installation and checks ------------------------------------------------------------

_installed = False


def install() -> None:
    """Check every hook point, and apply the one process-wide hook (host addresses) once."""
    global _installed
    if _installed:
        return
    check()
    aioice.ice.get_host_addresses = _get_host_addresses
    aiortc.rtcrtpreceiver.RemoteBitrateEstimator = LazyBitrateEstimator  # type: ignore[attr-defined, assignment]
    aiortc.rtcpeerconnection.RTCCertificate = _PeerConnectionCertificate  # type: ignore[attr-defined]
    _installed = True


def _params(func: Any) -> list[str]:
    return list(inspect.signature(func).parameters)


def _source(func: Any) -> str:
    return inspect.getsource(func)


def check() -> None:
    """Raise :class:`HookError` unless every internal used above is as expected."""
    problems: list[str] = []

    def expect(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    expect(aiortc.__version__ == AIORTC_VERSION, f"aiortc {AIORTC_VERSION} (pinned)")
    expect(aioice.__version__ == AIOICE_VERSION, f"aioice {AIOICE_VERSION}")

    receiver_init = _source(RTCRtpReceiver.__init__)
    expect(
        "self.__decoder_queue: queue.Queue = queue.Queue()" in receiver_init,
        "RTCRtpReceiver.__init__ creates __decoder_queue as a queue.Queue",
    )
    expect("self.__decoder_thread" in receiver_init, "RTCRtpReceiver has __decoder_thread")
    receive = _source(RTCRtpReceiver.receive)
    expect(
        "self.__decoder_queue," in receive and "target=decoder_worker" in receive,
        "RTCRtpReceiver.receive starts decoder_worker on __decoder_queue",
    )
    handle_rtp = _source(RTCRtpReceiver._handle_rtp_packet)
    expect(
        "self.__decoder_queue.put((codec, encoded_frame))" in handle_rtp,
        "RTCRtpReceiver._handle_rtp_packet puts (codec, encoded_frame)",
    )
    expect(
        "encoded_frame.timestamp = self.__timestamp_mapper.map(" in handle_rtp,
        "RTCRtpReceiver._handle_rtp_packet maps timestamps before queueing",
    )
    stop_decoder = _source(RTCRtpReceiver._RTCRtpReceiver__stop_decoder)  # type: ignore[attr-defined]
    expect(
        "self.__decoder_queue.put(None)" in stop_decoder,
        "RTCRtpReceiver.__stop_decoder puts None to end the decoder",
    )
    worker = _source(aiortc.rtcrtpreceiver.decoder_worker)
    expect(
        "task = input_q.get()" in worker and "if task is None:" in worker,
        "decoder_worker blocks on input_q.get() and ends on None",
    )
    expect(
        _params(aiortc.rtcrtpreceiver.decoder_worker)
        == ["loop", "input_q", "output_q", "decode_error"],
        "decoder_worker(loop, input_q, output_q, decode_error)",
    )
    expect(
        set(_params(JitterFrame.__init__)) == {"self", "data", "timestamp"},
        "JitterFrame(data, timestamp)",
    )
    expect(
        _params(RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"]
        and inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli),
        "async RTCRtpReceiver._send_rtcp_pli(media_ssrc)",
    )

    expect(
        "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in handle_rtp
        and handle_rtp.index("unwrap_rtx(") < handle_rtp.index("self.__jitter_buffer.add(")
        and "self.__jitter_buffer = JitterBuffer(" in receiver_init,
        "RTCRtpReceiver._handle_rtp_packet gives unwrapped packets to __jitter_buffer.add",
    )
    jitter_add = _source(JitterBuffer.add)
    expect(
        "self._origin: Optional[int] = None" in _source(JitterBuffer.__init__)
        and "if misorder >= MAX_MISORDER:" in jitter_add
        and "self._origin = packet.sequence_number" in jitter_add,
        "JitterBuffer keeps _origin and restarts at a packet MAX_MISORDER behind it",
    )
    expect(
        "self.__nack_generator = NackGenerator()" in receiver_init
        and "self.__nack_generator.add(packet)" in handle_rtp
        and "sorted(self.__nack_generator.missing)" in handle_rtp
        and handle_rtp.index("unwrap_rtx(") < handle_rtp.index("self.__nack_generator.add("),
        "RTCRtpReceiver._handle_rtp_packet NACKs __nack_generator.missing when add() is true",
    )
    sender_init = _source(RTCRtpSender.__init__)
    expect(
        all(
            f"self.__{name}" in sender_init
            for name in (
                "rtp_header_extensions_map",
                "rtx_payload_type",
                "ntp_timestamp",
                "rtp_timestamp",
                "octet_count",
                "packet_count",
            )
        )
        and "self._rtx_ssrc" in sender_init
        and "self._ssrc" in sender_init,
        "RTCRtpSender keeps its stream state in the attributes PacketSender uses",
    )
    sender_send = _source(RTCRtpSender.send)
    expect(
        "self.__rtp_header_extensions_map.configure(parameters)" in sender_send
        and "self._run_rtp(parameters.codecs[0])" in sender_send,
        "RTCRtpSender.send configures extensions and sends codecs[0]",
    )
    expect(
        "self.__packet_count" in _source(RTCRtpSender._run_rtcp)
        and "self.__ntp_timestamp" in _source(RTCRtpSender._run_rtcp),
        "RTCRtpSender._run_rtcp reports __ntp_timestamp and __packet_count",
    )
    expect(
        _params(RTCRtpSender._retransmit) == ["self", "sequence_number"]
        and "await self._retransmit(seq)" in _source(RTCRtpSender._handle_rtcp_packet),
        "RTCRtpSender._handle_rtcp_packet answers NACKs with await self._retransmit(seq)",
    )
    expect(
        "unpack_remb_fci(packet.fci)" in _source(RTCRtpSender._handle_rtcp_packet)
        and "self.__encoder.target_bitrate = bitrate" in _source(RTCRtpSender._handle_rtcp_packet),
        "RTCRtpSender._handle_rtcp_packet sets its encoder's target_bitrate from REMB",
    )
    dtls_send = _source(aiortc.RTCDtlsTransport._send_rtp)
    expect(
        "self._tx_srtp.protect(data)" in dtls_send
        and "await self.transport._send(data)" in dtls_send
        and "State.CONNECTED" in dtls_send,
        "RTCDtlsTransport._send_rtp protects with _tx_srtp and sends on the ICE transport",
    )
    expect(
        "self._send = self._connection.send" in _source(aiortc.RTCIceTransport.__init__),
        "RTCIceTransport._send is its aioice connection's send",
    )
    expect(
        "await self.sendto(data, 1)" in _source(aioice.ice.Connection.send)
        and "self._nominated.get(component)" in _source(aioice.ice.Connection.sendto)
        and "active_pair.protocol.send_data(data, active_pair.remote_addr)"
        in _source(aioice.ice.Connection.sendto)
        and "self.transport.sendto(data, addr)" in _source(aioice.ice.StunProtocol.send_data),
        "aioice Connection.sendto writes to the nominated pair's datagram transport",
    )
    expect(
        "self.__certificates = [RTCCertificate.generateCertificate()]"
        in _source(RTCPeerConnection.__init__)
        and "RTCDtlsTransport(iceTransport, self.__certificates)"
        in _source(RTCPeerConnection._RTCPeerConnection__createDtlsTransport),  # type: ignore[attr-defined]
        "RTCPeerConnection takes its certificate from RTCCertificate.generateCertificate()",
    )
    dtls_init = _source(aiortc.RTCDtlsTransport.__init__)
    dtls_start = _source(aiortc.RTCDtlsTransport.start)
    expect(
        "self.__local_certificate = certificate" in dtls_init
        and "self.__local_certificate._create_ssl_context(" in dtls_start
        and "srtp_profiles=self._srtp_profiles" in dtls_start
        and _params(RTCCertificate._create_ssl_context) == ["self", "srtp_profiles"]
        and "self.__local_certificate.getFingerprints()"
        in _source(aiortc.RTCDtlsTransport.getLocalParameters)
        and "SSL.Connection(" in dtls_start,
        "RTCDtlsTransport makes an SSL.Connection from _create_ssl_context(srtp_profiles=...)",
    )
    expect(_params(RTCRtpSender._send_keyframe) == ["self"], "RTCRtpSender._send_keyframe()")
    sender_rtcp = _source(RTCRtpSender._handle_rtcp_packet)
    expect(
        "RTCP_PSFB_PLI" in sender_rtcp and "self._send_keyframe()" in sender_rtcp,
        "RTCRtpSender._handle_rtcp_packet calls self._send_keyframe() on PLI/FIR",
    )
    next_frame = _source(RTCRtpSender._next_encoded_frame)
    expect(
        "self.__encoder.pack(data)" in next_frame,
        "RTCRtpSender._next_encoded_frame packs av.Packet input without encoding",
    )

    expect(
        _params(_original_get_host_addresses) == ["use_ipv4", "use_ipv6"],
        "aioice.ice.get_host_addresses(use_ipv4, use_ipv6)",
    )
    expect(
        "get_host_addresses(" in _source(aioice.ice.Connection.gather_candidates),
        "aioice Connection.gather_candidates calls get_host_addresses",
    )
    datagram = _source(aioice.ice.StunProtocol.datagram_received)
    expect(
        "self.receiver.data_received(data, self.local_candidate.component)" in datagram
        and "self.receiver.request_received(message, addr, self)" in datagram,
        "aioice StunProtocol.datagram_received calls receiver.data_received/request_received",
    )
    expect(
        _params(aioice.ice.Connection.data_received) == ["self", "data", "component"]
        and _params(aioice.ice.Connection.request_received)
        == ["self", "message", "addr", "protocol"],
        "aioice Connection.data_received(data, component), request_received(message, addr, "
        "protocol)",
    )
    expect(
        "self._connection = gatherer._connection" in _source(aiortc.RTCIceTransport.__init__),
        "RTCIceTransport keeps its aioice connection in _connection",
    )
    expect(
        _params(aiortc.rtcpeerconnection.is_codec_compatible) == ["a", "b"],
        "aiortc.rtcpeerconnection.is_codec_compatible(a, b)",
    )
    expect(
        hasattr(aioice.ice.Connection, "__init__")
        and "self._protocols" in _source(aioice.ice.Connection.__init__),
        "aioice Connection keeps its sockets in _protocols",
    )
    receiver_init = _source(RTCRtpReceiver.__init__)
    receiver_rtp = _source(RTCRtpReceiver._handle_rtp_packet)
    expect(
        "= RemoteBitrateEstimator()" in receiver_init
        and receiver_rtp.count("__remote_bitrate_estimator.") == 1
        and "__remote_bitrate_estimator.add(" in receiver_rtp
        and _params(RemoteBitrateEstimator.add)
        == ["self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"],
        "RTCRtpReceiver builds RemoteBitrateEstimator() by name and only calls its add()",
    )
    if problems:
        raise HookError(
            "aiortc/aioice internals changed; media/hooks.py needs updating: " + "; ".join(problems)
        )
