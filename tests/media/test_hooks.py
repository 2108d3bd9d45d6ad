"""Guards for media/hooks.py: fail loudly when an aiortc/aioice upgrade moves an internal.

Each test names the internal it guards. They need no network: receivers and
senders are driven directly, never connected.
"""

from __future__ import annotations

import asyncio
import inspect
import queue
import tomllib
from pathlib import Path
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import aiortc.rtcrtpreceiver
import av
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcdtlstransport import RTCCertificate
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpDecodingParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPacket,
    RtcpPsfbPacket,
    RtpPacket,
    pack_remb_fci,
)

from media import hooks
from media.forward import Feed, ViewerTrack
from tests.media.test_forward import VP8, encode

ROOT = Path(__file__).resolve().parents[2]


def test_every_hook_point_is_where_we_expect_it() -> None:
    hooks.check()  # raises HookError listing whatever moved


def test_aiortc_is_pinned_to_the_version_the_hooks_were_written_for() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert f"aiortc=={hooks.AIORTC_VERSION}" in project["project"]["dependencies"]
    assert aiortc.__version__ == hooks.AIORTC_VERSION
    assert aioice.__version__ == hooks.AIOICE_VERSION


def test_private_names_and_signatures() -> None:
    receiver_init = inspect.getsource(RTCRtpReceiver.__init__)
    assert "__decoder_queue: queue.Queue = queue.Queue()" in receiver_init
    assert hasattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder")
    assert list(inspect.signature(aiortc.rtcrtpreceiver.decoder_worker).parameters) == [
        "loop",
        "input_q",
        "output_q",
        "decode_error",
    ]
    assert (
        str(inspect.signature(RTCRtpReceiver._send_rtcp_pli)) == "(self, media_ssrc: int) -> None"
    )
    assert str(inspect.signature(RTCRtpSender._send_keyframe)) == "(self) -> None"
    assert str(inspect.signature(aioice.ice.Connection.__init__)).count("components") == 1
    assert hooks._original_get_host_addresses.__module__ == "aioice.ice"
    assert list(inspect.signature(hooks._original_get_host_addresses).parameters) == [
        "use_ipv4",
        "use_ipv6",
    ]


def test_install_wraps_host_addresses_and_leaves_consent_alone() -> None:
    hooks.install()
    assert aioice.ice.get_host_addresses is hooks._get_host_addresses
    assert (aioice.ice.CONSENT_INTERVAL, aioice.ice.CONSENT_FAILURES) == (5, 6)


async def test_a_video_receiver_builds_its_bitrate_estimator_on_the_first_packet() -> None:
    """Guards ``aiortc.rtcrtpreceiver.RemoteBitrateEstimator`` (replaced by name)."""
    hooks.install()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="sendonly")  # a viewer's: it never receives
    (transceiver,) = pc.getTransceivers()
    estimator = transceiver.receiver._RTCRtpReceiver__remote_bitrate_estimator
    assert isinstance(estimator, hooks.LazyBitrateEstimator) and estimator.real is None
    assert estimator.add(1000, 1 << 18, 1200, 1234) is None  # as the real one answers
    assert estimator.real is not None and 1234 in estimator.real.ssrcs
    await pc.close()


