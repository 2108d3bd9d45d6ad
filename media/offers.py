"""Checking offers and choosing codecs, before any peer connection exists. No I/O.

Rules, in one place:

* An offer is at most :data:`MAX_SDP_CHARS` characters and parses as SDP;
  anything else is ``bad_request``, raised here so no peer connection is
  ever created for it.
* It has one to two sections, at most one ``audio`` and one ``video``, each
  with its own ``mid``, ICE credentials, a DTLS fingerprint and ``rtcp-mux``;
  at most one BUNDLE group, naming only those mids. Data channels and other
  kinds are refused. (aiortc itself fails in odd ways on duplicate mids or a
  BUNDLE group naming an unknown mid, and could not even close that peer
  connection.)
* ``rtc.publish`` sections send (``sendonly``/``sendrecv``); audio must offer
  Opus, video VP8 or H.264 (a profile aiortc packetizes). The answer carries
  exactly one codec per section (plus its RTX), the first the publisher
  listed among those, so the publisher cannot switch codec later.
* ``rtc.subscribe`` sections are ``recvonly``; each section of a kind the
  publisher sends must accept the publisher's codec, because frames are
  forwarded as they were encoded. A section of a kind the publisher does not
  send is answered ``inactive``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiortc import RTCRtpSender
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import MediaDescription, SessionDescription

from media import hooks
from roomserver.errors import BadRequest

MAX_SDP_CHARS = 20_000
KINDS = ("audio", "video")
#: Codecs a publisher may send, per kind, by MIME subtype (lower case).
PUBLISHABLE = {"audio": ("opus",), "video": ("vp8", "h264")}


@dataclass(frozen=True, slots=True)
class Section:
    """One m-line of an offer and how we answer it."""

    index: int
    kind: str
    mid: str
    codec: RTCRtpCodecCapability | None
    rtx: bool
    media_ssrc: int | None

    @property
    def preferences(self) -> list[RTCRtpCodecCapability]:
        """The codec list for ``setCodecPreferences``: the chosen codec and maybe its RTX."""
        if self.codec is None:
            return []
        out = [self.codec]
        if self.rtx:
            out += [c for c in RTCRtpSender.getCapabilities(self.kind).codecs if _is_rtx(c)]
        return out


def parse_offer(sdp: str) -> SessionDescription:
    """Parse an offer, or raise ``BadRequest`` naming what is wrong with it."""
    if len(sdp) > MAX_SDP_CHARS:
        raise BadRequest(f"sdp: longer than {MAX_SDP_CHARS} characters")
    if not sdp.startswith("v=0"):
        raise BadRequest("sdp: not a session description (must start with v=0)")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises anything from asserts to KeyError
        raise BadRequest(f"sdp: cannot be parsed ({type(exc).__name__})") from None
    media = description.media
    if not media:
        raise BadRequest("sdp: the offer has no media section")
    kinds = [m.kind for m in media]
    if any(kind not in KINDS for kind in kinds):
        raise BadRequest("sdp: only audio and video sections are accepted")
    if len(kinds) != len(set(kinds)):
        raise BadRequest("sdp: at most one audio and one video section")
    for m in media:
        if not m.rtp.muxId:
            raise BadRequest(f"sdp: the {m.kind} section has no a=mid")
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise BadRequest(f"sdp: the {m.kind} section has no ICE credentials")
        if m.dtls is None or not m.dtls.fingerprints:
            raise BadRequest(f"sdp: the {m.kind} section has no DTLS fingerprint")
        if not m.rtcp_mux:
            raise BadRequest(f"sdp: the {m.kind} section must use rtcp-mux")
    mids = [str(m.rtp.muxId) for m in media]
    if len(mids) != len(set(mids)):
        raise BadRequest("sdp: two sections have the same a=mid")
    bundles = [g.items for g in description.group if g.semantic == "BUNDLE"]
    bundled = [str(item) for items in bundles for item in items]
    if len(bundles) > 1 or len(bundled) != len(set(bundled)) or not set(bundled) <= set(mids):
        raise BadRequest("sdp: a=group:BUNDLE must list the sections' mids, each once")
    return description


def plan_publish(description: SessionDescription) -> list[Section]:
    """The sections of a publisher's offer, each with the one codec we accept."""
    sections = []
    for index, m in enumerate(description.media):
        if m.direction not in ("sendonly", "sendrecv"):
            raise BadRequest(f"sdp: the {m.kind} section of a publish offer must send")
        offered = _first_publishable(m)
        if offered is None:
            names = " or ".join(n.upper() if n != "opus" else "Opus" for n in PUBLISHABLE[m.kind])
            raise BadRequest(f"sdp: the {m.kind} section offers no {names}")
        codec, rtx = offered
        sections.append(Section(index, m.kind, str(m.rtp.muxId), codec, rtx, media_ssrc(m)))
    return sections


def plan_subscribe(
    description: SessionDescription, sending: Mapping[str, RTCRtpCodecCapability]
) -> list[Section]:
    """The sections of a viewer's offer, each locked to the codec the publisher sends."""
    sections = []
    for index, m in enumerate(description.media):
        if m.direction != "recvonly":
            raise BadRequest(f"sdp: the {m.kind} section of a subscribe offer must be recvonly")
        codec = sending.get(m.kind)
        rtx = False
        if codec is not None:
            match = next((c for c in m.rtp.codecs if hooks.codec_compatible(codec, c)), None)
            if match is None:
                raise BadRequest(
                    f"sdp: the {m.kind} section does not accept {codec.mimeType}, "
                    "which the publisher sends"
                )
            rtx = _offers_rtx_for(m, match)
        sections.append(Section(index, m.kind, str(m.rtp.muxId), codec, rtx, None))
    return sections


def media_ssrc(m: MediaDescription) -> int | None:
    """The SSRC carrying the media of a section, never its RTX SSRC (Chrome ignores PLI there)."""
    for group in m.ssrc_group:
        if group.semantic == "FID" and group.items:
            return int(group.items[0])
    return m.ssrc[0].ssrc if m.ssrc else None


def answered_codecs(answer: str) -> dict[str, RTCRtpCodecParameters]:
    """The codec each active section of our own answer settled on."""
    out: dict[str, RTCRtpCodecParameters] = {}
    for m in SessionDescription.parse(answer).media:
        if m.kind in KINDS and m.direction != "inactive" and m.rtp.codecs:
            out[m.kind] = m.rtp.codecs[0]
    return out


def _is_rtx(codec: RTCRtpCodecCapability | RTCRtpCodecParameters) -> bool:
    return codec.mimeType.lower().endswith("/rtx")


def _first_publishable(m: MediaDescription) -> tuple[RTCRtpCodecCapability, bool] | None:
    capabilities = RTCRtpSender.getCapabilities(m.kind).codecs
    for offered in m.rtp.codecs:
        if offered.mimeType.split("/")[-1].lower() not in PUBLISHABLE[m.kind]:
            continue
        for capability in capabilities:
            if not _is_rtx(capability) and hooks.codec_compatible(capability, offered):
                return capability, _offers_rtx_for(m, offered)
    return None


def _offers_rtx_for(m: MediaDescription, codec: RTCRtpCodecParameters) -> bool:
    return any(_is_rtx(c) and c.parameters.get("apt") == codec.payloadType for c in m.rtp.codecs)
