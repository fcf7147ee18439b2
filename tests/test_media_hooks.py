"""Every aiortc/aioice internal media/hooks.py relies on exists and is still reached.

If aiortc or aioice change, these tests name the internal that moved.
"""

import asyncio
import asyncio.trsock
import importlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aioice
import pylibsrtp
import pytest
from aiortc import RTCPeerConnection

from media import hooks, ice
from media.errors import HookError
from tests.media_clients import LOOPBACK, Harness, received, wait_for
from tests.media_clip import Clip


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


def _session() -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=bytes(range(44)),  # AES-256-GCM: 32 octets of key, 12 of salt
        ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
        srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
    )
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


def _owners(pc: RTCPeerConnection) -> dict[str, Any]:
    transceiver = pc.addTransceiver("video")
    dtls = transceiver.sender.transport
    return {
        "RTCRtpReceiver": transceiver.receiver,
        "RTCRtpSender": transceiver.sender,
        "RTCRtpTransceiver": transceiver,
        "RTCDtlsTransport": dtls,
        "RTCIceGatherer": dtls.transport.iceGatherer,
        "aioice.Connection": dtls.transport.iceGatherer._connection,
        # A CandidatePair exists only once ICE connects: make one to look at.
        "aioice.CandidatePair": aioice.ice.CandidatePair(
            protocol=None,  # type: ignore[arg-type]  # only its attributes are looked at
            remote_candidate=aioice.Candidate("x", 1, "udp", 1, "127.0.0.1", 9, "host"),
        ),
        "pylibsrtp.Session": _session(),
        "aioice.StunProtocol": aioice.ice.StunProtocol(dtls.transport.iceGatherer._connection),
        "asyncio.TransportSocket": asyncio.trsock.TransportSocket(
            socket.socket(type=socket.SOCK_DGRAM)
        ),
    }


async def test_every_hooked_name_exists() -> None:
    pc = RTCPeerConnection(ice.configuration(LOOPBACK))
    owners: dict[str, Any] = {}
    try:
        owners = _owners(pc)
        assert {n.owner for n in hooks.NAMES} <= owners.keys(), "a hooked owner is not checked"
        missing = [
            f"{n.owner}.{n.name}" for n in hooks.NAMES if not hasattr(owners[n.owner], n.name)
        ]
        assert not missing, f"aiortc/aioice/pylibsrtp internals missing: {missing}"
        importlib.import_module(hooks.SRTP_BINDING)
    finally:
        if owners:
            owners["asyncio.TransportSocket"]._sock.close()
        await pc.close()


def test_a_missing_name_is_reported_by_name() -> None:
    class NotAReceiver:
        pass

    with pytest.raises(HookError, match="_RTCRtpReceiver__jitter_buffer"):
        hooks.tap_receiver(NotAReceiver(), lambda packet: None)  # type: ignore[arg-type]


async def test_every_hook_is_reached_in_a_live_session(room: Harness) -> None:
    publisher = await room.publish("ann")
    video = publisher.track_id("video")
    assert publisher.publication is not None
    # Gathering restricted to loopback, in both directions.
    answer = str(publisher.publication.pc.localDescription.sdp)
    candidates = [line for line in answer.splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in c for c in candidates), candidates
    # keep_one_codec: the publisher is told to send exactly VP8 (and its RTX).
    video_section = answer.split("m=video")[1]
    assert video_section.count("a=rtpmap:") == 2 and "VP8/90000" in video_section

    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    feed = subscription.feed(video)
    forwarder = room.sfu.track(video)
    await wait_for(lambda: got.frames > 5, within=5)
    assert forwarder.packets > 0, "tap_receiver: the receiver no longer feeds its jitter buffer"
    assert feed.ready, "on_sender_start: the connection no longer calls sender.send()"
    assert feed.socket is not None, "direct_socket: no SRTP session / nominated pair"
    assert type(feed.socket.sock) is socket.socket, "direct_socket: the socket is still wrapped"
    assert publisher.video.keyframe_requests >= 1, "send_pli / on_keyframe_request not reached"

    # A subscriber's PLI reaches the feed through intercept_sender_rtcp.
    rtcp_before = feed.rtcp_received
    transceiver = next(t for t in viewer.pc.getTransceivers() if t.mid == subscription.mid(video))
    requests_before = publisher.video.keyframe_requests
    await hooks.send_pli(transceiver.receiver, feed.ssrc)
    await wait_for(lambda: feed.rtcp_received > rtcp_before, within=1)
    # ... and goes on to the publisher as a PLI (throttled: within about a second).
    await wait_for(lambda: publisher.video.keyframe_requests > requests_before, within=1.5)

    # Sender reports carry the forwarded counters (replace_rtcp_loop: the feed's own).
    for _ in range(150):
        stats = await transceiver.receiver.getStats()
        sent = [s for s in stats.values() if s.type == "remote-outbound-rtp"]
        if sent and sent[0].packetsSent > 0:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("sender reports do not carry forwarded counts")
    assert feed.reports > 0
    # The publisher's own sender reports are kept (on_sender_report).
    await wait_for(lambda: forwarder.report is not None, within=2)