async def test_watch_inbound_sees_every_datagram_and_stun_request() -> None:
    """Guards ``aioice.Connection.data_received`` and ``request_received``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    (transceiver,) = pc.getTransceivers()
    connection = transceiver.receiver.transport.transport._connection
    seen: list[Any] = []
    connection.data_received = lambda data, component: seen.append(data)  # the real one queues
    connection.request_received = lambda message, addr, protocol: seen.append(message)
    heard = hooks.watch_inbound(pc)
    before = heard()
    await asyncio.sleep(0.01)
    connection.data_received(b"srtp", 1)
    assert heard() > before and seen == [b"srtp"]
    later = heard()
    await asyncio.sleep(0.01)
    connection.request_received("binding", ("127.0.0.1", 9), None)
    assert heard() > later and seen == [b"srtp", "binding"]
    await pc.close()


async def test_host_addresses_apply_inside_the_block_and_its_tasks_only() -> None:
    hooks.install()
    default = aioice.ice.get_host_addresses(True, True)
    assert "127.0.0.1" not in default  # aioice leaves loopback out: hence the hook
    with hooks.host_addresses(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]

        async def in_task() -> list[str]:
            return aioice.ice.get_host_addresses(True, False)

        assert await asyncio.ensure_future(in_task()) == ["127.0.0.1"]
    assert aioice.ice.get_host_addresses(True, True) == default


def _vp8_packets(frames: list[bytes]) -> list[RtpPacket]:
    from aiortc.codecs.vpx import Vp8Encoder

    packets = []
    seq = 1000
    for n, frame in enumerate(frames):
        payloads = Vp8Encoder._packetize(frame, picture_id=n)
        for i, payload in enumerate(payloads):
            packet = RtpPacket(payload_type=97, sequence_number=seq, timestamp=5000 + 3000 * n)
            packet.ssrc = 1234
            packet.payload = payload
            packet.marker = int(i == len(payloads) - 1)
            packets.append(packet)
            seq += 1
    return packets


async def _receive_vp8(receiver: RTCRtpReceiver) -> None:
    """Start ``receiver`` on VP8 (payload type 97, SSRC 1234), as after an offer."""
    receiver._track = aiortc.rtcrtpreceiver.RemoteStreamTrack(kind="video")
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    await receiver.receive(
        RTCRtpReceiveParameters(
            codecs=[vp8],
            encodings=[RTCRtpDecodingParameters(ssrc=1234, payloadType=97)],
            muxId="0",
            rtcp=RTCRtcpParameters(),
        )
    )


async def test_a_tapped_receiver_hands_over_encoded_frames_and_never_decodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Guards ``RTCRtpReceiver.__decoder_queue``, ``receive`` and ``_handle_rtp_packet``."""
    created: list[Any] = []
    get_decoder = aiortc.rtcrtpreceiver.get_decoder
    monkeypatch.setattr(
        aiortc.rtcrtpreceiver, "get_decoder", lambda c: created.append(c) or get_decoder(c)
    )
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    got: list[tuple[bytes, int]] = []
    ended: list[bool] = []
    tap = hooks.tap_receiver(
        receiver, lambda codec, f: got.append((f.data, f.timestamp)), lambda: ended.append(True)
    )
    assert hooks.is_tapped(receiver)
    await _receive_vp8(receiver)
    frames = encode("libvpx", 3)
    for packet in _vp8_packets(frames):
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    # A frame is complete once the next one starts: the first two come out.
    assert got == [(frames[0], 0), (frames[1], 3000)]
    assert tap.frames == 2
    await receiver.stop()
    assert ended == [True] and created == []
    await pc.close()


