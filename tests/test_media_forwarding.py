"""Passthrough forwarding between real aiortc peers on loopback: nothing decoded or encoded."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest
from aiortc.rtp import RtcpByePacket, RtcpSrPacket, RtpPacket

from media import hooks
from media.errors import MediaError
from tests.media_clients import ClipTrack, Harness, received, renegotiate, wait_for
from tests.media_clip import Clip, clip


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


def _count_calls(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    """Record each call of module.name (the real function still runs)."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(module, name)

    def counted(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, name, counted)
    return calls


async def test_three_participants_each_receive_the_other_two(
    room: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders = _count_calls(monkeypatch, aiortc.rtcrtpreceiver, "get_decoder")
    encoders = _count_calls(monkeypatch, aiortc.rtcrtpsender, "get_encoder")
    names = ["ann", "bob", "cat"]
    publishers = {name: await room.publish(name) for name in names}
    views = {}
    for name in names:
        others = [t for other in names if other != name for t in publishers[other].track_ids()]
        views[name] = await room.watch(others)

    def everyone_has_a_second() -> bool:
        return all(
            received(sub, viewer, t).frames >= (25 if "/1" in t else 45)
            for sub, viewer in views.values()
            for t in sub.track_ids
        )

    await wait_for(everyone_has_a_second, within=8)
    for name, (subscription, viewer) in views.items():
        assert len(subscription.track_ids) == 4
        # Each publisher's audio and video share a stream (one sync group in a browser).
        offer = str(subscription.pc.localDescription.sdp)
        streams = sorted(line.split()[0] for line in offer.splitlines() if "a=msid:" in line)
        assert streams == sorted(f"a=msid:{o}" for o in names if o != name for _ in "av")
        for track_id in subscription.track_ids:
            got = received(subscription, viewer, track_id)
            assert not track_id.startswith(name)
            assert len(got.ssrcs) == 1
            if got.kind == "video":
                assert got.codec == "VP8"
                assert got.first_is_keyframe, f"{name} got {track_id} starting mid-GOP"
    # The server forwards without codecs; the only encoders are the test publishers' packers
    # (aiortc's pre-encoded path), one per audio and video sender.
    assert decoders == []
    assert len(encoders) == 2 * len(names)


async def test_late_joiner_gets_video_within_a_second(room: Harness) -> None:
    publisher = await room.publish("ann")
    video = publisher.track_id("video")
    early, early_viewer = await room.watch([video])
    await wait_for(lambda: received(early, early_viewer, video).frames >= 40, within=6)
    requests = publisher.video.keyframe_requests

    late, late_viewer = await room.watch(publisher.track_ids())
    took = await wait_for(lambda: received(late, late_viewer, video).packets > 0, within=1.0)
    got = received(late, late_viewer, video)
    assert got.first_is_keyframe
    # The clip has one keyframe in 6 s: this one came from the relayed PLI.
    assert publisher.video.keyframe_requests > requests
    assert took < 1.0
    # The early viewer keeps its stream: one source, no restart.
    assert len(received(early, early_viewer, video).ssrcs) == 1


async def test_a_keyframe_request_the_encoder_ignored_is_repeated(room: Harness) -> None:
    """Chromium's encoder drops keyframe requests within 300 ms of its last keyframe, which
    the request for the second joiner of a wave often is: that joiner must not wait for the
    next periodic keyframe (here, the clip's: 6 s away)."""
    publisher = await room.publish("ann")
    video = publisher.track_id("video")
    early, early_viewer = await room.watch([video])
    await wait_for(lambda: received(early, early_viewer, video).frames >= 40, within=6)
    publisher.video.deaf_to = 1
    requests = publisher.video.keyframe_requests
    late, late_viewer = await room.watch([video])
    took = await wait_for(lambda: received(late, late_viewer, video).packets > 0, within=1.5)
    assert publisher.video.deaf_to == 0, "the late joiner's request reached the publisher"
    assert publisher.video.keyframe_requests >= requests + 2
    assert received(late, late_viewer, video).first_is_keyframe
    assert took < 1.5


async def test_pause_stops_video_and_resume_restarts_with_a_keyframe(
    room: Harness,
) -> None:
    publisher = await room.publish("ann")
    video, audio = publisher.track_id("video"), publisher.track_id("audio")
    subscription, viewer = await room.watch([audio, video])
    got_video = received(subscription, viewer, video)
    got_audio = received(subscription, viewer, audio)
    await wait_for(lambda: got_video.frames >= 10, within=5)
    loop = asyncio.get_running_loop()

    subscription.pause(video)
    await asyncio.sleep(0.1)  # packets already on the wire
    paused_at, audio_before = loop.time(), got_audio.packets
    await asyncio.sleep(0.6)
    assert got_video.packets_since(paused_at) == 0
    assert got_audio.packets > audio_before + 15, "audio must keep flowing"

    requests = publisher.video.keyframe_requests
    resumed_at = loop.time()
    subscription.resume(video)
    await wait_for(lambda: got_video.first_since(resumed_at) is not None, within=1.0)
    first = got_video.first_since(resumed_at)
    assert first is not None and first[1], "resume must start at a keyframe"
    assert publisher.video.keyframe_requests > requests
    assert len(got_video.ssrcs) == 1


async def test_tracks_added_and_removed_by_renegotiation(room: Harness) -> None:
    ann = await room.publish("ann")
    subscription, viewer = await room.watch([ann.track_id("video")])
    await wait_for(lambda: received(subscription, viewer, ann.track_id("video")).frames > 5, 5)

    bob = await room.publish("bob")
    subscription.add(bob.track_id("video"))
    subscription.add(bob.track_id("audio"))
    await renegotiate(subscription, viewer)
    got_bob = received(subscription, viewer, bob.track_id("video"))
    await wait_for(lambda: got_bob.frames > 5, within=3)
    assert got_bob.first_is_keyframe

    # Removing ann's video quiets its section; a new track of the same kind reuses it.
    ann_mid = subscription.mid(ann.track_id("video"))
    got_ann = received(subscription, viewer, ann.track_id("video"))
    subscription.remove(ann.track_id("video"))
    await renegotiate(subscription, viewer)
    await asyncio.sleep(0.1)
    before = got_ann.packets
    await asyncio.sleep(0.4)
    assert got_ann.packets == before

    cat = await room.publish("cat")
    subscription.add(cat.track_id("video"))
    await renegotiate(subscription, viewer)
    assert subscription.mid(cat.track_id("video")) == ann_mid
    await wait_for(lambda: got_ann.packets > before + 20, within=3)
    assert len(viewer.pc.getTransceivers()) == 3


async def test_h264_reaches_subscribers_as_h264_starting_at_a_keyframe(room: Harness) -> None:
    ann = await room.publish("ann", clip(codec="h264"), video_codec="video/H264")
    assert ann.publication is not None
    codecs = {t.kind: t.codec for t in ann.publication.tracks}
    assert codecs == {"audio": "audio/opus", "video": "video/H264"}
    video = ann.track_id("video")
    subscription, viewer = await room.watch([video])
    offer = str(subscription.pc.localDescription.sdp)
    assert "H264/90000" in offer and "VP8" not in offer, "offer the publisher's codec only"
    got = received(subscription, viewer, video)
    # Over a second in: the late joiner's keyframe request is not throttled.
    await wait_for(lambda: got.frames >= 35, within=5)
    assert got.codec == "H264"
    assert got.first_is_keyframe

    late, late_viewer = await room.watch([video])
    await wait_for(lambda: received(late, late_viewer, video).packets > 0, within=1.0)
    assert received(late, late_viewer, video).first_is_keyframe


async def test_publisher_adds_and_stops_a_track_by_renegotiation(room: Harness) -> None:
    ann = await room.publish("ann")
    assert ann.publication is not None
    screen = ClipTrack("video", room.clip)
    transceiver = ann.pc.addTransceiver(screen, direction="sendonly")
    hooks.on_keyframe_request(transceiver.sender, screen.want_keyframe)
    answer = await ann.publication.renegotiate(await ann.offer())
    await ann.accept(answer)
    kinds = sorted(t.kind for t in ann.publication.tracks)
    assert kinds == ["audio", "video", "video"]
    screen_id = room.sfu.track(f"ann/{transceiver.mid}").track_id
    # The running tracks still go out as negotiated: one codec per section.
    assert answer.count("a=rtpmap:") == 1 + 2 + 2

    subscription, viewer = await room.watch([ann.track_id("video"), screen_id])
    got_screen = received(subscription, viewer, screen_id)
    await wait_for(lambda: got_screen.frames >= 10, within=5)
    assert got_screen.first_is_keyframe

    transceiver.direction = "inactive"
    await ann.accept(await ann.publication.renegotiate(await ann.offer()))
    assert [t.kind for t in ann.publication.tracks].count("video") == 1
    with pytest.raises(MediaError) as gone:
        room.sfu.track(screen_id)
    assert gone.value.code == "unknown_track"
    await asyncio.sleep(0.1)
    before = got_screen.packets
    camera = received(subscription, viewer, ann.track_id("video"))
    camera_before = camera.packets
    await asyncio.sleep(0.4)
    assert got_screen.packets == before
    assert camera.packets > camera_before + 10


async def test_a_new_publisher_stream_continues_each_subscribers_numbering(room: Harness) -> None:
    ann = await room.publish("ann")
    video = ann.track_id("video")
    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    await wait_for(lambda: got.frames >= 5, within=5)
    forwarder = room.sfu.track(video)
    # From here the publisher's own packets are ignored and a second RTP stream (new SSRC,
    # unrelated sequence numbers and timestamps) takes over, as after a camera switch.
    tap = getattr(forwarder._receiver, hooks.RECEIVER_JITTER_BUFFER)
    tap.on_packet = lambda packet: None
    await asyncio.sleep(0.1)
    last_seq, last_ts = got.numbers[-1]
    count = len(got.numbers)
    inter = RtpPacket(forwarder.payload_type, 1, 40_000, 7_000_000, 0xABCDEF, b"\x10\x01frame")
    forwarder.on_packet(inter)  # not a keyframe: the subscriber must not get it
    for i in range(3):
        key = b"\x10\x00keyframe" if i == 0 else b"\x10\x01frame"
        forwarder.on_packet(
            RtpPacket(forwarder.payload_type, 1, 40_001 + i, 7_003_000 + 3000 * i, 0xABCDEF, key)
        )
    await wait_for(lambda: len(got.numbers) >= count + 3, within=1)
    numbers = got.numbers[count:]
    assert [seq for seq, _ in numbers] == [(last_seq + 1 + i) & 0xFFFF for i in range(3)]
    assert [(ts - last_ts) & 0xFFFFFFFF for _, ts in numbers] == [1800, 4800, 7800]
    assert len(got.ssrcs) == 1


def _sender_reports(viewer: Any, mid: str) -> list[tuple[float, Any]]:
    """(arrival time, packet) of every RTCP SR and BYE the viewer's receiver for `mid` gets."""
    got: list[tuple[float, Any]] = []
    receiver = next(t.receiver for t in viewer.pc.getTransceivers() if t.mid == mid)
    original = receiver._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, (RtcpSrPacket, RtcpByePacket)):
            got.append((time.monotonic(), packet))
        await original(packet)

    receiver._handle_rtcp_packet = handle
    return got


