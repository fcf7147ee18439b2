"""media._fanout, the forwarder's per-packet path in C: what subscribers get, byte for byte.

Unit tests drive a bare Wire over a real UDP socket pair on 127.0.0.1 with a real libsrtp
session (protected in C, unprotected with pylibsrtp); live tests use real aiortc peers.
"""

import asyncio
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import pylibsrtp
import pytest
from aiortc.rtp import RtpPacket

from media import _fanout, forwarder, hooks, rtp
from tests.media_clients import ClientViewer, Harness, received, wait_for
from tests.media_clip import Clip

KEY = bytes(range(44))  # AES-256-GCM: 32 octets of key, 12 of salt
SSRC, RTX_SSRC = 0x11223344, 0x55667788


def _session(direction: int) -> pylibsrtp.Session:
    policy = pylibsrtp.Policy(
        key=KEY, ssrc_type=direction, srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM
    )
    policy.allow_repeat_tx = True
    return pylibsrtp.Session(policy)


class Link:
    """A Wire sending to a UDP socket on loopback; `receive` unprotects what arrived."""

    def __init__(self) -> None:
        self.tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tx.bind(("127.0.0.1", 0))
        self.tx.setblocking(False)
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.settimeout(1.0)
        self.session = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self.unprotect = _session(pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self.wire = _fanout.Wire()
        self.wire.ssrc, self.wire.rtx_ssrc = SSRC, RTX_SSRC
        self.wire.payload_type = 111
        self.wire.ready = True
        self.connect()

    def connect(self) -> None:
        srtp, protect = hooks.srtp_pointers(self.session)
        addr = self.rx.getsockname()
        self.wire.use_socket(self.session, srtp, protect, self.tx, addr, self.tx.sendto)

    def receive(self) -> bytes:
        return self.unprotect.unprotect(self.rx.recv(2048))

    def nothing_arrives(self) -> bool:
        self.rx.settimeout(0.05)
        try:
            self.rx.recv(2048)
        except TimeoutError:
            return True
        finally:
            self.rx.settimeout(1.0)
        return False

    def close(self) -> None:
        self.wire.drop_socket()
        self.tx.close()
        self.rx.close()


@pytest.fixture
def link() -> Iterator[Link]:
    made = Link()
    yield made
    made.close()


def send(
    wire: _fanout.Wire,
    payload: bytes,
    seq: int,
    ts: int,
    marker: int = 0,
    padding: int = 0,
    value: int = -1,
    start: Callable[[bytes], bool] | None = None,
) -> int:
    return _fanout.fanout((wire,), payload, seq, ts, marker, padding, value, start, 12.5)


def header(first: int, second: int, seq: int, ts: int, ssrc: int = SSRC) -> bytes:
    return struct.pack("!BBHII", first, second, seq, ts, ssrc)


def test_the_forwarder_uses_the_extension() -> None:
    assert _fanout.__file__.endswith(".so"), "media._fanout must be the built C extension"
    assert issubclass(forwarder.Feed, _fanout.Wire)
    assert "fanout" in forwarder.Forwarder.on_packet.__code__.co_names
    assert forwarder.HISTORY_SIZE == _fanout.HISTORY_SIZE == 512


def test_audio_is_rewritten_with_its_level_and_protected_like_pylibsrtp(link: Link) -> None:
    wire = link.wire
    wire.next_seq, wire.ts_offset = 100, 1000
    # mid "0" as id 1, audio level as id 2: one word of elements, no tail.
    ext = rtp.Extensions(1, "0", 2, 1)
    wire.set_extensions(ext.head, ext.tail, ext.plain, ext.value_size)
    assert send(wire, b"opus-1", 5000, 7, marker=1, value=0x80 | 33) == 1
    block = b"\xbe\xde\x00\x01" + b"\x100" + bytes([0x20, 0x80 | 33])
    expected = header(0x90, 0x80 | 111, 100, 1007) + block + b"opus-1"
    raw = link.rx.recv(2048)
    # The bytes on the wire are exactly what pylibsrtp makes of the rewritten packet.
    assert raw == _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND).protect(expected)
    assert link.unprotect.unprotect(raw) == expected
    # Without a level the block carries only the mid.
    send(wire, b"opus-2", 5001, 967)
    plain_block = b"\xbe\xde\x00\x01\x100\x00\x00"
    assert link.receive() == header(0x90, 111, 101, 1967) + plain_block + b"opus-2"
    assert (wire.packets, wire.octets, wire.last_ts, wire.next_seq) == (2, 12, 1967, 102)
    assert wire.last_time == 12.5
    # No extension negotiated: no block at all.
    wire.set_extensions(b"", b"", b"", 0)
    send(wire, b"opus-3", 5002, 1927, value=5)
    assert link.receive() == header(0x80, 111, 102, 2927) + b"opus-3"


