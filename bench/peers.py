"""The tool's aiortc peers: a publisher sending a pre-encoded clip, a viewer counting packets.

Neither encodes nor decodes. The publisher hands aiortc `av.Packet`s paced by their pts; a
keyframe request is answered from the clip's all-intra encoding. The viewer taps RTP right
after SRTP decryption in its DTLS transport (below aiortc's receivers, jitter buffers and
decoders) and stops the decoder threads aiortc starts, so one core drives a hundred viewers.

Added delay is measured by matching frames: the publisher notes when the last packet of each
video frame leaves (keyed by the payload's last bytes, which a forwarding server does not
touch), and a viewer looks up the same bytes when the frame's last packet arrives. Both run in
this process, on one monotonic clock. A server that re-encodes (the MediaRelay baseline)
produces other bytes, so its delay is not measured.
"""

import asyncio
import contextlib
import random
import struct
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.rtp import pack_remb_fci
from aiortc.sdp import SessionDescription

from bench import loopback
from bench.clip import AUDIO_CLOCK, VIDEO_CLOCK, Clip

FINGERPRINT = 12  # bytes at the end of a frame's last RTP payload
MAX_DESCRIPTOR = 6  # VP8 payload descriptor at most; H.264 FU-A: 2
REMB_BITRATE = 5_000_000  # what each viewer says it can receive: plenty, so nothing pauses
MIME = {"vp8": "video/VP8", "h264": "video/H264"}
DECODER_THREAD_SUFFIX = "-decoder"


def video_codecs(codec: str | None) -> list[RTCRtpCodecCapability]:
    """aiortc's video codecs without RTX: VP8 and/or H.264 constrained baseline, mode 1."""
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    wanted = [MIME[codec]] if codec else list(MIME.values())
    return [
        c
        for c in capabilities
        if c.mimeType in wanted
        and (c.mimeType != "video/H264" or c.parameters.get("profile-level-id") == "42e01f")
    ]


class SendTimes:
    """When each frame's last packet left a publisher, by the payload's last bytes."""

    def __init__(self) -> None:
        self.sent: dict[bytes, float] = {}


class ClipTrack(MediaStreamTrack):
    """Releases the clip's packets at their pts, looping with pts increasing."""

    def __init__(self, kind: str, clip: Clip, start: Callable[[], float]) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        video = kind == "video"
        self._packets = clip.video if video else clip.audio
        self._clock = VIDEO_CLOCK if video else AUDIO_CLOCK
        self._time_base = Fraction(1, self._clock)
        self._period = round(clip.seconds * self._clock)
        self._start = start
        self._index = 0
        self._loops = 0
        self._keyframe_wanted = False
        self.keyframe_requests = 0

    def want_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._keyframe_wanted = True

    async def recv(self) -> Any:
        if self._index == len(self._packets):
            self._index = 0
            self._loops += 1
        encoded = self._packets[self._index]
        if self._keyframe_wanted and self.kind == "video":
            self._keyframe_wanted = False
            encoded = self._clip.intra[self._index]
        pts = encoded.pts + self._loops * self._period
        delay = self._start() + pts / self._clock - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(encoded.data)
        packet.pts = pts
        packet.time_base = self._time_base
        self._index += 1
        return packet