async def test_sender_reports_every_few_seconds_follow_a_reused_section(room: Harness) -> None:
    ann = await room.publish("ann")
    video = ann.track_id("video")
    subscription, viewer = await room.watch([video, ann.track_id("audio")])
    mid = subscription.mid(video)
    assert mid is not None
    reports = _sender_reports(viewer, mid)
    feed = subscription.feed(video)
    start = time.monotonic()
    await wait_for(lambda: len(reports) >= 2, within=6.5)
    (first, sr), (second, _) = reports[:2]
    assert first - start < 1.7, "the first report comes as soon as aiortc's did"
    assert 1.4 < second - first < 4.7, "then one every 1.5-4.5 s"
    assert sr.ssrc == feed.ssrc and 0 < sr.sender_info.packet_count <= feed.packets
    assert sr.sender_info.octet_count <= feed.octets

    # The section is reused for another publisher's video: its reports are the new feed's.
    subscription.remove(video)
    await renegotiate(subscription, viewer)
    bob = await room.publish("bob")
    subscription.add(bob.track_id("video"))
    await renegotiate(subscription, viewer)
    assert subscription.mid(bob.track_id("video")) == mid
    bobs = subscription.feed(bob.track_id("video"))
    count = len(reports)
    await wait_for(lambda: bobs.packets > 0 and len(reports) > count, within=5)
    await wait_for(lambda: reports[-1][1].sender_info.packet_count > 0, within=5)
    assert reports[-1][1].sender_info.packet_count <= bobs.packets

    # Closing the subscription ends the stream with a BYE, as aiortc did.
    await room.sfu.unsubscribe(subscription)
    await wait_for(lambda: isinstance(reports[-1][1], RtcpByePacket), within=1)
