"""One forwarded track written to a Matroska/WebM file as it arrives, never re-encoded.

Input is the track's RTP as the SFU forwards it: `push_rtp(bytes)` for RTP bytes after SRTP
(what a subscriber's transport or a tap on the forwarder holds), or `push(RtpData)` when the
fields are parsed already. Packets are put back in order within a small window, depacketized
into whole frames, and muxed with their RTP timestamps (time base 1/clock rate; the file starts
at 0 with the first frame written). Video starts at a keyframe; after a loss, frames are dropped
until the next keyframe (`wants_keyframe` says when to ask the publisher for one). Gaps (mute,
pause) keep their place in time, as timestamps are the publisher's.

The muxer closes a cluster at least every second and each closed cluster is written to the file
at once, so a process killed mid-recording leaves a file readable up to its last cluster.
"""

import contextlib
import logging
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recording import bitstream, template
from recording.errors import RecordingError
from recording.rtpframes import (
    Assembler,
    Frame,
    Reorder,
    RtpData,
    VideoAssembler,
    assembler_for,
    parse_rtp,
)

logger = logging.getLogger(__name__)

CLUSTER_MS = 1000  # longest stretch a crash can lose
_REORDER_VIDEO = 64  # packets held waiting for a missing one (a few frames)
_REORDER_AUDIO = 8
_DEFAULT_VIDEO_STEP = 3000  # 1/30 s at 90 kHz, for a frame whose successor never came