class Publisher:
    """One participant sending the clip's video and Opus audio; the tool offers."""

    def __init__(self, clip: Clip) -> None:
        self.clip = clip
        self.times = SendTimes()
        self._started: float | None = None
        self.pc = RTCPeerConnection(loopback.configuration())
        self.audio = ClipTrack("audio", clip, self._start)
        self.video = ClipTrack("video", clip, self._start)
        self.pc.addTransceiver(self.audio, direction="sendonly")
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        video.setCodecPreferences(video_codecs(clip.codec))
        # A PLI/FIR from the server reaches the sender's _send_keyframe, which only flags an
        # encoder: on the pre-encoded path the clip must answer it instead.
        _require(video.sender, "_send_keyframe")
        video.sender._send_keyframe = self.video.want_keyframe  # type: ignore[method-assign]

    def _start(self) -> float:
        if self._started is None:
            self._started = time.monotonic()
        return self._started

    async def offer(self) -> str:
        loopback.restrict(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        for transport in {t.sender.transport for t in self.pc.getTransceivers()}:
            _tap_sent(transport, self.times)

    async def close(self) -> None:
        await self.pc.close()


def _tap_sent(dtls: Any, times: SendTimes) -> None:
    original: Callable[[bytes], Awaitable[None]] = _require(dtls, "_send_rtp")
    sent = times.sent

    async def send_rtp(data: bytes) -> None:
        # RTP with the marker bit: the last packet of a frame (RTCP types 200-206 would also
        # show the bit but their "payload type" 72-78 is never a media one; harmless here).
        if data[1] & 0x80:
            sent[data[-FINGERPRINT:]] = time.monotonic()
        await original(data)

    dtls._send_rtp = send_rtp


@dataclass
class Stream:
    """Counters of one received RTP stream (SSRC); updated per packet, so kept minimal."""

    kind: str
    packets: int = 0
    bytes: int = 0
    frames: int = 0
    highest: int = -1  # extended highest sequence number
    first: int = -1
    times: "SendTimes | None" = None  # the sender's send times, to match frames against


@dataclass
class Snapshot:
    packets: int
    bytes: int
    frames: int
    expected: int
    streams: int = 0  # RTP streams (SSRCs) of the kind: one per publisher watched


@dataclass
class Viewer:
    """A receive-only peer counting what arrives; `source` gives the send times to match
    (`by_ssrc` instead for streams of several publishers on one connection)."""

    source: SendTimes | None
    codec: str | None = None
    pc: RTCPeerConnection = field(init=False)
    kinds: dict[int, str] = field(default_factory=dict)  # payload type -> "audio"/"video"
    streams: dict[bytes, Stream] = field(default_factory=dict)  # by the SSRC's 4 bytes
    by_ssrc: dict[bytes, SendTimes] = field(default_factory=dict)
    joined_at: float = 0.0
    first_frame_at: float | None = None
    delays: list[float] = field(default_factory=list)
    unmatched: int = 0
    _arrived: float = 0.0  # when the datagram being handled left the socket
    _done: set[int] = field(default_factory=set)  # receivers and transports already tapped
    _reporting: list["asyncio.Task[None]"] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(loopback.configuration())
        self.joined_at = time.monotonic()

    def add_receivers(self) -> None:
        """For a WHEP-style viewer that offers: one recvonly audio and one video section."""
        self.pc.addTransceiver("audio", direction="recvonly")
        video = self.pc.addTransceiver("video", direction="recvonly")
        video.setCodecPreferences(video_codecs(self.codec))
        for transceiver in self.pc.getTransceivers():
            self._quiet(transceiver.receiver)

    async def offer(self) -> str:
        loopback.restrict(self.pc)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        self._tap()

    async def answer(self, offer: str) -> str:
        """For a server that offers (Janus, Veche): answer receive-only, without decoders;
        a later offer on the same connection (renegotiation) is answered the same way."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in self.pc.getTransceivers():
            transceiver.direction = "recvonly"
            self._quiet(transceiver.receiver)
        loopback.restrict(self.pc)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._tap()
        return str(self.pc.localDescription.sdp)

    def _tap(self) -> None:
        for sdp in (self.pc.localDescription.sdp, self.pc.remoteDescription.sdp):
            for media in SessionDescription.parse(sdp).media:
                for codec in media.rtp.codecs:
                    if codec.payloadType is None or codec.mimeType.lower().endswith("/rtx"):
                        continue
                    self.kinds[codec.payloadType] = media.kind
        for transport in {t.receiver.transport for t in self.pc.getTransceivers()}:
            if id(transport) in self._done:
                continue  # renegotiated: wrapping twice would break the arrival FIFO
            self._done.add(id(transport))
            _require(transport, "_handle_rtp_data")
            transport._handle_rtp_data = self._on_rtp  # type: ignore[method-assign]
            self._stamp_arrivals(transport.transport)
            self._reporting.append(asyncio.ensure_future(self._report(transport)))

    def _quiet(self, receiver: RTCRtpReceiver) -> None:
        if id(receiver) not in self._done:
            self._done.add(id(receiver))
            _no_decoder(receiver)

    def _stamp_arrivals(self, ice: Any) -> None:
        """Note when each datagram left the socket, not when the DTLS transport's coroutine
        got to it: with a hundred viewers in one event loop the two differ by milliseconds.

        aioice's Connection.data_received queues every non-STUN datagram and the ICE
        transport's _recv takes them in the same order: a FIFO of times beside that queue
        pairs each datagram with its arrival.
        """
        connection = _require(ice, "_connection")
        queued: Callable[[bytes, int], None] = _require(connection, "data_received")
        receive: Callable[[], Awaitable[bytes]] = _require(ice, "_recv")
        arrivals: deque[float] = deque()

        def data_received(data: bytes, component: int) -> None:
            arrivals.append(time.monotonic())
            queued(data, component)

        async def recv() -> bytes:
            data = await receive()
            self._arrived = arrivals.popleft() if arrivals else time.monotonic()
            return data

        connection.data_received = data_received
        ice._recv = recv

    async def _on_rtp(self, data: bytes, arrival_time_ms: int) -> None:
        stream = self.streams.get(data[8:12])
        if stream is None:
            kind = self.kinds.get(data[1] & 0x7F)
            if kind is None or len(data) < 12:
                return
            ssrc = data[8:12]
            stream = self.streams[ssrc] = Stream(kind, times=self.by_ssrc.get(ssrc, self.source))
        stream.packets += 1
        stream.bytes += len(data)
        seq = (data[2] << 8) | data[3]
        if stream.highest < 0:
            stream.first = stream.highest = seq
        else:
            step = (seq - stream.highest) & 0xFFFF
            if step < 0x8000:  # newer; an older one (reordered, duplicate) is only counted
                stream.highest += step
        if stream.kind == "audio":
            stream.frames += 1
        elif data[1] & 0x80:
            stream.frames += 1
            now = self._arrived
            if self.first_frame_at is None:
                self.first_frame_at = now
            if stream.times is not None:
                self._match(data, now, stream.times)

    def _match(self, data: bytes, now: float, times: SendTimes) -> None:
        end = len(data) - (data[-1] if data[0] & 0x20 else 0)
        start = 12 + 4 * (data[0] & 0x0F)
        if data[0] & 0x10 and len(data) >= start + 4:
            start += 4 + 4 * ((data[start + 2] << 8) | data[start + 3])
        # A frame's last packet may carry only a few bytes of it: then the last bytes would
        # include the payload descriptor, which a server may rewrite. Skip those frames.
        if end - start < FINGERPRINT + MAX_DESCRIPTOR:
            return
        sent = times.sent.get(data[end - FINGERPRINT : end])
        if sent is None:
            self.unmatched += 1
        else:
            self.delays.append(now - sent)

    def snapshot(self, kind: str) -> Snapshot:
        packets = bytes_ = frames = expected = streams = 0
        for s in self.streams.values():
            if s.kind == kind and s.highest >= 0:
                streams += 1
                packets += s.packets
                bytes_ += s.bytes
                frames += s.frames
                expected += s.highest - s.first + 1
        return Snapshot(packets, bytes_, frames, expected, streams)

    async def _report(self, transport: Any) -> None:
        """What a browser sends back about what it receives, about once a second: a receiver
        report (a block per stream: loss, highest sequence number) and a REMB. The tap keeps
        aiortc's receivers from seeing packets, so they would send neither; a server's cost
        per viewer includes handling these."""
        ssrc = random.getrandbits(32)
        marks: dict[bytes, tuple[int, int]] = {}  # stream -> (expected, received) at last report
        await asyncio.sleep(random.uniform(0.5, 1.5))
        while True:
            blocks = []
            for key, stream in list(self.streams.items())[:31]:
                if stream.highest < 0:
                    continue
                expected = stream.highest - stream.first + 1
                was_expected, was_received = marks.get(key, (0, 0))
                marks[key] = (expected, stream.packets)
                gap = expected - was_expected
                lost = max(0, gap - (stream.packets - was_received))
                fraction = min(255, lost * 256 // gap) if gap > 0 else 0
                cumulative = max(0, expected - stream.packets) & 0xFFFFFF
                # SSRC, fraction lost, cumulative lost (24 bits), extended highest sequence
                # number, then jitter, LSR and DLSR (left 0: nothing here reads them).
                blocks.append(
                    key
                    + struct.pack("!B", fraction)
                    + cumulative.to_bytes(3, "big")
                    + struct.pack("!IIII", stream.highest & 0xFFFFFFFF, 0, 0, 0)
                )
            if blocks:
                report = struct.pack("!BBHI", 0x80 | len(blocks), 201, 1 + 6 * len(blocks), ssrc)
                fci = pack_remb_fci(REMB_BITRATE, [int.from_bytes(k, "big") for k in self.streams])
                remb = struct.pack("!BBHII", 0x80 | 15, 206, 2 + len(fci) // 4, ssrc, 0) + fci
                with contextlib.suppress(ConnectionError, OSError):
                    await transport._send_rtp(report + b"".join(blocks) + remb)
            await asyncio.sleep(random.uniform(0.75, 1.25))

    async def close(self) -> None:
        for task in self._reporting:
            task.cancel()
        await self.pc.close()


def _no_decoder(receiver: RTCRtpReceiver) -> None:
    """aiortc starts a decoder thread in receive(); the tap makes it useless: stop it at once."""
    original: Callable[[Any], Awaitable[None]] = receiver.receive
    stop: Callable[[], None] = _require(receiver, "_RTCRtpReceiver__stop_decoder")

    async def receive(parameters: Any) -> None:
        await original(parameters)
        stop()

    receiver.receive = receive  # type: ignore[method-assign]


def decoder_threads() -> int:
    """aiortc decoder threads alive in this process (the tool's viewers should leave none)."""
    return sum(t.name.endswith(DECODER_THREAD_SUFFIX) for t in threading.enumerate())


def _require(obj: object, name: str) -> Any:
    if not hasattr(obj, name):
        raise RuntimeError(
            f"{type(obj).__name__} has no {name}: aiortc changed, update bench/peers.py"
        )
    return getattr(obj, name)
