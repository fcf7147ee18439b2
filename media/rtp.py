"""RTP wire details the forwarder needs: keyframe starts, header extensions, RTX wrapping."""

import struct
from collections.abc import Callable

# V=2, P, X, CC | M, PT | sequence number | timestamp | SSRC
HEADER = struct.Struct("!BBHII")
VERSION = 0x80
PADDING = 0x20
EXTENSION = 0x10
MARKER = 0x80
ONE_BYTE_PROFILE = b"\xbe\xde"

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def vp8_keyframe_start(payload: bytes) -> bool:
    """True for the first packet of a VP8 keyframe (RFC 7741 payload descriptor, then P bit)."""
    if not payload:
        return False
    first = payload[0]
    # S (start of partition) set and partition index 0.
    if first & 0x1F != 0x10:
        return False
    pos = 1
    if first & 0x80:  # X: extension octet follows
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= pos:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if ext & 0x40:  # L: TL0PICIDX
            pos += 1
        if ext & 0x30:  # T or K: TID/KEYIDX octet
            pos += 1
    # VP8 payload header: bit 0 is the inverse keyframe flag.
    return len(payload) > pos and payload[pos] & 0x01 == 0


_SPS = 7
_IDR = 5
_STAP_A = 24
_FU_A = 28


def h264_keyframe_start(payload: bytes) -> bool:
    """True for a packet that starts an H.264 keyframe: an SPS, or the start of an IDR slice."""
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (_SPS, _IDR):
        return True
    if nal_type == _STAP_A:
        pos = 1
        while pos + 3 <= len(payload):
            size = (payload[pos] << 8) | payload[pos + 1]
            if payload[pos + 2] & 0x1F in (_SPS, _IDR):
                return True
            pos += 2 + size
        return False
    if nal_type == _FU_A and len(payload) >= 2:
        return payload[1] & 0x80 != 0 and payload[1] & 0x1F == _IDR
    return False


def _any_start(payload: bytes) -> bool:
    return True


def keyframe_start_detector(codec_name: str) -> Callable[[bytes], bool]:
    """How to recognise where a subscriber may start: any packet for audio."""
    name = codec_name.upper()
    if name == "VP8":
        return vp8_keyframe_start
    if name == "H264":
        return h264_keyframe_start
    return _any_start


class Extensions:
    """One subscriber stream's header-extension block, laid out once with its negotiated ids.

    `with_value(value)` is the block for one packet: `head + value + tail`, value being the
    audio level octet or the 3-octet abs-send-time; `plain` carries only the mid.
    """

    __slots__ = ("head", "plain", "tail", "value_size")

    def __init__(self, mid_id: int, mid: str, value_id: int, value_size: int) -> None:
        mid_element = b""
        if mid_id and mid:
            encoded = mid.encode()
            mid_element = bytes([(mid_id << 4) | (len(encoded) - 1)]) + encoded
        self.plain = _block(mid_element)
        self.value_size = value_size if value_id else 0
        if self.value_size:
            element_head = bytes([(value_id << 4) | (value_size - 1)])
            body = len(mid_element) + 1 + value_size
            words = (body + 3) // 4
            self.head = ONE_BYTE_PROFILE + struct.pack("!H", words) + mid_element + element_head
            self.tail = b"\x00" * (words * 4 - body)
        else:
            self.head = self.tail = b""


def _block(elements: bytes) -> bytes:
    if not elements:
        return b""
    words = (len(elements) + 3) // 4
    return (
        ONE_BYTE_PROFILE
        + struct.pack("!H", words)
        + elements
        + b"\x00" * (words * 4 - len(elements))
    )


def header_size(data: bytes) -> int:
    """Length of an RTP packet's header, CSRCs and extension block."""
    size = 12 + 4 * (data[0] & 0x0F)
    if data[0] & EXTENSION:
        size += 4 + 4 * ((data[size + 2] << 8) | data[size + 3])
    return size


def wrap_rtx(data: bytes, payload_type: int, sequence_number: int, ssrc: int) -> bytes:
    """The RFC 4588 retransmission of `data`: original sequence number, then its payload."""
    size = header_size(data)
    first, second, original_seq, timestamp, _ = HEADER.unpack_from(data)
    return b"".join(
        (
            HEADER.pack(
                first & ~PADDING,
                (second & MARKER) | payload_type,
                sequence_number,
                timestamp,
                ssrc,
            ),
            data[12:size],
            struct.pack("!H", original_seq),
            data[size:] if not first & PADDING else data[size : len(data) - data[-1]],
        )
    )


def padding(size: int) -> bytes:
    """RTP padding of `size` octets (the last one says how many)."""
    return b"\x00" * (size - 1) + bytes([size])
