"""Known inputs for the recording tests: "participants" whose camera is a solid colour and whose
microphone is a pure tone, encoded once (VP8 or H.264, Opus) and packetized into RTP with
aiortc's own packetizers, as a publisher would send them.

Each clip has a dark, silent lead-in of LEAD seconds, then colour and tone start together: the
A/V sync test finds that edge in the picture and in the sound.
"""

import functools
import math
import random
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtpPacket

from bench.clip import ClipSpec, Encoded
from recording.capture import Capture
from tests.media_clients import ClientPublisher, MeetingPeer
from tests.media_clip import Clip

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
LEAD = 0.6  # a whole number of frames at 15 and 30 fps


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    colour: tuple[int, int, int]
    tone: float
    codec: str
    joins: float  # seconds after the recording starts


@dataclass
class Media:
    """RTP packets as (seconds since the track's start, bytes)."""

    person: Person
    video: list[tuple[float, bytes]] = field(default_factory=list)
    audio: list[tuple[float, bytes]] = field(default_factory=list)
    video_frames: int = 0
    audio_packets: int = 0


PEOPLE = (
    Person("p1", "Анна", (220, 30, 30), 440.0, "vp8", 0.0),
    Person("p2", "Boris", (30, 200, 40), 660.0, "h264", 0.3),
    Person("p3", "Vera", (40, 60, 220), 990.0, "vp8", 0.6),
)


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return round(y), round(u), round(v)


def _solid(width: int, height: int, rgb: tuple[int, int, int]) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, _yuv(rgb), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def _video_packets(
    person: Person, seconds: float, width: int, height: int, fps: int, lead: float = LEAD
) -> list[Any]:
    if person.codec == "vp8":
        encoder = av.CodecContext.create("libvpx", "w")
        encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.profile = "Constrained Baseline"
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency", "bf": "0"}
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, fps)
    encoder.framerate = Fraction(fps)
    encoder.bit_rate = 300_000
    encoder.gop_size = fps  # a keyframe a second: losses recover within the test
    dark, lit = _solid(width, height, (16, 16, 16)), _solid(width, height, person.colour)
    packets: list[Any] = []
    for index in range(round(seconds * fps)):
        frame = dark if index < lead * fps else lit
        frame.pts = index
        frame.time_base = encoder.time_base
        frame.pict_type = av.video.frame.PictureType.NONE
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return packets


def _audio_packets(person: Person, seconds: float, lead: float = LEAD) -> list[Any]:
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate = AUDIO_CLOCK
    encoder.layout = "stereo"
    encoder.format = "s16"
    encoder.bit_rate = 48_000
    encoder.time_base = Fraction(1, AUDIO_CLOCK)
    packets: list[Any] = []
    step = 960
    for start in range(0, round(seconds * AUDIO_CLOCK), step):
        samples: list[int] = []
        for n in range(start, start + step):
            t = n / AUDIO_CLOCK
            value = 0 if t < lead else int(12000 * math.sin(2 * math.pi * person.tone * t))
            samples += (value, value)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=step)
        frame.planes[0].update(struct.pack(f"<{2 * step}h", *samples))
        frame.sample_rate = AUDIO_CLOCK
        frame.pts = start
        frame.time_base = encoder.time_base
        packets += encoder.encode(frame)
    packets += encoder.encode(None)
    return packets