async def test_lost_packets_are_retransmitted_from_the_feed_history(room: Harness) -> None:
    publisher = await room.publish("ann")
    video = publisher.track_id("video")
    subscription, viewer = await room.watch([video])
    transceiver = next(t for t in viewer.pc.getTransceivers() if t.kind == "video")
    feed = subscription.feed(video)
    dropped: list[int] = []
    lossy_link = [True]
    first: list[int] = []

    def lossy(data: bytes) -> bool:
        # Drop every 25th first transmission of a video packet (RTX gets through); never the
        # first one the viewer gets: a receiver NACKs only a gap after a packet it has seen.
        seq = (data[2] << 8) | data[3]
        if data[1] & 0x7F == feed.payload_type and not first:
            first.append(seq)
            return False
        if (
            lossy_link[0]
            and data[1] & 0x7F == feed.payload_type
            and seq % 25 == 0
            and seq not in dropped
        ):
            dropped.append(seq)
            return True
        return False

    hooks.drop_received_rtp(transceiver.receiver.transport, lossy)
    got = received(subscription, viewer, video)
    await wait_for(
        lambda: len(dropped) >= 3 and got.frames > 30,
        within=6,
        explain=lambda: f"dropped {dropped}, {got.frames} frames",
    )
    lossy_link[0] = False

    def repaired() -> set[int]:
        return set(dropped) & {seq for seq, _ in got.numbers}

    await wait_for(
        lambda: repaired() == set(dropped),
        within=3,
        explain=lambda: f"dropped {dropped}, repaired {sorted(repaired())}",
    )
    assert feed.retransmitted >= len(dropped)


async def test_the_server_nacks_its_publisher_and_forwards_the_repair(room: Harness) -> None:
    publisher = await room.publish("ann")
    assert publisher.publication is not None
    video = publisher.track_id("video")
    forwarder = room.sfu.track(video)
    seen: set[int] = set()
    tap = getattr(forwarder._receiver, hooks.RECEIVER_JITTER_BUFFER)
    forward = tap.on_packet

    def record(packet: Any) -> None:
        seen.add(packet.sequence_number)
        forward(packet)

    tap.on_packet = record
    dropped: list[int] = []

    def lossy(data: bytes) -> bool:
        seq = (data[2] << 8) | data[3]
        if data[1] & 0x7F == forwarder.payload_type and seq % 20 == 0 and seq not in dropped:
            dropped.append(seq)
            return True
        return False

    transceiver = next(t for t in publisher.publication.pc.getTransceivers() if t.kind == "video")
    hooks.drop_received_rtp(transceiver.receiver.transport, lossy)
    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    await wait_for(
        lambda: len(dropped) >= 3 and got.frames > 20,
        within=6,
        explain=lambda: f"dropped {dropped}, {got.frames} frames",
    )
    # Every loss but the newest (its NACK may still be on the way) is repaired; on a loaded
    # machine one NACK may come after the publisher's 128-packet history moved on.
    await wait_for(
        lambda: len(set(dropped[:-1]) - seen) <= 1 and len(set(dropped) & seen) >= 2,
        within=3,
        explain=lambda: f"dropped {dropped}, never repaired {set(dropped[:-1]) - seen}",
    )