def test_video_keeps_padding_and_gets_abs_send_time(link: Link) -> None:
    wire = link.wire
    wire.next_seq, wire.ts_offset, wire.payload_type = 0xFFFE, 0xFFFFFFF0, 96
    ext = rtp.Extensions(1, "1", 3, 3)  # mid and abs-send-time: 6 octets, 2 of tail
    wire.set_extensions(ext.head, ext.tail, ext.plain, ext.value_size)
    payloads = [b"\x10\x00key", b"\x00more", b"\x00end"]
    for i, payload in enumerate(payloads):
        # The publisher's sequence numbers wrap too; padding only on the second packet.
        send(
            wire,
            payload,
            (0xFFFF + i) & 0xFFFF,
            0x20,
            marker=i == 2,
            padding=4 * (i == 1),
            value=0xABCDEF,
        )
    block = b"\xbe\xde\x00\x02\x101" + bytes([0x32, 0xAB, 0xCD, 0xEF]) + b"\x00\x00"
    expected = [
        header(0x90, 96, 0xFFFE, 0x10) + block + payloads[0],
        header(0xB0, 96, 0xFFFF, 0x10) + block + payloads[1] + b"\x00\x00\x00\x04",
        header(0x90, 0x80 | 96, 0, 0x10) + block + payloads[2],
    ]
    assert [link.receive() for _ in payloads] == expected
    assert wire.next_seq == 1


def test_a_feed_starts_at_a_keyframe_and_drops_what_came_before_it(link: Link) -> None:
    wire = link.wire
    wire.next_seq, wire.ts_offset, wire.payload_type = 500, 0, 96
    wire.waiting = True
    asked: list[bytes] = []

    def start(payload: bytes) -> bool:
        asked.append(payload)
        return payload.startswith(b"K")

    assert send(wire, b"delta", 10, 0, start=start) == 0
    assert send(wire, b"Key", 12, 3000, start=start) == 1
    assert not wire.waiting and asked == [b"delta", b"Key"]
    assert send(wire, b"late", 11, 0, start=start) == 0  # reordered from before the start
    assert send(wire, b"next", 13, 3000, start=start) == 1
    assert asked == [b"delta", b"Key"], "the detector runs only while a feed waits"
    assert [link.receive()[2:4] for _ in range(2)] == [b"\x01\xf4", b"\x01\xf5"]
    assert link.nothing_arrives()


def test_paused_or_unready_feeds_get_nothing_and_restart_contiguously(link: Link) -> None:
    wire = link.wire
    wire.next_seq = 10
    send(wire, b"a", 1000, 0)
    wire.paused = True
    assert send(wire, b"b", 1001, 0) == 0
    wire.paused, wire.ready = False, False
    assert send(wire, b"c", 1002, 0) == 0
    wire.ready, wire.waiting = True, True  # a resume: re-based at the next packet
    send(wire, b"d", 3000, 0)
    assert [link.receive()[2:4] for _ in range(2)] == [b"\x00\x0a", b"\x00\x0b"]
    assert link.nothing_arrives()
    assert wire.packets == 2


def test_nacked_packets_are_sent_again_as_rtx_from_the_history(link: Link) -> None:
    wire = link.wire
    wire.next_seq, wire.rtx_seq, wire.payload_type = 40, 900, 96
    ext = rtp.Extensions(1, "1", 3, 3)
    wire.set_extensions(ext.head, ext.tail, ext.plain, ext.value_size)
    assert not wire.retransmit(40, 97), "no history kept yet"
    wire.keep_history(True)
    sent = []
    for i in range(3):
        send(wire, bytes([i]) * 50, 7 + i, 90 * i, padding=3 * (i == 1), value=i)
        sent.append(link.receive())
    assert wire.retransmit(41, 97)
    assert link.receive() == rtp.wrap_rtx(sent[1], 97, 900, RTX_SSRC)
    assert wire.retransmit(41, -1)  # no RTX negotiated: the packet as it was
    again = link.rx.recv(2048)  # (a replay for the first receiving session)
    assert _session(pylibsrtp.Policy.SSRC_ANY_INBOUND).unprotect(again) == sent[1]
    assert not wire.retransmit(43, 97), "never sent"
    for i in range(_fanout.HISTORY_SIZE):
        send(wire, b"x", 10 + i, 0)
        link.receive()
    assert not wire.retransmit(40, 97), "overwritten by newer packets"
    assert (wire.retransmitted, wire.rtx_seq) == (2, 901)


