"""aiortc test clients on loopback: a publisher sending a pre-encoded clip, a viewer counting.

Neither encodes nor decodes: the publisher hands aiortc av.Packets (paced by pts), the viewer
taps its receivers' RTP packets the way the SFU does.
"""

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtpPacket,
    pack_remb_fci,
)
from aiortc.sdp import SessionDescription

from media import hooks, ice, rtp
from media.publisher import Publication
from media.sfu import Sfu
from media.subscriber import Subscription
from tests.media_clip import AUDIO_CLOCK, VIDEO_CLOCK, Clip

LOOPBACK = ice.IceSettings(host_addresses=("127.0.0.1",))


class ClipTrack(MediaStreamTrack):
    """Releases a clip's encoded packets at their pts, looping; a keyframe on request."""

    def __init__(self, kind: str, clip: Clip) -> None:
        super().__init__()
        self.kind = kind
        self._clip = clip
        video = kind == "video"
        self._packets = clip.video if video else clip.audio
        self._clock = VIDEO_CLOCK if video else AUDIO_CLOCK
        self._time_base = Fraction(1, self._clock)
        self._period = round(clip.seconds * self._clock)
        self._index = 0
        self._loops = 0
        self._start: float | None = None
        self._keyframe_wanted = False
        self.keyframe_requests = 0
        self.keyframes_sent = 0
        self.deaf_to = 0  # how many next requests to ignore, as a busy encoder may

    def want_keyframe(self) -> None:
        self.keyframe_requests += 1
        if self.deaf_to > 0:
            self.deaf_to -= 1
            return
        self._keyframe_wanted = True

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        if self._index == len(self._packets):
            self._index = 0
            self._loops += 1
        encoded = self._packets[self._index]
        if self._keyframe_wanted and self.kind == "video":
            self._keyframe_wanted = False
            encoded = self._clip.intra[self._index]
        if encoded.keyframe and self.kind == "video":
            self.keyframes_sent += 1
        pts = encoded.pts + self._loops * self._period
        delay = self._start + pts / self._clock - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(encoded.data)
        packet.pts = pts
        packet.time_base = self._time_base
        self._index += 1
        return packet


def send_audio_level(sender: RTCRtpSender, level: Callable[[], int]) -> None:
    """Put an RFC 6464 level (-dBov, 0 loudest) in each packet of a pre-encoded audio track:
    aiortc measures levels only of frames it encodes itself, so a clip of packets sends none."""
    original = sender._next_encoded_frame

    async def next_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None:
            frame.audio_level = -level()  # aiortc keeps dBov (<= 0) and writes its negation
        return frame

    sender._next_encoded_frame = next_frame  # type: ignore[method-assign]


