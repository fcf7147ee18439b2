"""The few bitstream facts the recorder needs without decoding: keyframes, picture sizes,
H.264 parameter sets, Opus frame durations."""

import struct

NAL_IDR = 5
NAL_SPS = 7
NAL_PPS = 8
START_CODE = b"\x00\x00\x00\x01"


def vp8_is_keyframe(frame: bytes) -> bool:
    """True for a VP8 keyframe (inverse keyframe bit of the frame tag clear)."""
    return len(frame) >= 10 and frame[0] & 0x01 == 0 and frame[3:6] == b"\x9d\x01\x2a"


def vp8_size(frame: bytes) -> tuple[int, int]:
    """(width, height) from a VP8 keyframe header."""
    width, height = struct.unpack_from("<HH", frame, 6)
    return width & 0x3FFF, height & 0x3FFF


def nal_units(frame: bytes) -> list[bytes]:
    """The NAL units of an Annex B access unit, start codes removed."""
    units: list[bytes] = []
    start = frame.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        end = frame.find(b"\x00\x00\x01", begin)
        if end < 0:
            units.append(frame[begin:])
            break
        # A 4-byte start code leaves one zero at the end of the previous unit.
        units.append(frame[begin : end - 1] if frame[end - 1] == 0 else frame[begin:end])
        start = end
    return [u for u in units if u]


def h264_is_keyframe(frame: bytes) -> bool:
    return any(u[0] & 0x1F == NAL_IDR for u in nal_units(frame))


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, data: bytes) -> None:
        self.data = data.replace(b"\x00\x00\x03", b"\x00\x00")
        self.pos = 0

    def bit(self) -> int:
        byte = self.pos >> 3
        if byte >= len(self.data):
            raise ValueError("SPS is truncated")
        value = (self.data[byte] >> (7 - (self.pos & 7))) & 1
        self.pos += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def h264_sps_size(sps: bytes) -> tuple[int, int]:
    """(width, height) of the pictures an SPS NAL unit (with its header octet) describes."""
    bits = _Bits(sps[1:])
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma
        bits.ue()  # bit_depth_chroma
        bits.bit()  # qpprime_y_zero_transform_bypass_flag
        if bits.bit():  # seq_scaling_matrix_present_flag
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    last = following = 8
                    for _ in range(16 if index < 6 else 64):
                        if following:
                            following = (last + bits.se() + 256) % 256
                        last = following or last
    bits.ue()  # log2_max_frame_num
    order_type = bits.ue()
    if order_type == 0:
        bits.ue()
    elif order_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_allowed
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field
    bits.bit()  # direct_8x8_inference
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping_flag
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    if width <= 0 or height <= 0 or width > 8192 or height > 8192:
        raise ValueError(f"implausible picture size {width}x{height} in SPS")
    return width, height


# Samples at 48 kHz per Opus frame, by TOC configuration number (RFC 6716, 3.1).
_OPUS_FRAME = (
    [480, 960, 1920, 2880] * 3  # SILK NB, MB, WB: 10, 20, 40, 60 ms
    + [480, 960] * 2  # hybrid SWB, FB: 10, 20 ms
    + [120, 240, 480, 960] * 4  # CELT NB, WB, SWB, FB: 2.5, 5, 10, 20 ms
)


def opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) an Opus packet holds, from its TOC octet; 0 if unreadable."""
    if not packet:
        return 0
    toc = packet[0]
    code = toc & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(packet) >= 2:
        count = packet[1] & 0x3F
    else:
        return 0
    return _OPUS_FRAME[toc >> 3] * count


def opus_head(channels: int = 2, sample_rate: int = 48000) -> bytes:
    """The OpusHead identification header (RFC 7845) Matroska keeps as CodecPrivate; no pre-skip,
    as RTP Opus timestamps already count the samples as sent."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, sample_rate, 0, 0)
