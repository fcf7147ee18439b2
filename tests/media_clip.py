"""A short VP8 + Opus test clip, encoded once with PyAV and cached by its parameters.

Two video encodings of the same pictures are kept: `video` (one keyframe at the start, then
only inter frames) and `intra` (every frame a keyframe), so a test publisher can answer a
keyframe request at any frame without encoding anything during the test.
"""

import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
_FORMAT_VERSION = 1
_RECORD = struct.Struct("!BBqI")  # stream, keyframe, pts, size


@dataclass(frozen=True)
class EncodedPacket:
    data: bytes
    pts: int
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    """Encoded packets; video pts in 1/90000 s, audio pts in 1/48000 s."""

    video: list[EncodedPacket]
    intra: list[EncodedPacket]
    audio: list[EncodedPacket]
    seconds: float
    fps: int

    @property
    def video_time_base(self) -> Fraction:
        return Fraction(1, VIDEO_CLOCK)

    @property
    def audio_time_base(self) -> Fraction:
        return Fraction(1, AUDIO_CLOCK)


def cache_dir() -> Path:
    return Path(os.environ.get("VECHE_TEST_CACHE") or Path(tempfile.gettempdir()) / "veche-cache")


def clip(
    width: int = 640, height: int = 360, fps: int = 30, seconds: float = 6.0, codec: str = "vp8"
) -> Clip:
    """The clip for these parameters, from the cache or encoded now (a few seconds).

    `codec` is "vp8" or "h264" (constrained baseline, Annex B, SPS/PPS before each IDR).
    """
    key = hashlib.sha256(
        f"{_FORMAT_VERSION}:{codec}:{width}x{height}@{fps}:{seconds}:{av.__version__}".encode()
    ).hexdigest()[:16]
    path = cache_dir() / f"clip-{key}.bin"
    if not path.exists():
        streams = (
            _encode_video(codec, width, height, fps, seconds, gop=10_000),
            _encode_video(codec, width, height, fps, seconds, gop=1),
            _encode_audio(seconds),
        )
        _save(path, streams)
    video, intra, audio = _load(path)
    return Clip(video=video, intra=intra, audio=audio, seconds=seconds, fps=fps)


def _encode_video(
    codec: str, width: int, height: int, fps: int, seconds: float, gop: int
) -> list[EncodedPacket]:
    encoder = av.CodecContext.create("libvpx" if codec == "vp8" else "libx264", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps)
    encoder.bit_rate = 800_000
    encoder.gop_size = gop
    if codec == "vp8":
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        encoder.profile = "Constrained Baseline"
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    packets: list[EncodedPacket] = []
    source = f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}"
    with av.open(source, format="lavfi") as container:
        for index, frame in enumerate(container.decode(video=0)):
            picture = frame.reformat(format="yuv420p")
            # lavfi marks its frames as I pictures, which would force every frame to a keyframe.
            picture.pict_type = av.video.frame.PictureType.NONE
            picture.pts = index
            picture.time_base = encoder.time_base
            packets += _video_packets(encoder.encode(picture), fps)
        packets += _video_packets(encoder.encode(None), fps)
    return packets


def _video_packets(packets: list[Any], fps: int) -> list[EncodedPacket]:
    return [
        EncodedPacket(bytes(p), p.pts * VIDEO_CLOCK // fps, bool(p.is_keyframe))
        for p in packets
        if p.pts is not None
    ]


def _encode_audio(seconds: float) -> list[EncodedPacket]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = AUDIO_CLOCK
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64_000
    encoder.time_base = Fraction(1, AUDIO_CLOCK)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_CLOCK, frame_size=960)
    packets: list[EncodedPacket] = []
    source = f"sine=frequency=440:sample_rate={AUDIO_CLOCK}:duration={seconds}"
    samples = 0
    with av.open(source, format="lavfi") as container:
        for frame in container.decode(audio=0):
            for chunk in resampler.resample(frame):
                chunk.pts = samples
                samples += chunk.samples
                packets += _audio_packets(encoder.encode(chunk))
        packets += _audio_packets(encoder.encode(None))
    # Opus starts at a negative pts (the encoder's delay): shift so the clip starts at 0.
    first = packets[0].pts
    return [EncodedPacket(p.data, p.pts - first, True) for p in packets]


def _audio_packets(packets: list[Any]) -> list[EncodedPacket]:
    return [EncodedPacket(bytes(p), int(p.pts), True) for p in packets if p.pts is not None]


def _save(path: Path, streams: tuple[list[EncodedPacket], ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    with temporary.open("wb") as out:
        for index, packets in enumerate(streams):
            for p in packets:
                out.write(_RECORD.pack(index, p.keyframe, p.pts, len(p.data)))
                out.write(p.data)
    temporary.replace(path)  # atomic: parallel runs never read a half-written clip


def _load(path: Path) -> tuple[list[EncodedPacket], ...]:
    streams: tuple[list[EncodedPacket], ...] = ([], [], [])
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        index, keyframe, pts, size = _RECORD.unpack_from(data, pos)
        pos += _RECORD.size
        streams[index].append(EncodedPacket(data[pos : pos + size], pts, bool(keyframe)))
        pos += size
    return streams
