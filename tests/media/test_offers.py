"""Offer checks and codec choice, on SDP text alone."""

from __future__ import annotations

import re

import pytest
from aiortc import RTCRtpSender

from media import offers
from roomserver.errors import BadRequest

SESSION = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=msid-semantic:WMS *\r\n"
TRANSPORT = (
    "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n"
    "a=fingerprint:sha-256 F0:FF:6F:03:40:19:33:7D:74:BD:8F:8D:38:9D:0F:E2:A5:9C:1E:BB:72:B1:"
    "0B:47:9A:16:F2:E5:DF:EB:C1:90\r\na=setup:actpass\r\n"
    "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
)
VIDEO_CODECS = {
    "VP8": "a=rtpmap:97 VP8/90000\r\na=rtcp-fb:97 nack pli\r\n",
    "RTX": "a=rtpmap:98 rtx/90000\r\na=fmtp:98 apt=97\r\n",
    "H264": (
        "a=rtpmap:101 H264/90000\r\na=fmtp:101 level-asymmetry-allowed=1;"
        "packetization-mode=1;profile-level-id=42e01f\r\n"
    ),
    "H264-HIGH": (
        "a=rtpmap:103 H264/90000\r\na=fmtp:103 packetization-mode=1;profile-level-id=640c1f\r\n"
    ),
    "VP9": "a=rtpmap:105 VP9/90000\r\n",
}
PT = {"VP8": 97, "RTX": 98, "H264": 101, "H264-HIGH": 103, "VP9": 105}


def video(codecs: list[str], direction: str = "sendonly", mid: str = "0", ssrc: bool = True) -> str:
    lines = f"m=video 9 UDP/TLS/RTP/SAVPF {' '.join(str(PT[c]) for c in codecs)}\r\n"
    lines += f"c=IN IP4 0.0.0.0\r\na={direction}\r\na=mid:{mid}\r\na=rtcp-mux\r\n"
    if ssrc:
        lines += "a=ssrc-group:FID 1111 2222\r\na=ssrc:1111 cname:x\r\na=ssrc:2222 cname:x\r\n"
    return lines + "".join(VIDEO_CODECS[c] for c in codecs) + TRANSPORT


def audio(codec: str = "opus", direction: str = "sendonly", mid: str = "1") -> str:
    pt, rtpmap = (96, "opus/48000/2") if codec == "opus" else (0, "PCMU/8000")
    return (
        f"m=audio 9 UDP/TLS/RTP/SAVPF {pt}\r\nc=IN IP4 0.0.0.0\r\na={direction}\r\n"
        f"a=mid:{mid}\r\na=rtcp-mux\r\na=ssrc:3333 cname:x\r\na=rtpmap:{pt} {rtpmap}\r\n"
    ) + TRANSPORT


def publish_offer(*sections: str) -> str:
    """A session bundling its sections, as browsers offer."""
    mids = re.findall(r"a=mid:(\S+)", "".join(sections))
    return SESSION + f"a=group:BUNDLE {' '.join(mids)}\r\n" + "".join(sections)


def test_publish_picks_the_first_offered_supported_codec_with_rtx() -> None:
    plan = offers.plan_publish(
        offers.parse_offer(publish_offer(video(["VP9", "H264", "VP8", "RTX"]), audio()))
    )
    assert [s.kind for s in plan] == ["video", "audio"]
    video_plan, audio_plan = plan
    assert video_plan.codec is not None and video_plan.codec.mimeType == "video/H264"
    assert video_plan.codec.parameters["profile-level-id"] == "42e01f"
    assert not video_plan.rtx  # the RTX offered belongs to VP8
    assert video_plan.media_ssrc == 1111  # the media SSRC of the FID group, not its RTX
    assert audio_plan.codec is not None and audio_plan.codec.mimeType == "audio/opus"
    assert audio_plan.media_ssrc == 3333


