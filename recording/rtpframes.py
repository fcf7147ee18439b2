"""From a track's RTP packets to whole encoded frames: reorder by sequence number within a small
window, depacketize (RFC 7587 Opus, RFC 7741 VP8, RFC 6184 H.264 mode 1), drop what is incomplete.

Nothing here decodes: a frame is the codec's own bytes (VP8 frame, H.264 Annex B access unit,
Opus packet) with its RTP timestamp.
"""

import struct
from dataclasses import dataclass

from recording import bitstream
from recording.errors import RecordingError

_RTP_HEADER = struct.Struct("!BBHII")
_STARTUP = 4  # packets held before the first is handed on


@dataclass(frozen=True, slots=True)
class RtpData:
    """The fields of one RTP packet the recorder uses."""

    payload: bytes
    timestamp: int
    sequence: int
    marker: bool
    ssrc: int = 0


def parse_rtp(data: bytes) -> RtpData:
    """Parse RTP bytes (after SRTP): header, CSRCs, extension block and padding skipped."""
    if len(data) < 12:
        raise ValueError("RTP packet shorter than its header")
    first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    if first >> 6 != 2:
        raise ValueError("not RTP version 2")
    pos = 12 + 4 * (first & 0x0F)
    if first & 0x10:
        if len(data) < pos + 4:
            raise ValueError("RTP extension header truncated")
        pos += 4 + 4 * struct.unpack_from("!H", data, pos + 2)[0]
    end = len(data)
    if first & 0x20:
        if end == 0 or data[-1] == 0:
            raise ValueError("bad RTP padding")
        end -= data[-1]
    if pos > end:
        raise ValueError("RTP header longer than the packet")
    return RtpData(data[pos:end], timestamp, sequence, bool(second & 0x80), ssrc)


@dataclass(frozen=True, slots=True)
class Frame:
    """One encoded frame and its (unwrapped) RTP timestamp."""

    data: bytes
    timestamp: int
    keyframe: bool


class Reorder:
    """Hands packets on in sequence order. A missing packet is waited for until `window`
    packets are held or the oldest held one arrived `max_wait` seconds before the newest (a
    retransmission takes a round trip), then given up as lost. Duplicates and packets older
    than the hand-on point are dropped."""

    def __init__(self, window: int, max_wait: float) -> None:
        self.window = window
        self.max_wait = max_wait
        self._held: dict[int, tuple[RtpData, float]] = {}
        self._next: int | None = None  # extended sequence number handed on next
        self._last: int | None = None  # last extended sequence number seen, for unwrapping
        self.lost = 0
        self.late = 0

    def reset(self) -> None:
        self._held.clear()
        self._next = self._last = None

    def push(self, packet: RtpData, arrival: float) -> list[tuple[RtpData, float, bool]]:
        """Packets now in order: (packet, its arrival, True when packets were lost before it)."""
        if self._last is None:
            self._last = packet.sequence
        delta = (packet.sequence - self._last) & 0xFFFF
        extended = self._last + (delta - 0x10000 if delta >= 0x8000 else delta)
        if (self._next is not None and extended < self._next) or extended in self._held:
            self.late += 1
            return []
        self._last = max(self._last, extended)
        self._held[extended] = (packet, arrival)
        if self._next is None:
            # The first packet to arrive may not be the first sent: start once a few are in.
            if len(self._held) < min(self.window, _STARTUP) and not self._waited(arrival):
                return []
            self._next = min(self._held)
        out: list[tuple[RtpData, float, bool]] = []
        gap = False
        while self._held:
            if self._next not in self._held:
                if len(self._held) < self.window and not self._waited(arrival):
                    break
                start = min(self._held)
                self.lost += start - self._next
                self._next = start
                gap = True
            held, at = self._held.pop(self._next)
            out.append((held, at, gap))
            gap = False
            self._next += 1
        return out

    def _waited(self, now: float) -> bool:
        return now - min(at for _, at in self._held.values()) > self.max_wait

    def drain(self) -> list[tuple[RtpData, float, bool]]:
        """Everything still held, in order, gaps counted as losses (at the end of a track)."""
        out: list[tuple[RtpData, float, bool]] = []
        for extended in sorted(self._held):
            if self._next is None:
                self._next = extended
            gap = extended != self._next
            self.lost += extended - self._next
            held, at = self._held[extended]
            out.append((held, at, gap))
            self._next = extended + 1
        self._held.clear()
        return out


class Assembler:
    """Packets in order to whole frames for one codec."""

    def __init__(self) -> None:
        self.malformed = 0
        self.dropped = 0

    def add(self, packet: RtpData, lost_before: bool) -> list[Frame]:
        raise NotImplementedError


class OpusAssembler(Assembler):
    """One Opus packet is one frame; a loss costs only the lost packets."""

    def add(self, packet: RtpData, lost_before: bool) -> list[Frame]:
        if not packet.payload or bitstream.opus_samples(packet.payload) == 0:
            self.malformed += 1
            return []
        return [Frame(packet.payload, packet.timestamp, True)]


