"""SDP, RTP and RTCP from Hypothesis into the parsers the server uses: nothing escapes but the
refusal each parser documents, and a refused input changes nothing.

- SDP: media/sdp.py `check` (MediaError only); a checked offer goes on through `unsupported`,
  `sending` and `for_aiortc` without an error.
- RTP: aiortc's RtpPacket.parse (ValueError only), then a real Forwarder's `on_packet` and the
  C fan-out into a Feed (nothing at all may escape).
- RTCP: aiortc's RtcpPacket.parse (ValueError only), then the Feed's `_on_rtcp` and the
  Forwarder's sender-report hook, as the server's subscriber connections run them.

Examples per parser: VECHE_FUZZ_EXAMPLES (default 300); e.g. VECHE_FUZZ_EXAMPLES=20000 for a
longer run (docs/security.md, "Fuzzing").
"""

import asyncio
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtp import RtcpPacket, RtpPacket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media import hooks, rtp, sdp
from media.errors import MediaError
from media.forwarder import Feed, Forwarder

EXAMPLES = int(os.environ.get("VECHE_FUZZ_EXAMPLES") or 300)
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


# --- SDP ----------------------------------------------------------------------------------------


async def _browser_like_offer() -> str:
    """A real offer (aiortc's own: audio and video, ICE credentials, a DTLS fingerprint)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="sendonly")
    pc.addTransceiver("video", direction="sendonly")
    offer = await pc.createOffer()
    await pc.close()
    return str(offer.sdp)


@pytest.fixture(scope="module")
def offer_lines() -> list[str]:
    text = asyncio.run(_browser_like_offer())
    sdp.check(text)  # the seed itself is a valid offer
    return text.split("\r\n")


ATTRIBUTES = st.sampled_from(
    [
        "a=mid:",
        "a=group:BUNDLE ",
        "a=rtpmap:",
        "a=fmtp:",
        "a=ssrc:",
        "a=ssrc-group:FID ",
        "a=extmap:",
        "a=rtcp-fb:",
        "a=candidate:",
        "a=fingerprint:sha-256 ",
        "a=ice-ufrag:",
        "a=setup:",
        "a=msid:",
        "a=bundle-only",
        "a=sendrecv",
        "a=inactive",
        "m=video ",
        "m=audio ",
        "m=application ",
        "c=IN IP4 ",
        "b=AS:",
        "o=- ",
        "t=",
    ]
)
ODD_VALUES = st.text(max_size=40) | st.integers(-(2**70), 2**70).map(str) | st.just("")


@st.composite
def mutated_offers(draw: st.DrawFn, lines: list[str]) -> str:
    """A real offer with lines dropped, repeated, changed or added."""
    out = list(lines)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["drop", "repeat", "change", "add", "swap"]))
        at = draw(st.integers(0, len(out) - 1)) if out else 0
        if action == "drop" and out:
            out.pop(at)
        elif action == "repeat" and out:
            out.insert(at, out[at])
        elif action == "change" and out:
            head = out[at][: draw(st.integers(0, len(out[at])))]
            out[at] = head + draw(ODD_VALUES)
        elif action == "swap" and len(out) > 1:
            other = draw(st.integers(0, len(out) - 1))
            out[at], out[other] = out[other], out[at]
        else:
            out.insert(at, draw(ATTRIBUTES) + draw(ODD_VALUES))
    return draw(st.sampled_from(["\r\n", "\n"])).join(out)


def test_sdp_check_refuses_with_media_errors_only(offer_lines: list[str]) -> None:
    outcomes: dict[str, int] = {}

    @FUZZ
    @given(mutated_offers(offer_lines) | st.text(max_size=400) | st.just("v=0\r\n" * 3))
    def property_(text: str) -> None:
        try:
            offer = sdp.check(text)
        except MediaError as error:
            outcomes[error.code] = outcomes.get(error.code, 0) + 1
            return
        outcomes["accepted"] = outcomes.get("accepted", 0) + 1
        sdp.unsupported(offer)
        sdp.sending(offer)
        offer.for_aiortc()

    property_()
    print(f"SDP outcomes: {sorted(outcomes.items())}")
    assert outcomes.get("accepted", 0) > 0 and outcomes.get("bad_sdp", 0) > 0


# --- RTP and RTCP into a real Forwarder and Feed --------------------------------------------


@pytest.fixture
async def feed() -> AsyncIterator[tuple[Forwarder, Feed]]:
    """A VP8 forwarder with one subscriber feed, on real aiortc receivers and senders (no
    connection: nothing leaves the process)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiving = pc.addTransceiver("video", direction="recvonly")
    sending = pc.addTransceiver("video", direction="sendonly")
    codec = hooks.default_codec("video")
    forwarder = Forwarder("fuzzed", "video", codec, receiving.receiver)
    subscriber = Feed(forwarder, sending.sender)
    subscriber.payload_type = codec.payloadType
    subscriber.ready = True
    forwarder.attach(subscriber)
    yield forwarder, subscriber
    forwarder.close()
    await pc.close()


def wire_state(feed: Feed) -> tuple[Any, ...]:
    return (feed.ssrc, feed.rtx_ssrc, feed.payload_type, feed.next_seq, feed.rtx_seq)