def test_a_closed_socket_is_never_written_even_when_its_number_is_reused(link: Link) -> None:
    class Feed(_fanout.Wire):
        lookups = 0

        def _connect(self) -> None:
            type(self).lookups += 1

    session = _session(pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
    gone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    number = gone.fileno()
    feed, other = Feed(), Feed()
    feed.ready = other.ready = True
    pointers = hooks.srtp_pointers(session)
    feed.use_socket(session, *pointers, gone, link.rx.getsockname(), gone.sendto)
    gone.close()
    # Another socket now has the closed one's number (as a new connection may get it).
    os.dup2(link.tx.fileno(), number)
    try:
        # The feed sees its socket closed: nothing sent, counted, forgotten; the feed that
        # never had a socket looks for one; neither stops the other.
        assert _fanout.fanout([feed, other], b"p", 1, 1, 0, 0, -1, None, 0.0) == 0
        assert link.nothing_arrives()
        assert feed.send_errors == 1 and not feed.connected
        assert Feed.lookups == 1 and other.packets == 1
        # At the next packet both look.
        _fanout.fanout([feed, other], b"q", 2, 1, 0, 0, -1, None, 0.0)
        assert Feed.lookups == 3 and feed.packets == 2
    finally:
        os.close(number)
    with pytest.raises(ValueError):
        feed.use_socket(session, *pointers, gone, ("127.0.0.1", 9), gone.sendto)
    with pytest.raises(TypeError):
        _fanout.fanout([object()], b"p", 1, 1, 0, 0, -1, None, 0.0)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        feed.set_extensions(bytes(60), b"", b"", 3)


@dataclass
class Published:
    payload: bytes
    ts: int
    marker: int


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


def _record(viewer: ClientViewer, mid: str | None) -> list[RtpPacket]:
    """Every packet the viewer's receiver of section `mid` hands on (after RTX repair)."""
    transceiver = next(t for t in viewer.pc.getTransceivers() if t.mid == mid)
    tap = getattr(transceiver.receiver, hooks.RECEIVER_JITTER_BUFFER)
    packets: list[RtpPacket] = []
    counted = tap.on_packet

    def add(packet: RtpPacket) -> None:
        packets.append(packet)
        counted(packet)

    tap.on_packet = add
    return packets


async def test_subscribers_get_the_publishers_packets_renumbered(room: Harness) -> None:
    publisher = await room.publish("ann")
    video, audio = publisher.track_id("video"), publisher.track_id("audio")
    forwarders = {t: room.sfu.track(t) for t in (video, audio)}
    published: dict[str, dict[int, Published]] = {video: {}, audio: {}}
    for track, fwd in forwarders.items():
        tap = getattr(fwd._receiver, hooks.RECEIVER_JITTER_BUFFER)
        on_packet = tap.on_packet

        def record(
            packet: RtpPacket,
            sent: dict[int, Published] = published[track],
            on_packet: Callable[[RtpPacket], None] = on_packet,
        ) -> None:
            sent[packet.sequence_number] = Published(
                packet.payload, packet.timestamp, packet.marker
            )
            on_packet(packet)

        tap.on_packet = record
    views = [await room.watch([audio, video]) for _ in range(2)]
    got = {
        (i, track): _record(viewer, subscription.mid(track))
        for i, (subscription, viewer) in enumerate(views)
        for track in (video, audio)
    }
    await wait_for(lambda: all(len(p) >= 40 for p in got.values()), within=6)

    for (i, track), packets in got.items():
        feed = views[i][0].feed(track)
        assert {p.ssrc for p in packets} == {feed.ssrc}
        seqs = sorted(p.sequence_number for p in packets)
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "contiguous, no gap"
        for packet in packets:
            # The packet the publisher sent with that number: same payload, byte for byte.
            original = published[track][(packet.sequence_number - feed.seq_offset) & 0xFFFF]
            assert packet.payload == original.payload
            assert packet.marker == original.marker
            assert (packet.timestamp - original.ts) & 0xFFFFFFFF == feed.ts_offset
        assert feed.connected and feed.send_errors == 0
    for subscription, viewer in views:
        assert received(subscription, viewer, video).first_is_keyframe


async def test_a_muted_track_reaches_nobody_and_comes_back_at_a_keyframe(room: Harness) -> None:
    publisher = await room.publish("ann")
    video = publisher.track_id("video")
    subscription, viewer = await room.watch([video])
    got = received(subscription, viewer, video)
    await wait_for(lambda: got.frames >= 5, within=5)
    fwd = room.sfu.track(video)
    loop = asyncio.get_running_loop()

    fwd.mute()
    await asyncio.sleep(0.1)  # packets already on the wire
    muted_at, count = loop.time(), len(got.numbers)
    last_seq = got.numbers[-1][0]
    await asyncio.sleep(0.4)
    assert got.packets_since(muted_at) == 0

    fwd.unmute()
    await wait_for(lambda: len(got.numbers) > count, within=1.5)
    first = got.first_since(muted_at)
    assert first is not None and first[1], "unmuted at a keyframe"
    assert got.numbers[count][0] == (last_seq + 1) & 0xFFFF, "numbering continues"
