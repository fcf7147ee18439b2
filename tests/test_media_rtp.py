"""RTP details of the forwarder: keyframe starts, extension blocks, RTX, PLI throttling."""

import asyncio
import itertools
import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket

from media import rtp
from media.forwarder import SenderReport, translate_report
from media.keyframes import KeyframeRequests
from media.subscriber import stream_id


def test_vp8_keyframe_start_reads_the_payload_descriptor() -> None:
    key, inter = 0x10, 0x11  # first payload octet: P bit clear on keyframes
    assert rtp.vp8_keyframe_start(bytes([0x10, key]))
    assert not rtp.vp8_keyframe_start(bytes([0x10, inter]))
    # X with a 15-bit picture id (aiortc's and browsers' layout).
    assert rtp.vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x00]))
    assert not rtp.vp8_keyframe_start(bytes([0x90, 0x80, 0x81, 0x23, 0x01]))
    # X with a 7-bit picture id, TL0PICIDX and TID/KEYIDX.
    assert rtp.vp8_keyframe_start(bytes([0x90, 0xE0, 0x05, 0x07, 0x20, 0x00]))
    # Not the start of partition 0: never a start, whatever follows.
    assert not rtp.vp8_keyframe_start(bytes([0x00, key]))
    assert not rtp.vp8_keyframe_start(bytes([0x11, key]))
    assert not rtp.vp8_keyframe_start(b"")
    assert not rtp.vp8_keyframe_start(bytes([0x90, 0x80]))


def test_h264_keyframe_start_finds_sps_and_idr() -> None:
    sps, pps, idr, slice_ = 0x67, 0x68, 0x65, 0x41
    assert rtp.h264_keyframe_start(bytes([sps, 1, 2]))
    assert rtp.h264_keyframe_start(bytes([idr, 1, 2]))
    assert not rtp.h264_keyframe_start(bytes([slice_, 1, 2]))
    stap = (
        bytes([0x78]) + struct.pack("!H", 2) + bytes([sps, 0]) + struct.pack("!H", 1) + bytes([pps])
    )
    assert rtp.h264_keyframe_start(stap)
    assert not rtp.h264_keyframe_start(bytes([0x78]) + struct.pack("!H", 1) + bytes([pps]))
    assert rtp.h264_keyframe_start(bytes([0x7C, 0x85, 0]))  # FU-A start of an IDR
    assert not rtp.h264_keyframe_start(bytes([0x7C, 0x05, 0]))  # FU-A middle
    assert not rtp.h264_keyframe_start(bytes([0x7C, 0x81, 0]))  # FU-A start, not IDR
    assert not rtp.h264_keyframe_start(b"")


def _parse(data: bytes, ids: dict[str, int]) -> RtpPacket:
    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[RTCRtpHeaderExtensionParameters(id=i, uri=u) for u, i in ids.items()]
        )
    )
    return RtpPacket.parse(data, extensions)


def test_extension_blocks_parse_back_with_the_subscribers_ids() -> None:
    ids = {rtp.MID_URI: 4, rtp.AUDIO_LEVEL_URI: 9}
    ext = rtp.Extensions(4, "12", 9, 1)
    block = ext.head + bytes([0x80 | 33]) + ext.tail
    data = rtp.HEADER.pack(0x90, 111, 7, 1000, 42) + block + b"opus"
    packet = _parse(data, ids)
    assert packet.extensions.mid == "12"
    assert packet.extensions.audio_level == (True, 33)
    assert packet.payload == b"opus"
    assert rtp.header_size(data) == len(data) - 4

    video = rtp.Extensions(1, "0", 3, 3)
    data = rtp.HEADER.pack(0x90, 96, 7, 1000, 42) + video.head + b"\x01\x02\x03" + video.tail + b"x"
    packet = _parse(data, {rtp.MID_URI: 1, rtp.ABS_SEND_TIME_URI: 3})
    assert (packet.extensions.mid, packet.extensions.abs_send_time) == ("0", 0x010203)

    plain = rtp.Extensions(1, "5", 0, 3)
    assert plain.value_size == 0
    data = rtp.HEADER.pack(0x90, 96, 7, 1000, 42) + plain.plain + b"x"
    assert _parse(data, {rtp.MID_URI: 1}).extensions.mid == "5"
    assert rtp.Extensions(0, "", 0, 1).plain == b""