def test_srtp_pointers_come_from_pylibsrtp() -> None:
    # media._fanout protects with these (tests/test_fanout.py compares its bytes to pylibsrtp's).
    session = _session()
    context, protect = hooks.srtp_pointers(session)
    binding = importlib.import_module(hooks.SRTP_BINDING)
    assert context == int(binding.ffi.cast("uintptr_t", session._srtp[0])) != 0
    assert protect == int(
        binding.ffi.cast("uintptr_t", binding.ffi.addressof(binding.lib, "srtp_protect"))
    )


def _queued_srtp(connection: Any) -> list[bytes]:
    """SRTP/SRTCP datagrams that still reach aioice's queue (the slow path) from now on."""
    queued: list[bytes] = []
    original = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if data and 127 < data[0] < 192:
            queued.append(data)
        original(data, component)

    connection.data_received = data_received
    return queued


async def test_srtp_is_handled_inline_on_both_connections(room: Harness) -> None:
    """receive_inline: the publisher's RTP and the viewer's RTCP skip aiortc's queue and
    still arrive (forwarded packets, a PLI relayed to the publisher)."""
    publisher = await room.publish("ann")
    assert publisher.publication is not None
    video = publisher.track_id("video")
    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    await wait_for(lambda: got.frames > 3, within=5)
    feed = subscription.feed(video)
    forwarder = room.sfu.track(video)
    publishing = publisher.publication.pc.getTransceivers()[0].receiver.transport
    subscribed = feed.sender.transport
    queues = [_queued_srtp(_connection(dtls)) for dtls in (publishing, subscribed)]
    for dtls in (publishing, subscribed):
        protocols = _connection(dtls)._protocols
        assert protocols and all(
            getattr(p.datagram_received, "_veche_inline", False) for p in protocols
        ), "receive_inline: a socket's datagram_received was not replaced"

    packets, rtcp = forwarder.packets, feed.rtcp_received
    transceiver = next(t for t in viewer.pc.getTransceivers() if t.mid == subscription.mid(video))
    requests = publisher.video.keyframe_requests
    await hooks.send_pli(transceiver.receiver, feed.ssrc)
    await wait_for(lambda: feed.rtcp_received > rtcp and forwarder.packets > packets + 20, 2)
    await wait_for(lambda: publisher.video.keyframe_requests > requests, within=1.5)
    assert queues == [[], []], "SRTP still queued for the DTLS transport's task"


def _connection(dtls: Any) -> Any:
    return dtls.transport._connection


async def test_a_handler_that_waits_is_finished_by_a_task() -> None:
    done: list[str] = []

    async def waits() -> None:
        done.append("started")
        await asyncio.sleep(0.01)
        done.append("finished")

    async def fails() -> None:
        raise ValueError("a malformed packet")

    async def catches(failing: asyncio.Future[None]) -> None:
        try:
            await failing
        except KeyError:
            done.append("caught")

    pending: set[asyncio.Future[None]] = set()
    hooks.run_now(waits(), pending)
    assert done == ["started"] and len(pending) == 1  # ran at once as far as it could
    hooks.run_now(fails(), pending)  # logged, not raised
    failing = asyncio.get_running_loop().create_future()
    hooks.run_now(catches(failing), pending)
    failing.set_exception(KeyError("gone"))
    await wait_for(lambda: not pending, within=1)
    assert sorted(done) == ["caught", "finished", "started"]


async def test_garbage_srtp_is_dropped_and_forwarding_goes_on(room: Harness) -> None:
    publisher = await room.publish("ann")
    assert publisher.publication is not None
    video = publisher.track_id("video")
    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    await wait_for(lambda: got.frames > 3, within=5)
    dtls = publisher.publication.pc.getTransceivers()[0].receiver.transport
    pair = _connection(dtls)._nominated[1]
    server = pair.protocol.transport.get_extra_info("sockname")[:2]
    with socket.socket(type=socket.SOCK_DGRAM) as attacker:
        for first in (b"\x80\x60", b"\x81\xc8", b"\xbf\xff"):  # RTP, RTCP, the range's end
            for _ in range(20):
                attacker.sendto(first + bytes(range(60)), server)
    frames = got.frames
    await wait_for(lambda: got.frames > frames + 10, within=3)
    assert dtls.state == "connected"