class ClientPublisher:
    """Publishes a clip's Opus audio and VP8 video (the client offers)."""

    def __init__(
        self, clip: Clip, video_codec: str = "video/VP8", audio_level: int | None = None
    ) -> None:
        self.pc = RTCPeerConnection(ice.configuration(LOOPBACK))
        self.audio = ClipTrack("audio", clip)
        self.video = ClipTrack("video", clip)
        audio = self.pc.addTransceiver(self.audio, direction="sendonly")
        self.audio_level = audio_level
        if audio_level is not None:
            send_audio_level(audio.sender, self._level)
        video = self.pc.addTransceiver(self.video, direction="sendonly")
        # Offer every codec, the clip's first: the server must pick it and only it.
        codecs = RTCRtpSender.getCapabilities("video").codecs
        first = [
            c
            for c in codecs
            if c.mimeType == video_codec
            and c.parameters.get("profile-level-id", "42e01f") == "42e01f"
        ]
        video.setCodecPreferences(first + [c for c in codecs if c not in first])
        hooks.on_keyframe_request(video.sender, self.video.want_keyframe)
        self.publication: Publication | None = None

    def _level(self) -> int:
        return 127 if self.audio_level is None else self.audio_level

    def mids(self) -> dict[str, str]:
        """{kind: mid} of this publisher's sections (after offer())."""
        return {t.kind: str(t.mid) for t in self.pc.getTransceivers() if t.mid is not None}

    async def offer(self) -> str:
        ice.restrict_candidates(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    def track_ids(self) -> list[str]:
        assert self.publication is not None
        return [t.track_id for t in self.publication.tracks]

    def track_id(self, kind: str) -> str:
        assert self.publication is not None
        return next(t.track_id for t in self.publication.tracks if t.kind == kind)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class Received:
    """What a viewer got on one media section."""

    kind: str
    codec: str
    packets: int = 0
    frames: int = 0
    first_is_keyframe: bool | None = None
    first_at: float | None = None
    last_at: float | None = None
    keyframe_starts: int = 0
    ssrcs: set[int] = field(default_factory=set)
    # (arrival time, starts a keyframe) and (sequence number, timestamp) of every video packet
    log: list[tuple[float, bool]] = field(default_factory=list)
    numbers: list[tuple[int, int]] = field(default_factory=list)

    def add(self, packet: RtpPacket) -> None:
        now = asyncio.get_running_loop().time()
        key = (
            rtp.keyframe_start_detector(self.codec)(packet.payload)
            if self.kind == "video"
            else True
        )
        if self.first_is_keyframe is None:
            self.first_is_keyframe = key
            self.first_at = now
        self.last_at = now
        self.packets += 1
        self.ssrcs.add(packet.ssrc)
        if self.kind == "video":
            self.keyframe_starts += key
            self.frames += packet.marker
            self.log.append((now, key))
            self.numbers.append((packet.sequence_number, packet.timestamp))
        else:
            self.frames += 1

    def packets_since(self, moment: float) -> int:
        return sum(1 for at, _ in self.log if at >= moment)

    def first_since(self, moment: float) -> tuple[float, bool] | None:
        return next(((at, key) for at, key in self.log if at >= moment), None)


class ClientViewer:
    """Receives what the server offers and counts it per media section (mid)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(ice.configuration(LOOPBACK))
        self.received: dict[str, Received] = {}

    async def answer(self, offer: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is None or mid in self.received:
                continue
            codecs = hooks.negotiated_codecs(transceiver)
            received = Received(transceiver.kind, codecs[0].name if codecs else "")
            self.received[mid] = received
            hooks.tap_receiver(transceiver.receiver, received.add)
        ice.restrict_candidates(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        await self.pc.close()


async def publish(
    sfu: Sfu, name: str, clip: Clip, video_codec: str = "video/VP8"
) -> ClientPublisher:
    client = ClientPublisher(clip, video_codec)
    client.publication, answer = await sfu.publish(name, await client.offer())
    await client.accept(answer)
    return client


async def watch(sfu: Sfu, track_ids: list[str]) -> tuple[Subscription, ClientViewer]:
    subscription = sfu.subscribe()
    for track_id in track_ids:
        subscription.add(track_id)
    viewer = ClientViewer()
    await renegotiate(subscription, viewer)
    return subscription, viewer


async def renegotiate(subscription: Subscription, viewer: ClientViewer) -> None:
    await subscription.accept(await viewer.answer(await subscription.offer()))


def received(subscription: Subscription, viewer: ClientViewer, track_id: str) -> Received:
    mid = subscription.mid(track_id)
    assert mid is not None, f"{track_id} was never offered"
    return viewer.received[mid]


async def wait_for(condition: Any, within: float, step: float = 0.02, explain: Any = None) -> float:
    """Wait until condition() is true; returns the seconds it took (fails after `within`,
    with explain() in the message when given)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > within:
            detail = f": {explain()}" if explain else ""
            raise AssertionError(f"condition not met within {within} s{detail}")
        await asyncio.sleep(step)
    return loop.time() - start


class Harness:
    """An Sfu and the clients a test made, closed together."""

    def __init__(self, clip: Clip) -> None:
        self.sfu = Sfu(LOOPBACK)
        self.clip = clip
        self._clients: list[ClientPublisher | ClientViewer] = []

    async def publish(
        self, name: str, clip: Clip | None = None, video_codec: str = "video/VP8"
    ) -> ClientPublisher:
        client = await publish(self.sfu, name, clip or self.clip, video_codec)
        self._clients.append(client)
        return client

    async def watch(self, track_ids: list[str]) -> tuple[Subscription, ClientViewer]:
        subscription, viewer = await watch(self.sfu, track_ids)
        self._clients.append(viewer)
        return subscription, viewer

    async def close(self) -> None:
        await self.sfu.close()
        for client in self._clients:
            await client.close()


class MeetingPeer:
    """A participant of a live meeting over real signaling: a tests/sio_client.py Client that
    publishes the clip on its publish connection and answers every `subscribe_offer` with a
    receiving aiortc connection that counts packets per track (nothing decoded)."""

    def __init__(self, client: Any, clip: Clip, audio_level: int | None = None) -> None:
        self.client = client
        self.clip = clip
        self.audio_level = audio_level
        self.publisher: ClientPublisher | None = None
        self.pc = RTCPeerConnection(ice.configuration(LOOPBACK))
        self._by_mid: dict[str, Received] = {}
        self._track_of: dict[str, str] = {}  # mid -> track id
        self.received: dict[str, Received] = {}  # track id -> what arrived
        self.answered = 0
        self.token = ""  # the join token, for a rejoin
        self._bandwidth: int | None = None
        self._loss = 0.0
        self._remb_task: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        self._task = asyncio.ensure_future(self._answer_offers())

    @property
    def id(self) -> str:
        return str(self.client.id)

    async def publish(self, sources: dict[str, str] | None = None) -> Any:
        """Offer the clip's audio and video; returns the ack (the answer applied if any)."""
        self.publisher = ClientPublisher(self.clip, audio_level=self.audio_level)
        offer = await self.publisher.offer()
        mids = self.publisher.mids()
        labels = sources or {mids["audio"]: "microphone", mids["video"]: "camera"}
        ack = await self.client.call("publish", {"sdp": offer, "sources": labels})
        if "sdp" in ack:
            await self.publisher.accept(ack["sdp"])
        return ack

    def track(self, owner: "MeetingPeer", kind: str) -> Received:
        """What arrived of `owner`'s track of this kind."""
        assert owner.publisher is not None
        tid = f"{owner.id}/{owner.publisher.mids()[kind]}"
        got = self.received.get(tid)
        return got if got is not None else Received(kind, "")

    async def _answer_offers(self) -> None:
        try:
            while True:
                data = await self.client.next("subscribe_offer", wait=3600)
                await self._answer(data)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.failure = exc

    async def _answer(self, data: dict[str, Any]) -> None:
        offer = RTCSessionDescription(sdp=data["sdp"], type="offer")
        await self.pc.setRemoteDescription(offer)
        transceivers = {t.mid: t for t in self.pc.getTransceivers()}
        for mid, track in data["tracks"].items():
            if self._track_of.get(mid) == track["id"]:
                continue
            transceiver = transceivers[mid]
            codecs = hooks.negotiated_codecs(transceiver)
            got = Received(track["kind"], codecs[0].name if codecs else "")
            if mid not in self._by_mid:
                hooks.tap_receiver(transceiver.receiver, self._tap(mid))
            self._by_mid[mid] = got
            self._track_of[mid] = track["id"]
            self.received[track["id"]] = got
        ice.restrict_candidates(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        ack = await self.client.call("subscribe_answer", {"sdp": self.pc.localDescription.sdp})
        if ack != {"ok": True}:
            raise AssertionError(f"subscribe_answer refused: {ack}")
        self.answered += 1

    def report_bandwidth(self, bits: int | None, loss: float = 0.0) -> None:
        """Send REMB estimates of `bits` per second for the video received (aiortc's own
        estimator switched off) and receiver reports with `loss` (a fraction), as a slow or
        recovered link would; None stops."""
        self._bandwidth = bits
        self._loss = loss
        if bits is not None and self._remb_task is None:
            self._remb_task = asyncio.ensure_future(self._send_remb())

    async def _send_remb(self) -> None:
        description = SessionDescription.parse(self.pc.remoteDescription.sdp)
        ssrcs = [s.ssrc for m in description.media if m.kind == "video" for s in m.ssrc]
        receivers = [t.receiver for t in self.pc.getTransceivers() if t.kind == "video"]
        for receiver in receivers:  # a test's own REMB only
            vars(receiver)["_RTCRtpReceiver__remote_bitrate_estimator"] = None
        while True:
            if self._bandwidth is not None and receivers:
                receiver = receivers[0]
                own_ssrc = getattr(receiver, "_RTCRtpReceiver__rtcp_ssrc", 0) or 0
                packet = RtcpPsfbPacket(
                    fmt=RTCP_PSFB_APP,
                    ssrc=own_ssrc,
                    media_ssrc=0,
                    fci=pack_remb_fci(self._bandwidth, ssrcs),
                )
                await receiver._send_rtcp(packet)
                lost = min(255, int(self._loss * 256))
                infos = [RtcpReceiverInfo(s, lost, 0, 0, 0, 0, 0) for s in ssrcs]
                await receiver._send_rtcp(RtcpRrPacket(ssrc=own_ssrc, reports=infos))
            await asyncio.sleep(0.2)

    def _tap(self, mid: str) -> Callable[[RtpPacket], None]:
        def add(packet: RtpPacket) -> None:
            self._by_mid[mid].add(packet)

        return add

    async def close(self) -> None:
        for task in (self._task, self._remb_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.publisher is not None:
            await self.publisher.close()
        await self.pc.close()
        await self.client.close()