def test_rtx_wrap_carries_the_original_sequence_number() -> None:
    ext = rtp.Extensions(1, "1", 0, 0)
    original = rtp.HEADER.pack(0x90, 0x80 | 97, 513, 90000, 42) + ext.plain + b"payload"
    wrapped = rtp.wrap_rtx(original, payload_type=98, sequence_number=7, ssrc=43)
    packet = _parse(wrapped, {rtp.MID_URI: 1})
    assert (packet.payload_type, packet.sequence_number, packet.ssrc) == (98, 7, 43)
    assert packet.marker == 1 and packet.timestamp == 90000
    assert packet.payload == struct.pack("!H", 513) + b"payload"
    assert packet.extensions.mid == "1"


async def test_keyframe_requests_are_throttled_not_lost() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    def send() -> bool:
        sent.append(loop.time())
        return True

    requests = KeyframeRequests(send, interval=0.2)
    for _ in range(5):
        requests.request()
    assert len(sent) == 1
    await asyncio.sleep(0.3)
    assert len(sent) == 2, "a request inside the interval is sent when it ends"
    assert sent[1] - sent[0] >= 0.19
    requests.close()


async def test_starting_subscribers_get_keyframes_sooner_than_loss_recovery() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    def send() -> bool:
        sent.append(loop.time())
        return True

    requests = KeyframeRequests(send, interval=0.6, join_interval=0.15)
    requests.request()  # loss: sent at once
    requests.request()  # loss again: waits for the full interval
    await asyncio.sleep(0.05)
    requests.request(starting=True)  # a joiner moves the waiting request forward
    await asyncio.sleep(0.2)
    assert len(sent) == 2
    assert 0.14 <= sent[1] - sent[0] < 0.3, "a joiner waits the join interval, not the full one"
    requests.request()  # loss right after: still at most one per full interval
    await asyncio.sleep(0.3)
    assert len(sent) == 2
    await asyncio.sleep(0.4)
    assert len(sent) == 3
    assert sent[2] - sent[1] >= 0.59
    requests.close()


async def test_keyframe_request_waits_for_a_publisher_packet() -> None:
    ready = False
    sent = 0

    def send() -> bool:
        nonlocal sent
        if ready:
            sent += 1
        return ready

    requests = KeyframeRequests(send, interval=1.0)
    requests.request()
    await asyncio.sleep(0.05)
    ready = True
    await asyncio.sleep(0.15)
    assert sent == 1
    requests.close()


async def test_keyframe_requests_repeat_while_a_subscriber_still_waits() -> None:
    sent: list[float] = []
    loop = asyncio.get_running_loop()
    waiting = True

    def send() -> bool:
        sent.append(loop.time())
        return True

    requests = KeyframeRequests(
        send, interval=1.0, join_interval=0.05, waiting=lambda: waiting, retry_after=0.2
    )
    requests.request(starting=True)  # sent at 0, then again at 0.2 and 0.4 s
    await asyncio.sleep(0.5)
    assert len(sent) == 3, "unanswered: asked again every retry_after"
    assert all(0.15 < b - a < 0.3 for a, b in itertools.pairwise(sent))
    waiting = False  # the keyframe came
    await asyncio.sleep(0.4)
    assert len(sent) == 3
    requests.close()


def test_sender_reports_keep_the_publishers_mapping() -> None:
    published = SenderReport(ntp=(1000 << 32) + (1 << 31), rtp=90_000, arrived=50.0)
    ntp, rtp_ts = translate_report(published, now=50.25, clock_rate=90_000, ts_offset=10)
    assert ntp == (1000 << 32) + (3 << 30)  # 1000.5 s + 0.25 s
    assert rtp_ts == 90_000 + 10 + 22_500
    # Timestamps wrap like RTP's.
    _, wrapped = translate_report(published, 50.0, 90_000, ts_offset=(1 << 32) - 90_000)
    assert wrapped == 0


def test_stream_ids_are_sdp_tokens_of_the_publication() -> None:
    assert stream_id("alice/1") == "alice"
    assert stream_id("anna petrova/0").startswith("anna-petrova-")
    assert stream_id("Анна/0") != stream_id("Олег/0")
    assert len(stream_id("x" * 100 + "/0")) == 64
    assert all(c.isascii() and c != " " for c in stream_id("Анна Петрова/1"))