async def test_a_receiver_with_repeating_nacks_asks_again_without_a_new_gap() -> None:
    """Guards ``RTCRtpReceiver.__nack_generator`` and how ``_handle_rtp_packet`` uses it."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    now = [0.0]
    repeating = hooks.repeat_nacks(receiver)
    assert repeating is not None and hooks.repeat_nacks(receiver) is repeating
    repeating._clock = lambda: now[0]
    assert hooks.repeat_nacks(pc.addTransceiver("audio", direction="recvonly").receiver) is None
    nacked: list[list[int]] = []

    async def capture(media_ssrc: int, lost: list[int]) -> None:
        nacked.append(lost)

    receiver._send_rtcp_nack = capture  # type: ignore[method-assign]
    hooks.tap_receiver(receiver, lambda codec, f: None, lambda: None)  # no decoding needed
    await _receive_vp8(receiver)
    packets = _vp8_packets(encode("libvpx", 6))
    assert len(packets) >= 6
    for packet in packets[:2] + packets[3:5]:  # packets[2] is lost
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    now[0] = 1.0  # no new gap, but a round trip has passed
    await receiver._handle_rtp_packet(packets[5], arrival_time_ms=0)
    lost = packets[2].sequence_number
    assert nacked == [[lost], [lost]]
    await receiver.stop()
    await pc.close()


@pytest.mark.parametrize("dropping", [True, False])
async def test_a_late_packet_is_dropped_not_taken_for_a_restart(dropping: bool) -> None:
    """Guards ``RTCRtpReceiver.__jitter_buffer`` and ``JitterBuffer._origin``.

    Without the hook (the control), aiortc starts again from a packet 100 or more
    behind what it already gave out, and the next frames go back in time.
    """
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    if dropping:
        dropper = hooks.drop_late_packets(receiver)
        assert hooks.drop_late_packets(receiver) is dropper
    frames = encode("libvpx", 130)
    numbers: list[int] = []  # which frame, from its timestamp (aiortc takes a step back for a wrap)
    hooks.tap_receiver(
        receiver, lambda codec, f: numbers.append(f.timestamp % (1 << 32) // 3000), lambda: None
    )
    await _receive_vp8(receiver)
    packets = _vp8_packets(frames)
    assert len(packets) == len(frames) >= 125  # one packet a frame
    for packet in packets[:120]:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    # Retransmitted copies of early packets, well over 100 packets late, then more.
    for packet in packets[5:11]:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    for packet in packets[120:125]:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    if dropping:
        assert numbers == list(range(124)) and dropper.dropped == 6
    else:  # the control: the hook is what keeps the order
        assert numbers[:119] == list(range(119)) and numbers[119:124] == [5, 6, 7, 8, 9]
    await receiver.stop()
    await pc.close()


async def test_a_tap_in_front_of_the_dropper_still_sees_every_late_packet() -> None:
    """The node's chain: PacketTap (forwarding) -> LateDropper -> aiortc's buffer (frames)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    dropper = hooks.drop_late_packets(receiver)
    seen: list[int] = []
    tap = hooks.tap_packets(receiver, lambda packet: seen.append(packet.sequence_number))
    numbers: list[int] = []
    hooks.tap_receiver(
        receiver, lambda codec, f: numbers.append(f.timestamp % (1 << 32) // 3000), lambda: None
    )
    with pytest.raises(hooks.HookError):
        hooks.drop_late_packets(receiver)  # behind the tap only: it must come first
    await _receive_vp8(receiver)
    packets = _vp8_packets(encode("libvpx", 130))
    late = packets[5:11]
    for packet in packets[:120] + late + packets[120:125]:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
    assert seen == [p.sequence_number for p in packets[:120] + late + packets[120:125]]
    assert tap.packets == 131 and dropper.dropped == 6
    assert numbers == list(range(124))
    await receiver.stop()
    await pc.close()


def test_a_jump_far_back_still_restarts_the_stream() -> None:
    from aiortc.jitterbuffer import JitterBuffer

    def packet(seq: int) -> RtpPacket:
        late = RtpPacket(payload_type=97, sequence_number=seq, timestamp=seq * 3000)
        late._data = b"x"  # type: ignore[attr-defined]
        return late

    dropper = hooks.LateDropper(JitterBuffer(capacity=128, is_video=True))
    for seq in range(20000, 20010):
        dropper.add(packet(seq))
    assert dropper.add(packet(20000 - 5)) == (False, None) and dropper.dropped == 1
    pli, frame = dropper.add(packet(20000 - hooks.RESTART_JUMP))
    assert pli and frame is None and dropper.dropped == 1


async def test_tapping_a_started_receiver_is_refused() -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    receiver._RTCRtpReceiver__decoder_thread = object()
    with pytest.raises(hooks.HookError):
        hooks.tap_receiver(receiver, lambda c, f: None, lambda: None)
    receiver._RTCRtpReceiver__decoder_thread = None
    await pc.close()


def test_a_tap_parks_the_decoder_thread_until_the_receiver_stops() -> None:
    tap = hooks.Tap(lambda c, f: None, lambda: None)
    assert isinstance(tap, hooks.Tap) and not isinstance(tap, queue.Queue)
    tap.put(None)
    assert tap.get() is None
    tap.put((VP8, JitterFrame(b"late", 0)))  # type: ignore[arg-type]
    assert tap.frames == 0


async def test_send_pli_reaches_the_transport_for_the_given_media_ssrc() -> None:
    """Guards ``RTCRtpReceiver._send_rtcp_pli``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    sent: list[bytes] = []

    async def capture(data: bytes) -> None:
        sent.append(data)

    receiver.transport._send_rtp = capture  # type: ignore[method-assign]
    await hooks.send_pli(receiver, 4321)
    (packet,) = RtcpPacket.parse(sent[0])
    assert isinstance(packet, RtcpPsfbPacket)
    assert packet.fmt == RTCP_PSFB_PLI and packet.media_ssrc == 4321
    await pc.close()


@pytest.mark.parametrize("fmt", [RTCP_PSFB_PLI, RTCP_PSFB_FIR])
async def test_a_viewers_pli_or_fir_calls_our_callback(fmt: int) -> None:
    """Guards ``RTCRtpSender._handle_rtcp_packet`` calling ``_send_keyframe``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    calls: list[bool] = []
    hooks.on_keyframe_request(sender, lambda: calls.append(True))
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=fmt, ssrc=1, media_ssrc=sender._ssrc))
    assert calls == [True]
    await pc.close()