def test_publish_preferences_are_one_codec_plus_its_rtx() -> None:
    (section,) = offers.plan_publish(offers.parse_offer(publish_offer(video(["VP8", "RTX"]))))
    names = [c.mimeType for c in section.preferences]
    assert names == ["video/VP8", "video/rtx"]
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    assert all(c in capabilities for c in section.preferences)


@pytest.mark.parametrize(
    ("sdp", "words"),
    [
        ("", "v=0"),
        ("nonsense", "v=0"),
        ("v=0\r\nm=video x RTP/SAVPF 96\r\n", "cannot be parsed"),
        (SESSION, "no media"),
        (publish_offer(video(["VP8"]), video(["VP8"], mid="2")), "at most one"),
        (publish_offer(video(["VP8"]).replace("m=video", "m=text")), "only audio and video"),
        (publish_offer(video(["VP8"]).replace("a=mid:0\r\n", "")), "a=mid"),
        (publish_offer(video(["VP8"]).replace("a=rtcp-mux\r\n", "")), "rtcp-mux"),
        (publish_offer(video(["VP8"]).replace("a=ice-pwd:", "a=x-pwd:")), "ICE credentials"),
        (publish_offer(video(["VP8"]).replace("a=fingerprint:", "a=x-fp:")), "fingerprint"),
        (publish_offer(video(["VP8"])) + "a=x:" + "y" * 20_000 + "\r\n", "longer than"),
        (SESSION + video(["VP8"]) + audio(mid="0"), "same a=mid"),
        (SESSION + "a=group:BUNDLE 0 1\r\n" + video(["VP8"]), "BUNDLE"),  # no mid 1
        (SESSION + "a=group:BUNDLE 0 0\r\n" + video(["VP8"]), "BUNDLE"),
    ],
)
def test_malformed_offers_are_bad_request(sdp: str, words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        offers.parse_offer(sdp)
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("sections", "words"),
    [
        ([video(["VP9", "H264-HIGH"])], "no VP8 or H264"),
        ([audio("pcmu")], "no Opus"),
        ([video(["VP8"], direction="recvonly")], "must send"),
    ],
)
def test_unpublishable_offers_are_bad_request(sections: list[str], words: str) -> None:
    with pytest.raises(BadRequest) as caught:
        offers.plan_publish(offers.parse_offer(publish_offer(*sections)))
    assert words in caught.value.message


def _sending(codec: str) -> dict[str, object]:
    (section,) = offers.plan_publish(offers.parse_offer(publish_offer(video([codec]))))
    return {"video": section.codec}


def test_subscribe_is_locked_to_the_publishers_codec() -> None:
    viewer = publish_offer(
        video(["VP8", "RTX", "H264"], direction="recvonly"), audio(direction="recvonly")
    )
    plan = offers.plan_subscribe(offers.parse_offer(viewer), _sending("H264"))  # type: ignore[arg-type]
    video_plan, audio_plan = plan
    assert video_plan.codec is not None and video_plan.codec.mimeType == "video/H264"
    assert not video_plan.rtx
    assert audio_plan.codec is None  # the publisher sends no audio: answered inactive


def test_subscribe_refuses_offers_that_cannot_take_the_codec_or_that_send() -> None:
    vp8_only = publish_offer(video(["VP8"], direction="recvonly"))
    with pytest.raises(BadRequest, match="does not accept video/H264"):
        offers.plan_subscribe(offers.parse_offer(vp8_only), _sending("H264"))  # type: ignore[arg-type]
    sending = publish_offer(video(["VP8"], direction="sendrecv"))
    with pytest.raises(BadRequest, match="recvonly"):
        offers.plan_subscribe(offers.parse_offer(sending), _sending("VP8"))  # type: ignore[arg-type]


def test_media_ssrc_without_a_group_is_the_first_ssrc_and_none_without_any() -> None:
    (plain,) = offers.parse_offer(publish_offer(audio())).media
    assert offers.media_ssrc(plain) == 3333
    (bare,) = offers.parse_offer(publish_offer(video(["VP8"], ssrc=False))).media
    assert offers.media_ssrc(bare) is None
