"""The egress's receiving connection: it answers the server's `subscribe_offer`s and hands each
media section's RTP to the track file of whichever track that section carries now.

Packets are taken below aiortc's jitter buffer, as they arrive (RTX unwrapped, after aiortc's
NACKs), and written without decoding. When a programme is composed, the packets go on into the
jitter buffer too, so aiortc decodes each track once and its frames go to the programme.
A section whose track ends goes inactive and may later carry another track (its `mid` is
reused): its file is closed and a new one opened for the new track.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from aiortc import MediaStreamTrack, RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RtcpSrPacket, RtpPacket

from media import hooks, ice
from recording.capture import Capture, CapturedTrack
from recording.errors import RecordingError
from recording.rtpframes import RtpData

logger = logging.getLogger(__name__)

GATHERING_LIMIT = 5.0  # seconds: aiortc does not trickle, the answer waits for its candidates
KEYFRAME_INTERVAL = 1.0  # at most one keyframe request a second per track
LABELS = {"microphone": "mic", "camera": "cam", "screen": "screen"}


@dataclass(frozen=True)
class TrackInfo:
    """A published track as `subscribe_offer` describes it."""

    id: str
    participant: str
    source: str
    kind: str

    @classmethod
    def parse(cls, data: object) -> "TrackInfo | None":
        if not isinstance(data, dict):
            return None
        fields = [data.get(k) for k in ("id", "participant", "source", "kind")]
        if not all(isinstance(f, str) and f for f in fields):
            return None
        return cls(*[str(f) for f in fields])


class Programme(Protocol):
    """Where decoded frames go (recording.compositor.Compositor)."""

    def picture(self, participant: str, source: str, frame: Any) -> None: ...
    def sound(self, key: str, frame: Any) -> None: ...


class Section:
    """One media section of the connection and the track it carries now."""

    def __init__(self, receiving: "Receiving", transceiver: RTCRtpTransceiver) -> None:
        self._receiving = receiving
        self.transceiver = transceiver
        self.mid = str(transceiver.mid)
        self.track: TrackInfo | None = None
        self.captured: CapturedTrack | None = None
        self.codec = ""
        self.payload_type: int | None = None
        self._reported = False
        self._asked = 0.0
        self._pump: asyncio.Task[None] | None = None

    def carry(self, track: TrackInfo | None) -> None:
        """The section carries `track` from now on (None: it went inactive)."""
        if track == self.track:
            return
        self.end()
        self.track = track
        if track is None:
            return
        codecs = [c for c in hooks.negotiated_codecs(self.transceiver) if c.name != "rtx"]
        if not codecs:
            logger.warning("no codec negotiated for %s", track.id)
            return
        self.codec, self.payload_type = codecs[0].name.lower(), codecs[0].payloadType
        label = f"{track.participant}-{LABELS.get(track.source, track.source)}"
        capture = self._receiving.capture
        try:
            if capture is not None:  # None: the broadcast's programme keeps no track files
                self.captured = capture.open_track(
                    track.participant, label, track.source, self.codec
                )
        except RecordingError as error:
            self._receiving.failed(f"{track.id}: {error.message}")
        self._reported = False
        self._receiving.track_changed(track, True)

    def end(self) -> None:
        """Close the current track's file (its track_stopped is written)."""
        captured, self.captured = self.captured, None
        track, self.track = self.track, None
        if captured is not None:
            captured.close()
            if captured.writer.error is not None:
                self._receiving.failed(captured.writer.error.message)
        if track is not None:
            self._receiving.track_changed(track, False)

    def on_packet(self, packet: RtpPacket) -> None:
        captured = self.captured
        if captured is None or packet.payload_type != self.payload_type:
            return
        data = RtpData(
            packet.payload,
            packet.timestamp,
            packet.sequence_number,
            bool(packet.marker),
            packet.ssrc,
        )
        try:
            captured.push(data)
        except RecordingError as error:
            # This track's file stops (track_stopped has the error); the others go on.
            self.captured = None
            self._receiving.failed(error.message)
            return
        if captured.writer.wants_keyframe:
            now = time.monotonic()
            if now - self._asked >= KEYFRAME_INTERVAL:
                self._asked = now
                self._receiving.spawn(self._ask_keyframe(packet.ssrc))

    async def _ask_keyframe(self, ssrc: int) -> None:
        with contextlib.suppress(Exception):  # the connection may be closing
            await hooks.send_pli(self.transceiver.receiver, ssrc)

    def on_sender_report(self, report: RtcpSrPacket) -> None:
        """The first sender report after the file started (earlier ones may predate media)."""
        captured = self.captured
        capture = self._receiving.capture
        if (
            captured is None
            or capture is None
            or self._reported
            or captured.writer.started_wall is None
        ):
            return
        self._reported = True
        info = report.sender_info
        try:
            capture.timeline.sender_report(
                captured.file, info.ntp_timestamp / 2**32, info.rtp_timestamp
            )
        except RecordingError as error:
            self._receiving.failed(error.message)

    def start_pump(self, track: MediaStreamTrack, programme: Programme) -> None:
        self._pump = asyncio.ensure_future(self._frames(track, programme))

    async def _frames(self, track: MediaStreamTrack, programme: Programme) -> None:
        """Decoded frames of this section, to the programme, as the current track's."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            current = self.track
            if current is None:
                continue
            try:
                if current.kind == "video":
                    programme.picture(current.participant, current.source, frame)
                else:
                    programme.sound(current.id, frame)
            except Exception:
                logger.exception("the programme refused a frame of %s", current.id)

    async def close(self) -> None:
        self.end()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump


def _tap(
    transceiver: RTCRtpTransceiver, on_packet: Callable[[RtpPacket], None], decode: bool
) -> None:
    receiver = transceiver.receiver
    hooks.no_bandwidth_estimate(receiver)
    if decode:
        hooks.tee_receiver(receiver, on_packet)  # aiortc decodes for the programme
    else:
        hooks.tap_receiver(receiver, on_packet)  # no decoder is ever made


class Receiving:
    """The receiving peer connection of the egress and its sections."""

    def __init__(
        self,
        capture: Capture | None,
        settings: ice.IceSettings,
        programme: Programme | None,
        on_track: Callable[[TrackInfo, bool], None],
        on_error: Callable[[str], None],
    ) -> None:
        self.capture = capture
        self._settings = settings
        self._programme = programme
        self._on_track = on_track
        self._on_error = on_error
        self.pc = RTCPeerConnection(ice.configuration(settings))
        self.sections: dict[str, Section] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def track_changed(self, track: TrackInfo, on: bool) -> None:
        self._on_track(track, on)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def failed(self, message: str) -> None:
        self._on_error(message)

    async def answer(self, sdp: str, tracks: dict[str, Any]) -> str:
        """Apply a subscribe_offer; returns the answer (with every local candidate)."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            mid = transceiver.mid
            if mid is None:
                continue
            section = self.sections.get(str(mid))
            if section is None:
                section = self.sections[str(mid)] = Section(self, transceiver)
                _tap(transceiver, section.on_packet, self._programme is not None)
                hooks.on_sender_report(transceiver.receiver, section.on_sender_report)
                remote = transceiver.receiver.track  # made by setRemoteDescription
                if self._programme is not None and remote is not None:
                    section.start_pump(remote, self._programme)
            section.carry(TrackInfo.parse(tracks.get(str(mid))))
        ice.restrict_candidates(self.pc, self._settings)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        await _gathered(self.pc)
        return str(self.pc.localDescription.sdp)

    async def close(self) -> None:
        for section in self.sections.values():
            await section.close()
        await self.pc.close()


async def _gathered(pc: RTCPeerConnection) -> None:
    """setLocalDescription gathers already in aiortc; bounded, in case it ever returns early."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GATHERING_LIMIT
    while pc.iceGatheringState != "complete" and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