async def test_a_capped_sender_holds_its_encoder_under_the_cap_whatever_remb_says() -> None:
    """Guards ``RTCRtpSender._handle_rtcp_packet`` setting ``__encoder.target_bitrate``."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver("video", direction="sendonly").sender
    encoder = Vp8Encoder()
    sender._RTCRtpSender__encoder = encoder  # type: ignore[attr-defined]
    hooks.cap_bitrate(sender, 800_000)

    async def remb(bitrate: int) -> None:
        fci = pack_remb_fci(bitrate, [sender._ssrc])
        packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=fci)
        await sender._handle_rtcp_packet(packet)

    await remb(1_400_000)
    assert encoder.target_bitrate == 800_000
    await remb(600_000)  # under the cap: the estimate holds
    assert encoder.target_bitrate == 600_000
    await pc.close()


async def test_the_sender_packs_encoded_packets_without_an_encoder_running() -> None:
    """Guards ``RTCRtpSender._next_encoded_frame``'s ``av.Packet`` path."""
    feed = Feed("video", VP8)
    feed.start_source("pub")
    frames = encode("libvpx", 2)
    feed.push(frames[0], 0, "pub")
    track = ViewerTrack(feed)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    sender = pc.addTransceiver(track, direction="sendonly").sender
    codec = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=97)
    encoded = await asyncio.wait_for(sender._next_encoded_frame(codec), 1)
    assert encoded is not None and encoded.timestamp == 0
    assert b"".join(p[4:] for p in encoded.payloads) == frames[0]  # 4-byte VP8 descriptor
    encoder = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    assert encoder.codec is None  # libvpx never opened: nothing was encoded
    assert isinstance(av.Packet(b"x"), av.Packet)
    track.stop()
    await pc.close()


class ScriptedEstimator:
    """Returns the given estimates in turn, as aiortc's estimator would on each packet."""

    def __init__(self, bitrates: list[int | None]) -> None:
        self.bitrates = bitrates

    def add(self, *args: int) -> tuple[int, list[int]] | None:
        bitrate = self.bitrates.pop(0)
        return None if bitrate is None else (bitrate, [1234])


def test_remb_is_paced_but_a_falling_estimate_goes_out_at_once() -> None:
    estimator = hooks.LazyBitrateEstimator()
    estimator.real = ScriptedEstimator(  # type: ignore[assignment]
        [500_000, 510_000, None, 520_000, 400_000, 450_000, 460_000]
    )
    at = [0, 10, 20, 30, 40, 50, 40 + hooks.REMB_INTERVAL_MS]
    sent = [estimator.add(ms, 0, 1000, 1234) for ms in at]
    assert [s[0] if s else None for s in sent] == [
        500_000,  # the first
        None,  # higher, within the interval
        None,  # no estimate
        None,
        400_000,  # lower: at once
        None,
        460_000,  # the interval since the last one sent has passed
    ]


async def test_peer_connections_share_the_node_certificate_only_inside_the_block() -> None:
    """Guards ``aiortc.rtcpeerconnection.RTCCertificate`` (replaced by name)."""
    certificate = hooks.SharedCertificate.generate()
    with hooks.shared_certificate(certificate):
        inside = [RTCPeerConnection(RTCConfiguration(iceServers=[])) for _ in range(2)]
    outside = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    held = [pc._RTCPeerConnection__certificates[0] for pc in [*inside, outside]]
    assert held[0] is certificate and held[1] is certificate
    assert held[2] is not certificate and not isinstance(held[2], hooks.SharedCertificate)
    reference = RTCCertificate(key=certificate._key, cert=certificate._cert)
    assert certificate.getFingerprints() == reference.getFingerprints()
    profiles = aiortc.rtcdtlstransport.SRTP_PROFILES
    context = certificate._create_ssl_context(profiles)
    assert certificate._create_ssl_context(list(profiles)) is context
    assert certificate._create_ssl_context(profiles[:1]) is not context
    for pc in [*inside, outside]:
        await pc.close()
