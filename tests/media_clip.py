"""The clip test publishers send: the load tool's pre-encoded VP8/H.264 + Opus clip (made once
with PyAV and cached), at the size and length tests want. Tests encode nothing themselves."""

from bench.clip import AUDIO_CLOCK, VIDEO_CLOCK, Clip, ClipSpec, load

__all__ = ["AUDIO_CLOCK", "VIDEO_CLOCK", "Clip", "clip"]


def clip(
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    seconds: float = 6.0,
    codec: str = "vp8",
    bitrate: int = 800_000,
) -> Clip:
    """The clip for these parameters: one keyframe at the start (and an all-keyframe copy in
    `intra` to answer keyframe requests with); video pts in 1/90000 s, audio in 1/48000 s."""
    spec = ClipSpec(
        codec=codec, width=width, height=height, fps=fps, seconds=seconds, bitrate=bitrate
    )
    return load(spec)
