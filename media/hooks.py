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
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"


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


# -- send side -----------------------------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote receiver of ``sender`` sends PLI or FIR."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


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


# -- installation and checks ------------------------------------------------------------

_installed = False


def install() -> None:
    """Check every hook point, and apply the one process-wide hook (host addresses) once."""
    global _installed
    if _installed:
        return
    check()
    aioice.ice.get_host_addresses = _get_host_addresses
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
    if problems:
        raise HookError(
            "aiortc/aioice internals changed; media/hooks.py needs updating: " + "; ".join(problems)
        )