def make_media(
    person: Person,
    seconds: float = 3.0,
    width: int = 320,
    height: int = 180,
    fps: int = 15,
    audio: bool = True,
) -> Media:
    """The person's camera and microphone as RTP, as their browser would send them (random
    SSRCs, sequence numbers near the wrap, one timestamp line near the 32-bit wrap)."""
    rng = random.Random(person.id)
    media = Media(person)
    # Video: aiortc's own packetizer for the codec (VP8 descriptor / STAP-A + FU-A).
    packer = Vp8Encoder() if person.codec == "vp8" else H264Encoder()
    seq, ssrc, base = 65500, rng.getrandbits(32), 0xFFFFFFFF - 2 * VIDEO_CLOCK
    first_pts = None
    for packet in _video_packets(person, seconds, width, height, fps):
        if first_pts is None:
            first_pts = packet.pts
        packet.pts -= first_pts
        payloads, timestamp = packer.pack(packet)
        at = float(packet.pts * packet.time_base)
        for index, payload in enumerate(payloads):
            rtp = RtpPacket(
                payload_type=96,
                marker=int(index == len(payloads) - 1),
                sequence_number=seq & 0xFFFF,
                timestamp=(base + timestamp) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=payload,
            )
            media.video.append((at, rtp.serialize()))
            seq += 1
        media.video_frames += 1
    if not audio:
        return media
    # Audio: one Opus packet per RTP packet, timestamps in samples.
    seq, ssrc, base = rng.randrange(65536), rng.getrandbits(32), rng.getrandbits(31)
    first_pts = None
    for packet in _audio_packets(person, seconds):
        if first_pts is None:
            first_pts = packet.pts
        offset = int(packet.pts - first_pts)
        rtp = RtpPacket(
            payload_type=111,
            sequence_number=seq & 0xFFFF,
            timestamp=(base + offset) & 0xFFFFFFFF,
            ssrc=ssrc,
            payload=bytes(packet),
        )
        media.audio.append((offset / AUDIO_CLOCK, rtp.serialize()))
        seq += 1
        media.audio_packets += 1
    return media


def reorder_a_little(packets: list[tuple[float, bytes]], seed: int = 1) -> list[bytes]:
    """The packets with some neighbours swapped, as a network would deliver them."""
    rng = random.Random(seed)
    out = [data for _, data in packets]
    for index in range(0, len(out) - 1, 7):
        if rng.random() < 0.5:
            out[index], out[index + 1] = out[index + 1], out[index]
    return out


def record(
    directory: Path,
    medias: list[Media],
    start: float = 1_764_000_000.0,
    speakers: tuple[tuple[str, float, float], ...] = (),
    screen: tuple[str, float, Media] | None = None,
    video_delay: float = 0.0,
    sender_reports: bool = False,
) -> Capture:
    """Write a recording of `medias` through the real capture path: each person joins at
    `start + joins`, their packets arrive at their media time; `speakers` are speaking segments
    (id, from, to) in seconds after start; `screen` is (who, from, the screen's media).
    `video_delay` delays the arrival of video packets (a slower path than audio's);
    `sender_reports` logs each track's first RTCP sender report (on a publisher clock of its
    own). Returns the closed capture."""
    capture = Capture(directory, meeting="m1", title="Test meeting", t=start - 0.01)
    timeline = capture.timeline
    events: list[tuple[float, int, Any]] = []
    for order, media in enumerate(medias):
        person = media.person
        joined = start + person.joins
        events.append((joined - 0.001, order, ("join", person)))
        mic = capture.open_track(person.id, f"{person.id}-mic", "microphone", "opus")
        cam = capture.open_track(person.id, f"{person.id}-cam", "camera", person.codec)
        for track, packets, delay in ((mic, media.audio, 0.0), (cam, media.video, video_delay)):
            for at, data in packets:
                events.append((joined + at + delay, order, ("rtp", track, data)))
            if sender_reports:
                at, data = packets[0]
                rtp = struct.unpack_from("!I", data, 4)[0]
                report = (track.file, 5000.0 + person.joins + at, rtp)
                events.append((joined + at + delay, order, ("report", report)))
    for who, begin, end in speakers:
        events.append((start + begin, 99, ("speak", who, True)))
        events.append((start + end, 99, ("speak", who, False)))
    if screen is not None:
        who, begin, shown = screen
        track = capture.open_track(who, f"{who}-screen", "screen", shown.person.codec)
        for at, data in shown.video:
            events.append((start + begin + at, 98, ("rtp", track, data)))
        end = begin + shown.video_frames / 15
        events.append((start + begin - 0.001, 99, ("screen", who, True)))
        events.append((start + end, 99, ("screen", who, False)))
    events.sort(key=lambda e: (e[0], e[1]))
    for at, _, action in events:
        if action[0] == "join":
            timeline.joined(action[1].id, action[1].name, t=at)
        elif action[0] == "rtp":
            action[1].push_rtp(action[2], arrival=at)
        elif action[0] == "report":
            file, ntp, rtp = action[1]
            timeline.sender_report(file, ntp, rtp, t=at)
        elif action[0] == "speak":
            timeline.speaking(action[1], action[2], t=at)
        else:
            timeline.screen(action[1], action[2], t=at)
    for track in capture.tracks:
        track.close()
    for media in medias:
        timeline.left(media.person.id, t=events[-1][0] + 0.01)
    timeline.recording_stopped(t=events[-1][0] + 0.02)
    timeline.close()
    return capture