class VideoAssembler(Assembler):
    """Collects a frame's packets (one RTP timestamp, closed by the marker bit). After any loss
    or malformed packet it drops frames until the next keyframe, as the decoder would otherwise
    show a broken picture; `wants_keyframe` tells the caller to ask the publisher for one."""

    def __init__(self) -> None:
        super().__init__()
        self._timestamp: int | None = None
        self._parts: list[bytes] = []
        self._broken = False
        self.wants_keyframe = True

    def add(self, packet: RtpData, lost_before: bool) -> list[Frame]:
        out: list[Frame] = []
        if lost_before:
            if self._timestamp is not None:
                self._discard()
            self.wants_keyframe = True
        if self._timestamp is not None and packet.timestamp != self._timestamp:
            out += self._finish()  # the previous frame's marker never came
        if self._timestamp is None:
            self._timestamp = packet.timestamp
            self._parts = []
            self._broken = not self._starts_frame(packet.payload)
            self._begin()
        if not self._broken:
            try:
                self._parts.append(self._depayload(packet.payload))
            except ValueError:
                self.malformed += 1
                self._broken = True
        if packet.marker:
            out += self._finish()
        return out

    def _discard(self) -> None:
        self.dropped += 1
        self._timestamp = None
        self._parts = []

    def _finish(self) -> list[Frame]:
        timestamp, parts, broken = (
            self._timestamp,
            self._parts,
            self._broken or not self._complete(),
        )
        self._timestamp, self._parts = None, []
        if broken or not parts or timestamp is None:
            self.dropped += 1
            self.wants_keyframe = True
            return []
        data = b"".join(parts)
        keyframe = self._is_keyframe(data)
        if self.wants_keyframe and not keyframe:
            self.dropped += 1
            return []
        self.wants_keyframe = False
        return [Frame(data, timestamp, keyframe)]

    def _begin(self) -> None:
        pass

    def _complete(self) -> bool:
        return True

    def _starts_frame(self, payload: bytes) -> bool:
        raise NotImplementedError

    def _depayload(self, payload: bytes) -> bytes:
        raise NotImplementedError

    def _is_keyframe(self, data: bytes) -> bool:
        raise NotImplementedError


class Vp8Assembler(VideoAssembler):
    def _starts_frame(self, payload: bytes) -> bool:
        return bool(payload) and payload[0] & 0x1F == 0x10  # S=1, partition 0

    def _depayload(self, payload: bytes) -> bytes:
        if not payload:
            raise ValueError("empty VP8 payload")
        pos = 1
        if payload[0] & 0x80:
            if len(payload) < 2:
                raise ValueError("VP8 descriptor truncated")
            ext = payload[1]
            pos = 2
            if ext & 0x80:
                if len(payload) <= pos:
                    raise ValueError("VP8 picture id truncated")
                pos += 2 if payload[pos] & 0x80 else 1
            pos += (1 if ext & 0x40 else 0) + (1 if ext & 0x30 else 0)
        if pos >= len(payload):
            raise ValueError("VP8 payload has no data")
        return payload[pos:]

    def _is_keyframe(self, data: bytes) -> bool:
        return bitstream.vp8_is_keyframe(data)


_STAP_A = 24
_FU_A = 28


class H264Assembler(VideoAssembler):
    """Single NAL units, STAP-A and FU-A (packetization-mode 1) to an Annex B access unit."""

    def __init__(self) -> None:
        super().__init__()
        self._fragment: int | None = None  # NAL type of an FU-A in progress

    def _begin(self) -> None:
        self._fragment = None

    def _complete(self) -> bool:
        return self._fragment is None

    def _starts_frame(self, payload: bytes) -> bool:
        if not payload:
            return False
        kind = payload[0] & 0x1F
        return kind != _FU_A or (len(payload) > 1 and payload[1] & 0x80 != 0)

    def _depayload(self, payload: bytes) -> bytes:
        if len(payload) < 2 or payload[0] & 0x80:
            raise ValueError("H.264 payload too short or forbidden bit set")
        kind = payload[0] & 0x1F
        if self._fragment is not None and kind != _FU_A:
            raise ValueError("FU-A interrupted")
        if 1 <= kind <= 23:
            return bitstream.START_CODE + payload
        if kind == _STAP_A:
            out = []
            pos = 1
            while pos < len(payload):
                if pos + 2 > len(payload):
                    raise ValueError("STAP-A length truncated")
                size = struct.unpack_from("!H", payload, pos)[0]
                pos += 2
                if size == 0 or pos + size > len(payload):
                    raise ValueError("STAP-A unit truncated")
                out.append(bitstream.START_CODE + payload[pos : pos + size])
                pos += size
            return b"".join(out)
        if kind == _FU_A:
            header = payload[1]
            start, end, nal_type = header & 0x80, header & 0x40, header & 0x1F
            if start:
                if self._fragment is not None:
                    raise ValueError("FU-A start inside a fragmented unit")
                self._fragment = nal_type
                out_bytes = bitstream.START_CODE + bytes([(payload[0] & 0xE0) | nal_type])
            elif self._fragment != nal_type:
                raise ValueError("FU-A continuation without its start")
            else:
                out_bytes = b""
            if end:
                self._fragment = None
            return out_bytes + payload[2:]
        raise ValueError(f"H.264 NAL unit type {kind} is not supported")

    def _is_keyframe(self, data: bytes) -> bool:
        return bitstream.h264_is_keyframe(data)


CODECS = ("opus", "vp8", "h264")


def assembler_for(codec: str) -> Assembler:
    """The frame assembler for a codec name ("opus", "vp8", "h264", any case)."""
    name = codec.lower()
    if name == "opus":
        return OpusAssembler()
    if name == "vp8":
        return Vp8Assembler()
    if name == "h264":
        return H264Assembler()
    raise RecordingError("unknown_codec", f"cannot record codec {codec!r}: not one of {CODECS}")
