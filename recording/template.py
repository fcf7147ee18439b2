"""Codec parameters for the muxer without opening an encoder: a track's parameters are written
as a Matroska header (EBML) in memory, opened with PyAV, and its stream is the template of the
output stream (`add_stream_from_template`). Opening an encoder instead would allocate it
(libx264 at the stream's size) and replace the extradata with its own."""

import io
import struct
from typing import Any

import av

_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def _element(element_id: int, data: bytes) -> bytes:
    size = len(data)
    encoded = bytes([0x80 | size]) if size < 0x7F else b"\x01" + size.to_bytes(7, "big")
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + encoded + data


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def avc_configuration(sps: bytes, pps: bytes) -> bytes:
    """The avcC record (ISO 14496-15) for one SPS and one PPS, NAL lengths of 4 octets."""
    return (
        bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1])
        + struct.pack("!H", len(sps))
        + sps
        + b"\x01"
        + struct.pack("!H", len(pps))
        + pps
    )


def matroska_header(
    codec_id: str,
    private: bytes = b"",
    width: int = 0,
    height: int = 0,
    sample_rate: int = 0,
    channels: int = 0,
) -> bytes:
    """EBML header, segment, info and one track entry: a Matroska file with no frames."""
    ebml = _element(
        0x1A45DFA3,
        _uint(0x4286, 1)
        + _uint(0x42F7, 1)
        + _uint(0x42F2, 4)
        + _uint(0x42F3, 8)
        + _element(0x4282, b"matroska")
        + _uint(0x4287, 4)
        + _uint(0x4285, 2),
    )
    info = _element(0x1549A966, _uint(0x2AD7B1, 1_000_000))
    entry = _uint(0xD7, 1) + _uint(0x73C5, 1) + _element(0x86, codec_id.encode())
    if private:
        entry += _element(0x63A2, private)
    if width:
        entry += _uint(0x83, 1) + _element(0xE0, _uint(0xB0, width) + _uint(0xBA, height))
    else:
        entry += _uint(0x83, 2) + _element(
            0xE1, _element(0xB5, struct.pack("!d", float(sample_rate))) + _uint(0x9F, channels)
        )
    tracks = _element(0x1654AE6B, _element(0xAE, entry))
    # An empty cluster: the demuxer reads up to the first one before it lists the streams.
    cluster = _element(0x1F43B675, _uint(0xE7, 0))
    return ebml + bytes.fromhex("18538067") + _UNKNOWN_SIZE + info + tracks + cluster


def template_stream(header: bytes) -> tuple[Any, Any]:
    """(container, stream) read from a header made by matroska_header; close the container
    once the output stream has been made from it."""
    container: Any = av.open(io.BytesIO(header), format="matroska")
    return container, container.streams[0]