class TrackWriter:
    """Writes one track's RTP (Opus, VP8 or H.264) to `path` as it arrives."""

    def __init__(self, path: Path, codec: str, clock_rate: int | None = None) -> None:
        self.path = Path(path)
        self.codec = codec.lower()
        self._assembler: Assembler = assembler_for(codec)
        self.kind = "audio" if self.codec == "opus" else "video"
        self.clock_rate = clock_rate or (48000 if self.kind == "audio" else 90000)
        self._time_base = Fraction(1, self.clock_rate)
        self._reorder = (
            Reorder(_REORDER_AUDIO, 0.06) if self.kind == "audio" else Reorder(_REORDER_VIDEO, 0.15)
        )
        self._container: Any = None
        self._stream: Any = None
        self._ssrc: int | None = None
        self._last_ts: int | None = None  # last unwrapped timestamp seen, for unwrapping
        self._ts_base = 0  # added to unwrapped timestamps: moves a new SSRC onto the old line
        self._first_ts: int | None = None  # unwrapped + base timestamp of pts 0
        self._last_arrival = 0.0
        self._pending: tuple[Frame, float] | None = (
            None  # video: held until the next gives its duration
        )
        self._last_pts = -1
        self._end_pts = 0
        self._sps: bytes | None = None
        self._pps: bytes | None = None
        self.error: RecordingError | None = None
        self.closed = False
        self.packets = 0
        self.frames = 0
        self.malformed = 0
        self.started_wall: float | None = None  # time.time() when the first frame was written
        self.started_rtp: int | None = None  # its RTP timestamp (as received)

    # -- input ---------------------------------------------------------------------------------

    @property
    def wants_keyframe(self) -> bool:
        """True while video is waiting for a keyframe: ask the publisher (PLI)."""
        return isinstance(self._assembler, VideoAssembler) and self._assembler.wants_keyframe

    @property
    def lost(self) -> int:
        return self._reorder.lost

    @property
    def dropped_frames(self) -> int:
        return self._assembler.dropped

    @property
    def duration(self) -> float:
        """Seconds written so far (first frame to the end of the last)."""
        return self._end_pts / self.clock_rate

    def push_rtp(self, data: bytes, arrival: float | None = None) -> None:
        """One RTP packet (bytes, header included). A malformed packet is counted and dropped."""
        try:
            packet = parse_rtp(data)
        except ValueError:
            self.malformed += 1
            return
        self.push(packet, arrival)

    def push(self, packet: RtpData, arrival: float | None = None) -> None:
        """One parsed RTP packet; `arrival` is time.time() when it came (now by default).

        Raises RecordingError when the file cannot be written (then the writer is closed)."""
        self._check_open()
        now = time.time() if arrival is None else arrival
        self.packets += 1
        if packet.ssrc != self._ssrc:
            if self._ssrc is not None:
                self._new_source(packet, now)
            self._ssrc = packet.ssrc
        self._last_arrival = now
        for ordered, at, lost in self._reorder.push(packet, now):
            self._take(ordered, lost, at)

    def _new_source(self, packet: RtpData, now: float) -> None:
        """A new RTP stream (new SSRC): its timestamps continue the old line by arrival time."""
        for ordered, at, lost in self._reorder.drain():
            self._take(ordered, lost, at)
        self._reorder.reset()
        if isinstance(self._assembler, VideoAssembler):
            self._assembler.wants_keyframe = True
        if self._last_ts is not None:
            elapsed = max(1, int((now - self._last_arrival) * self.clock_rate))
            self._ts_base = self._last_ts + self._ts_base + elapsed - packet.timestamp
        self._last_ts = None

    def _take(self, packet: RtpData, lost: bool, arrival: float) -> None:
        # Unwrap the 32-bit timestamp around the last one seen.
        if self._last_ts is None:
            unwrapped = packet.timestamp
        else:
            delta = (packet.timestamp - self._last_ts) & 0xFFFFFFFF
            unwrapped = self._last_ts + (delta - (1 << 32) if delta >= 1 << 31 else delta)
        self._last_ts = unwrapped if self._last_ts is None else max(unwrapped, self._last_ts)
        placed = RtpData(
            packet.payload, unwrapped + self._ts_base, packet.sequence, packet.marker, packet.ssrc
        )
        for frame in self._assembler.add(placed, lost):
            self._frame(frame, arrival)

    # -- output --------------------------------------------------------------------------------

    def _frame(self, frame: Frame, arrival: float) -> None:
        """`arrival`: when the frame's last packet came."""
        if self.kind == "audio":
            self._write(frame, bitstream.opus_samples(frame.data), arrival)
            return
        if self.codec == "h264" and (frame.keyframe or self._sps is None or self._pps is None):
            self._remember_parameter_sets(frame.data)
        if self._pending is not None:
            held, held_arrival = self._pending
            step = frame.timestamp - held.timestamp
            self._write(held, step if step > 0 else _DEFAULT_VIDEO_STEP, held_arrival)
        self._pending = (frame, arrival)

    def _remember_parameter_sets(self, data: bytes) -> None:
        for unit in bitstream.nal_units(data):
            kind = unit[0] & 0x1F
            if kind == bitstream.NAL_SPS:
                self._sps = unit
            elif kind == bitstream.NAL_PPS:
                self._pps = unit

    def _write(self, frame: Frame, duration: int, arrival: float) -> None:
        if self._first_ts is None:
            if not self._open(frame):
                return
            self._first_ts = frame.timestamp
            # pts 0 of the file: this wall-clock time, this RTP timestamp (as the sender's).
            self.started_wall = arrival
            self.started_rtp = (frame.timestamp - self._ts_base) & 0xFFFFFFFF
        pts = frame.timestamp - self._first_ts
        if pts <= self._last_pts:
            self._assembler.dropped += 1  # out of time order (a publisher's clock jumped back)
            return
        data = frame.data
        if self.codec == "h264":  # Matroska keeps NAL units length-prefixed, as avcC says
            data = b"".join(len(u).to_bytes(4, "big") + u for u in bitstream.nal_units(data))
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = self._time_base
        packet.pts = packet.dts = pts
        packet.duration = duration
        packet.is_keyframe = frame.keyframe
        try:
            self._container.mux(packet)
        except (av.FFmpegError, OSError) as error:
            # The first mux opens the file and writes its header.
            code = "open_failed" if self.frames == 0 else "write_failed"
            self._fail(code, f"cannot write {self.path.name}: {error}")
        self._last_pts = pts
        self._end_pts = pts + duration
        self.frames += 1

    def _open(self, frame: Frame) -> bool:
        """Open the file at the first frame, when the picture size is known."""
        if self.codec == "vp8":
            width, height = bitstream.vp8_size(frame.data)
            header = template.matroska_header("V_VP8", width=width, height=height)
        elif self.codec == "h264":
            if self._sps is None or self._pps is None:
                self._assembler.dropped += 1  # a keyframe without parameter sets: wait
                if isinstance(self._assembler, VideoAssembler):
                    self._assembler.wants_keyframe = True
                return False
            try:
                width, height = bitstream.h264_sps_size(self._sps)
            except ValueError:
                self.malformed += 1
                self._sps = None
                return False
            header = template.matroska_header(
                "V_MPEG4/ISO/AVC",
                template.avc_configuration(self._sps, self._pps),
                width=width,
                height=height,
            )
        else:
            header = template.matroska_header(
                "A_OPUS", bitstream.opus_head(), sample_rate=self.clock_rate, channels=2
            )
        try:
            container = av.open(
                str(self.path),
                "w",
                format="matroska" if self.codec == "h264" else "webm",
                options={
                    "cluster_time_limit": str(CLUSTER_MS),
                    "cluster_size_limit": str(1 << 20),
                    "flush_packets": "1",
                },
            )
        except (av.FFmpegError, OSError) as error:
            self._fail("open_failed", f"cannot create {self.path.name}: {error}")
        source, model = template.template_stream(header)
        try:
            stream = container.add_stream_from_template(model, opaque=True)
            stream.time_base = Fraction(1, self.clock_rate)
        except (av.FFmpegError, OSError, ValueError) as error:
            container.close()
            self._fail("open_failed", f"cannot set up {self.path.name}: {error}")
        finally:
            source.close()
        self._container, self._stream = container, stream
        return True

    # -- end -----------------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is held and finish the file (duration, cues). Idempotent; raises
        RecordingError when the file could not be finished (what was written stays readable)."""
        if self.closed:
            return
        try:
            for packet, at, lost in self._reorder.drain():
                self._take(packet, lost, at)
            if self._pending is not None:
                (frame, arrival), self._pending = self._pending, None
                step = _DEFAULT_VIDEO_STEP if self.frames == 0 else self._step()
                self._write(frame, step, arrival)
        finally:
            self.closed = True
            container, self._container = self._container, None
            if container is not None:
                try:
                    container.close()
                except (av.FFmpegError, OSError) as error:
                    self.error = RecordingError(
                        "write_failed", f"cannot finish {self.path.name}: {error}"
                    )
                    raise self.error from error

    def _step(self) -> int:
        """A video frame's usual duration: the mean so far."""
        return max(1, self._end_pts // max(1, self.frames))

    def _check_open(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise RecordingError("closed", f"{self.path.name} is closed")

    def _fail(self, code: str, message: str) -> None:
        """Stop this track for good; the file keeps what was written before."""
        self.error = RecordingError(code, message)
        logger.warning("recording track stopped: %s", message)
        container, self._container = self._container, None
        self.closed = True
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()  # the first error is the one to report
        raise self.error