@st.composite
def rtp_packets(draw: st.DrawFn, payload_type: int) -> bytes:
    """RTP as it may arrive: mostly well-formed headers (CSRCs, an extension block, padding as
    announced) around drawn payloads, sometimes with any first two octets."""
    csrc_count = draw(st.integers(0, 15))
    flags = draw(st.sampled_from([0, rtp.EXTENSION, rtp.PADDING, rtp.EXTENSION | rtp.PADDING]))
    first = 0x80 | flags | csrc_count
    second = payload_type | draw(st.sampled_from([0, rtp.MARKER]))
    if draw(st.integers(0, 4)) == 0:
        first, second = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    header = struct.pack(
        "!BBHII",
        first,
        second,
        draw(st.integers(0, 0xFFFF)),
        draw(st.integers(0, 2**32 - 1)),
        draw(st.sampled_from([1, 2, 2**32 - 1])),
    )
    csrcs = draw(st.binary(min_size=4 * csrc_count, max_size=4 * csrc_count))
    extension = b""
    if first & rtp.EXTENSION:
        words = draw(st.integers(0, 8))
        profile = draw(st.sampled_from([rtp.ONE_BYTE_PROFILE, b"\x10\x00", b"\x12\x34"]))
        extension = profile + struct.pack("!H", words)
        extension += draw(st.binary(min_size=words * 4, max_size=words * 4))
    payload = draw(st.binary(max_size=300))
    if first & rtp.PADDING:
        size = draw(st.integers(0, 40))
        payload += b"\x00" * max(size - 1, 0) + bytes([draw(st.integers(0, 255))])
    return header + csrcs + extension + payload


def _rtcp(packet_type: int, count: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!BBH", 0x80 | count, packet_type, len(body) // 4) + body


@st.composite
def rtcp_packets(draw: st.DrawFn) -> bytes:
    """A compound of RTCP packets as subscribers send them (receiver and sender reports,
    SDES, BYE, NACK, PLI, FIR, REMB), with drawn fields, and sometimes a drawn header."""
    ssrc = st.integers(0, 2**32 - 1)
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["rr", "sr", "sdes", "bye", "nack", "pli", "remb", "raw"]))
        reports = draw(st.integers(0, 3))
        blocks = draw(st.binary(min_size=24 * reports, max_size=24 * reports))
        if kind == "rr":
            parts.append(_rtcp(201, reports, struct.pack("!I", draw(ssrc)) + blocks))
        elif kind == "sr":
            info = draw(st.binary(min_size=20, max_size=20))
            parts.append(_rtcp(200, reports, struct.pack("!I", draw(ssrc)) + info + blocks))
        elif kind == "sdes":
            parts.append(_rtcp(202, draw(st.integers(0, 2)), draw(st.binary(max_size=40))))
        elif kind == "bye":
            parts.append(_rtcp(203, draw(st.integers(0, 3)), draw(st.binary(max_size=20))))
        elif kind in ("nack", "pli", "remb"):
            fmt, packet_type = {"nack": (1, 205), "pli": (1, 206), "remb": (15, 206)}[kind]
            fci = draw(st.binary(max_size=24))
            if kind == "remb":
                fci = b"REMB" + bytes([draw(st.integers(0, 3))]) + draw(st.binary(max_size=15))
            sources = struct.pack("!II", draw(ssrc), draw(ssrc))
            parts.append(_rtcp(packet_type, fmt, sources + fci))
        else:
            body = draw(st.binary(max_size=60))
            first = draw(st.integers(0, 255))
            length = draw(st.integers(0, 0xFFFF))
            parts.append(struct.pack("!BBH", first, draw(st.integers(192, 210)), length) + body)
    return b"".join(parts)


async def test_rtp_reaches_the_forwarder_only_when_it_parses(
    feed: tuple[Forwarder, Feed],
) -> None:
    forwarder, subscriber = feed
    parsed = [0, 0]
    wire = wire_state(subscriber)

    @FUZZ
    @given(rtp_packets(forwarder.payload_type) | st.binary(max_size=200))
    def property_(data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            parsed[1] += 1
            return
        parsed[0] += 1
        before, counted = wire_state(subscriber), forwarder.packets
        forwarder.on_packet(packet)  # nothing may escape: this runs in the socket's callback
        after = wire_state(subscriber)
        if packet.payload_type != forwarder.payload_type:
            # Not this track's: ignored, neither counted nor forwarded.
            assert (after, forwarder.packets) == (before, counted)
        else:
            # Forwarded (its sequence gaps kept, as a real loss would be) under the feed's
            # own SSRCs and payload type, whatever the packet carried.
            assert after[:3] == before[:3]
        rtp.keyframe_start_detector("VP8")(packet.payload)
        rtp.keyframe_start_detector("H264")(packet.payload)

    property_()
    print(f"RTP: {parsed[0]} parsed and forwarded, {parsed[1]} refused")
    assert parsed[0] > 0 and parsed[1] > 0
    assert wire_state(subscriber)[:3] == wire[:3]


async def test_rtcp_reaches_the_feed_only_when_it_parses(feed: tuple[Forwarder, Feed]) -> None:
    forwarder, subscriber = feed
    parsed = [0, 0]
    wire = wire_state(subscriber)

    @FUZZ
    @given(rtcp_packets() | st.binary(max_size=120))
    def property_(data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            parsed[1] += 1
            return
        parsed[0] += 1
        for packet in packets:
            subscriber._on_rtcp(packet)
            if type(packet).__name__ == "RtcpSrPacket":
                forwarder._on_sender_report(packet)
        loss = subscriber.take_loss()
        assert loss is None or 0 <= loss < 1

    property_()
    print(f"RTCP: {parsed[0]} parsed and handled, {parsed[1]} refused")
    assert parsed[0] > 0 and parsed[1] > 0
    assert wire_state(subscriber) == wire