@functools.cache
def people_media() -> tuple[Media, ...]:
    """The three people's media, made once per test process."""
    return tuple(make_media(person) for person in PEOPLE)


SCREEN = Person("p3", "Vera's screen", (235, 220, 40), 0.0, "vp8", 0.0)


@functools.cache
def screen_media() -> Media:
    """A shared screen: 1.2 s of yellow (after the dark lead-in), no sound."""
    return make_media(SCREEN, seconds=1.2 + LEAD, audio=False)


SPEAKERS = (("p1", 0.6, 1.5), ("p2", 1.6, 2.5))


def decode_video(path: Path) -> list[Any]:
    """Every picture of a file's first video stream, as far as it decodes."""
    frames: list[Any] = []
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(video=0):
                frames.append(frame)
        except av.FFmpegError:
            pass  # a torn end: what decoded is the answer
    return frames


def decode_audio(path: Path) -> tuple[list[float], float]:
    """(mono samples at 48 kHz, time of the first sample) of a file's first audio stream."""
    samples: list[float] = []
    start: float | None = None
    resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_CLOCK)
    with av.open(str(path)) as container:
        try:
            for frame in container.decode(audio=0):
                if start is None:
                    start = float(frame.time or 0.0)
                for chunk in resampler.resample(frame):
                    data = bytes(chunk.planes[0])[: chunk.samples * 2]
                    samples.extend(v / 32768 for v in struct.unpack(f"<{chunk.samples}h", data))
        except av.FFmpegError:
            pass
    return samples, start or 0.0


def tone_power(samples: list[float], frequency: float, rate: int = AUDIO_CLOCK) -> float:
    """Goertzel: the power of one frequency in `samples`, normalised by their number."""
    coefficient = 2 * math.cos(2 * math.pi * frequency / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coefficient * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coefficient * s1 * s2) / max(1, len(samples)) ** 2


def rgb_at(frame: Any, x: int, y: int) -> tuple[int, int, int]:
    picture = frame.to_rgb() if frame.format.name != "rgb24" else frame
    plane = picture.planes[0]
    pos = y * plane.line_size + 3 * x
    data = bytes(plane)[pos : pos + 3]
    return data[0], data[1], data[2]


def close_to(colour: tuple[int, int, int], expected: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, expected, strict=True))


@functools.cache
def known_clip(
    person: Person, seconds: float = 2.4, lead: float = LEAD, size: tuple[int, int] = (320, 180)
) -> Clip:
    """A person as a publisher's clip: their colour (VP8 or H.264, 320x180, 15 fps, a keyframe
    a second) and their tone, after a dark, silent lead-in of `lead` seconds (none: their
    colour all the time); `size`: the pictures' (320x180 unless told). Keyframe requests are
    not answered: the next keyframe is at most a second away."""
    fps = 15
    width, height = size
    video = _video_packets(person, seconds, width, height, fps, lead)
    audio = _audio_packets(person, seconds, lead)
    pictures = [
        Encoded(bytes(p), round((p.pts - video[0].pts) * VIDEO_CLOCK / fps), p.is_keyframe)
        for p in video
    ]
    sounds = [Encoded(bytes(p), p.pts - audio[0].pts, True) for p in audio]
    spec = ClipSpec(codec=person.codec, width=width, height=height, fps=fps, seconds=seconds)
    return Clip(person.codec, pictures, pictures, sounds, seconds, fps, spec)


class KnownPeer(MeetingPeer):
    """A participant publishing a known clip in its own codec."""

    async def publish(self, sources: dict[str, str] | None = None) -> Any:
        codec = "video/H264" if self.clip.codec == "h264" else "video/VP8"
        self.publisher = ClientPublisher(self.clip, codec, audio_level=self.audio_level)
        offer = await self.publisher.offer()
        mids = self.publisher.mids()
        labels = {mids["audio"]: "microphone", mids["video"]: "camera"}
        ack = await self.client.call("publish", {"sdp": offer, "sources": labels})
        await self.publisher.accept(ack["sdp"])
        return ack
