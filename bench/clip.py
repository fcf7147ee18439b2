"""The publishers' media: a pre-encoded VP8 or H.264 clip plus Opus, made once and cached.

Two encodings of the same pictures are kept: `video` (a keyframe at the start of each loop) and
`intra` (every frame a keyframe), so a publisher answers a keyframe request at once without
encoding anything while the benchmark runs.
"""

import hashlib
import os
import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
CODECS = ("vp8", "h264")
_VERSION = 1
_HEADER = struct.Struct("!BBqI")  # stream index, keyframe, pts, size


@dataclass(frozen=True)
class Encoded:
    data: bytes
    pts: int
    keyframe: bool


@dataclass(frozen=True)
class Clip:
    """Encoded packets: video pts in 1/90000 s, audio pts in 1/48000 s."""

    codec: str
    video: list[Encoded]
    intra: list[Encoded]
    audio: list[Encoded]
    seconds: float
    fps: int
    spec: "ClipSpec"

    @property
    def video_bitrate(self) -> float:
        return sum(len(p.data) for p in self.video) * 8 / self.seconds


@dataclass(frozen=True)
class ClipSpec:
    codec: str = "vp8"
    width: int = 640
    height: int = 360
    fps: int = 30
    seconds: float = 10.0
    bitrate: int = 1_000_000

    def key(self) -> str:
        text = f"{_VERSION}:{self}:{av.__version__}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_dir() -> Path:
    root = os.environ.get("VECHE_BENCH_CACHE") or Path.home() / ".cache" / "veche-bench"
    return Path(root)


def load(spec: ClipSpec) -> Clip:
    """The clip for `spec`, from the cache or encoded now (a few seconds, once)."""
    if spec.codec not in CODECS:
        raise ValueError(f"unknown codec {spec.codec!r}: use one of {', '.join(CODECS)}")
    path = cache_dir() / f"clip-{spec.codec}-{spec.key()}.bin"
    if not path.exists():
        gop = round(spec.seconds * spec.fps)
        _save(path, (_encode_video(spec, gop), _encode_video(spec, 1), _encode_audio(spec)))
    video, intra, audio = _read(path)
    return Clip(spec.codec, video, intra, audio, spec.seconds, spec.fps, spec)


def _encode_video(spec: ClipSpec, gop: int) -> list[Encoded]:
    encoder = av.CodecContext.create("libvpx" if spec.codec == "vp8" else "libx264", "w")
    encoder.width = spec.width
    encoder.height = spec.height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, spec.fps)
    encoder.framerate = Fraction(spec.fps)
    encoder.bit_rate = spec.bitrate
    encoder.gop_size = gop
    if spec.codec == "vp8":
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        encoder.profile = "Constrained Baseline"
        encoder.options = {
            "preset": "veryfast",
            "tune": "zerolatency",
            "bf": "0",
            # Annex B with SPS/PPS before every IDR, as a WebRTC H.264 stream has them.
            "x264-params": "repeat-headers=1:level=3.1",
        }
    out: list[Encoded] = []
    total = round(spec.seconds * spec.fps)
    source = f"testsrc2=size={spec.width}x{spec.height}:rate={spec.fps}:duration={spec.seconds}"
    with av.open(source, format="lavfi") as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= total:
                break
            picture = frame.reformat(format="yuv420p")
            # lavfi marks frames as I pictures, which would make every frame a keyframe.
            picture.pict_type = av.video.frame.PictureType.NONE
            picture.pts = index
            picture.time_base = encoder.time_base
            out += _video(encoder.encode(picture), spec.fps)
        out += _video(encoder.encode(None), spec.fps)
    return out


def _video(packets: list[Any], fps: int) -> list[Encoded]:
    return [
        Encoded(bytes(p), p.pts * VIDEO_CLOCK // fps, bool(p.is_keyframe))
        for p in packets
        if p.pts is not None
    ]


def _encode_audio(spec: ClipSpec) -> list[Encoded]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = AUDIO_CLOCK
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 64_000
    encoder.time_base = Fraction(1, AUDIO_CLOCK)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_CLOCK, frame_size=960)
    out: list[Encoded] = []
    samples = 0
    source = f"sine=frequency=440:sample_rate={AUDIO_CLOCK}:duration={spec.seconds}"
    with av.open(source, format="lavfi") as container:
        for frame in container.decode(audio=0):
            for chunk in resampler.resample(frame):
                chunk.pts = samples
                samples += chunk.samples
                out += _audio(encoder.encode(chunk))
        out += _audio(encoder.encode(None))
    # Opus starts at a negative pts (the encoder's delay): shift the clip to start at 0.
    first = out[0].pts
    period = round(spec.seconds * AUDIO_CLOCK)
    return [Encoded(p.data, p.pts - first, True) for p in out if p.pts - first < period]


def _audio(packets: list[Any]) -> list[Encoded]:
    return [Encoded(bytes(p), int(p.pts), True) for p in packets if p.pts is not None]


def _save(path: Path, streams: tuple[list[Encoded], ...]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    with partial.open("wb") as out:
        for index, packets in enumerate(streams):
            for p in packets:
                out.write(_HEADER.pack(index, p.keyframe, p.pts, len(p.data)))
                out.write(p.data)
    partial.replace(path)  # atomic: a parallel run never reads half a clip


def _read(path: Path) -> tuple[list[Encoded], list[Encoded], list[Encoded]]:
    streams: tuple[list[Encoded], list[Encoded], list[Encoded]] = ([], [], [])
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        index, keyframe, pts, size = _HEADER.unpack_from(data, pos)
        pos += _HEADER.size
        streams[index].append(Encoded(data[pos : pos + size], pts, bool(keyframe)))
        pos += size
    return streams
