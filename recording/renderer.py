"""Re-render the programme from a recording's track files and timeline: each track decoded
once, pictures laid out per recording.layout, all audio mixed at 48 kHz, one H.264 + AAC encode
into an MP4 with its index at the front (fast start). Progress in percent goes to a callback
and, for a background render, to `render.json` beside the tracks."""

import json
import os
import resource
import subprocess
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recording import layout as layouts
from recording.errors import RecordingError
from recording.lettering import Lettering
from recording.plan import Plan, read_plan
from recording.sources import RATE, AudioSource, VideoSource, mix

OUTPUT = "programme.mp4"
PROGRESS = "render.json"
LOG = "render.log"
BACKGROUND = (24, 24, 28)
CARD = (58, 62, 74)
LIVE_THREADS = 2  # libx264 threads of a live encode: it shares the machine with the SFU


@dataclass
class RenderResult:
    output: str
    duration: float  # seconds of programme
    elapsed: float  # seconds the render took
    peak_memory_kb: int  # the rendering process's peak resident set
    warnings: list[str] = field(default_factory=list)

    @property
    def speed(self) -> float:
        """Times faster than real time."""
        return self.duration / self.elapsed if self.elapsed > 0 else 0.0


def _yuv(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = rgb
    return (
        round(16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256),
        round(128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256),
        round(128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256),
    )


class Stage:
    """Who is on the programme at a time: replayed forward from a recording's timeline
    (`advance`), or told live, event by event (`apply`), by the compositor."""

    def __init__(self, plan: Plan | None = None) -> None:
        events = list(plan.events) if plan is not None else []
        # A track makes its owner present from its start when the timeline lost their join.
        joined = {e.get("participant") for e in events if e["event"] == "joined"}
        for track in plan.tracks if plan is not None else []:
            if track.participant not in joined:
                joined.add(track.participant)
                events.append(
                    {"at": track.offset, "event": "joined", "participant": track.participant}
                )
        self._events = sorted(events, key=lambda e: float(e["at"]))
        self._cursor = 0
        self.present: dict[str, float] = {}  # participant -> joined at (keeps join order)
        self.names = dict(plan.names) if plan is not None else {}
        self.speaking: dict[str, float] = {}  # participant -> segment began at
        self.sharing: dict[str, float] = {}  # participant -> screen share began at
        self.announced_shares: set[str] = set()  # who ever had a screen event
        self.audience: dict[str, float] = {}  # viewers (not shown) -> joined at
        self.active: str | None = None

    def advance(self, t: float) -> None:
        due = []
        while self._cursor < len(self._events) and float(self._events[self._cursor]["at"]) <= t:
            due.append(self._events[self._cursor])
            self._cursor += 1
        self.apply(*due)

    def apply(self, *events: dict[str, Any]) -> None:
        """Timeline events ("at", "event", "participant", "name", "on"), in order."""
        for event in events:
            who = str(event.get("participant", ""))
            kind = event["event"]
            if kind == "joined":
                self.present.setdefault(who, float(event["at"]))
                self.names[who] = str(event.get("name", who))
            elif kind == "role" and event.get("role") == "viewer":
                # Viewers are not in the programme: a viewer's tile would be an empty card.
                self.audience[who] = self.present.pop(who, float(event["at"]))
                self.speaking.pop(who, None)
            elif kind == "role":  # given the floor: in the programme from now on
                self.audience.pop(who, None)
                self.present.setdefault(who, float(event["at"]))
            elif kind == "left":
                self.audience.pop(who, None)
                self.present.pop(who, None)
                self.speaking.pop(who, None)
                self.sharing.pop(who, None)
            elif kind == "screen":
                self.announced_shares.add(who)
                if event.get("on"):
                    self.sharing[who] = float(event["at"])
                else:
                    self.sharing.pop(who, None)
            elif kind == "speaking":
                if event.get("on"):
                    self.speaking[who] = float(event["at"])
                else:
                    self.speaking.pop(who, None)
        if self.speaking:  # the latest to start speaking; else the last speaker stays large
            self.active = max(self.speaking, key=lambda p: self.speaking[p])

    def people(self) -> list[str]:
        return sorted(self.present, key=lambda p: self.present[p])


class Canvas:
    """A yuv420p picture assembled by copying rows: no pixel loops in Python."""

    def __init__(self, width: int, height: int, lettering: Lettering) -> None:
        self.width, self.height = width, height
        self._lettering = lettering
        self._background = self._solid_planes(BACKGROUND)
        self._scaled: dict[tuple[int, int, int, int], Any] = {}

    def _solid_planes(self, rgb: tuple[int, int, int]) -> list[bytes]:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        return [bytes([v]) * p.buffer_size for v, p in zip(_yuv(rgb), frame.planes, strict=True)]

    def new(self) -> Any:
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, self._background, strict=True):
            plane.update(data)
        return frame

    def fill(self, frame: Any, box: layouts.Box, rgb: tuple[int, int, int]) -> None:
        for index, value in enumerate(_yuv(rgb)):
            shift = 0 if index == 0 else 1
            x, y = box.x >> shift, box.y >> shift
            w, h = box.width >> shift, box.height >> shift
            plane = frame.planes[index]
            line, dst = plane.line_size, memoryview(plane)
            row = bytes([value]) * w
            for r in range(y, y + h):
                dst[r * line + x : r * line + x + w] = row

    def label(self, frame: Any, tile: layouts.Tile) -> None:
        """The name on a dark bar in the tile's label box (left on pictures, centred on
        cards); each bar is drawn once per name and size (recording.lettering)."""
        if not tile.name:
            return
        box = tile.label
        made = self._lettering.label(tile.name, box.width, box.height)
        width = made.width
        x = box.x + ((box.width - width) // 2 // 2 * 2 if tile.content == "card" else 0)
        plane = frame.planes[0]
        dst, line = memoryview(plane), plane.line_size
        for r, row in enumerate(made.rows):
            start = (box.y + r) * line + x
            dst[start : start + width] = row
        for index in (1, 2):
            plane = frame.planes[index]
            dst, line = memoryview(plane), plane.line_size
            neutral = b"\x80" * (width // 2)
            for r in range(box.y // 2, (box.y + box.height) // 2):
                dst[r * line + x // 2 : r * line + x // 2 + width // 2] = neutral

    def paste(self, frame: Any, picture: Any, box: layouts.Box, key: tuple[int, int]) -> None:
        """`picture` scaled into `box` (scaled once per source picture and size)."""
        cache_key = (*key, box.width, box.height)
        scaled = self._scaled.get(cache_key)
        fits = (picture.width, picture.height, picture.format.name)
        if scaled is None and fits == (box.width, box.height, "yuv420p"):
            scaled = picture  # scaled already (a render's reader thread does it)
        if scaled is None:
            scaled = picture.reformat(
                width=box.width, height=box.height, format="yuv420p", interpolation="BILINEAR"
            )
            self._scaled = {k: v for k, v in self._scaled.items() if k[0] != key[0]}
            self._scaled[cache_key] = scaled
        for index in range(3):
            shift = 0 if index == 0 else 1
            x, y = box.x >> shift, box.y >> shift
            w, h = box.width >> shift, box.height >> shift
            dst_plane, src_plane = frame.planes[index], scaled.planes[index]
            dst, src = memoryview(dst_plane), memoryview(src_plane)
            dl, sl = dst_plane.line_size, src_plane.line_size
            for r in range(h):
                start = (y + r) * dl + x
                dst[start : start + w] = src[r * sl : r * sl + w]

    def draw(
        self,
        people: list[layouts.Participant],
        active: str | None,
        screen: tuple[str, Any, tuple[int, int]] | None,
        pictures: dict[str, tuple[Any, tuple[int, int]]],
    ) -> Any:
        """One programme picture: `people` in join order laid out by recording.layout, each
        camera tile from `pictures` (participant -> (picture, cache key)), `screen` (sharer,
        picture, cache key) large when given, a card for anyone without a picture, names."""
        frame = self.new()
        sharer = screen[0] if screen is not None else None
        for tile in layouts.layout(people, active, sharer, self.width, self.height):
            if tile.content == "screen" and screen is not None:
                self.paste(frame, screen[1], tile.box, screen[2])
            elif tile.content == "video":
                picture, key = pictures[tile.participant]
                self.paste(frame, picture, tile.box, key)
            else:
                self.fill(frame, tile.box, CARD)
            self.label(frame, tile)
        return frame


def programme_streams(
    container: Any, width: int, height: int, fps: int, preset: str, live: bool = False
) -> tuple[Any, Any]:
    """The programme's streams in `container`: H.264 (libx264, CRF 23, yuv420p) and AAC
    (128 kbit/s, 48 kHz stereo). `live` adds what a live encode needs: no look-ahead or
    B-frames (tune zerolatency), keyframes only where the caller forces them (every segment),
    two threads at most; otherwise the encoder takes every core."""
    video: Any = container.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    options = {"preset": preset, "crf": "23"}
    if live:
        # keyint is a safety net: the compositor forces an IDR frame at each segment start.
        options |= {
            "tune": "zerolatency",
            "forced-idr": "1",
            "x264-params": f"keyint={8 * fps}:min-keyint={fps}:scenecut=0",
        }
        video.codec_context.thread_count = LIVE_THREADS
    else:
        # A render has no clock to keep: frame threads on every core (x264's own count).
        video.codec_context.thread_type = "FRAME"
        video.codec_context.thread_count = 0
    video.options = options
    video.codec_context.time_base = Fraction(1, fps)
    audio: Any = container.add_stream("aac", rate=RATE)
    audio.layout = "stereo"
    audio.bit_rate = 128_000
    return video, audio


def samples_until(index: int, fps: int) -> int:
    """The first audio sample after video frame `index`'s span: frame k is at k / fps and its
    sound is exactly the samples of its span (whole samples; exact when 48000 % fps == 0)."""
    return RATE * (index + 1) // fps if RATE % fps == 0 else round((index + 1) * RATE / fps)


def audio_frame(samples: "array[float]", count: int, pts: int) -> Any:
    """`count` interleaved stereo float samples as a frame for the AAC encoder."""
    chunk = av.AudioFrame(format="flt", layout="stereo", samples=count)
    chunk.planes[0].update(samples.tobytes())
    chunk.sample_rate = RATE
    chunk.pts = pts
    chunk.time_base = Fraction(1, RATE)
    return chunk


def render(
    directory: Path,
    output: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    preset: str = "fast",
    font: Path | None = None,
) -> RenderResult:
    """Render `directory`'s programme to `output` (default programme.mp4 in it); written to a
    temporary name and renamed when complete. Raises RecordingError with the reason."""
    begun = time.monotonic()
    if width % 2 or height % 2 or not 64 <= width <= 3840 or not 36 <= height <= 2160:
        raise RecordingError("bad_size", f"cannot render at {width}x{height}")
    if not 1 <= fps <= 60:
        raise RecordingError("bad_rate", f"cannot render at {fps} frames per second")
    plan = read_plan(Path(directory))
    lettering = Lettering(font)
    if lettering.warning is not None:
        plan.warnings.append(lettering.warning)
    target = Path(output) if output is not None else plan.directory / OUTPUT
    partial = target.with_name(target.name + ".part")
    videos: list[VideoSource] = []
    audios: list[AudioSource] = []
    try:
        for track in plan.tracks:
            try:
                if track.kind == "video":
                    videos.append(VideoSource(track))
                else:
                    audios.append(AudioSource(track))
            except (av.FFmpegError, OSError) as error:
                plan.warnings.append(f"track {track.file!r} skipped: {error}")
        canvas = Canvas(width, height, lettering)
        _encode(plan, partial, videos, audios, on_progress, canvas, fps, preset)
        partial.replace(target)
    except (av.FFmpegError, OSError) as error:
        raise RecordingError("render_failed", f"rendering failed: {error}") from error
    finally:
        partial.unlink(missing_ok=True)  # gone already when the render completed
        for video_source in videos:
            video_source.close()
        for audio_source in audios:
            audio_source.close()
    return RenderResult(
        str(target),
        plan.duration,
        time.monotonic() - begun,
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        plan.warnings,
    )


def _encode(
    plan: Plan,
    path: Path,
    videos: list[VideoSource],
    audios: list[AudioSource],
    on_progress: Callable[[int], None] | None,
    canvas: "Canvas",
    fps: int,
    preset: str,
) -> None:
    stage = Stage(plan)
    cameras = {v.track.participant: v for v in videos if v.track.source != "screen"}
    screens = [v for v in videos if v.track.source == "screen"]
    frames_total = max(1, round(plan.duration * fps))
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video, audio = programme_streams(out, canvas.width, canvas.height, fps, preset)
        sample = 0
        reported = -1
        for index in range(frames_total):
            t = index / fps
            stage.advance(t)
            picture = _compose(canvas, stage, cameras, screens, t)
            picture.pts = index
            picture.time_base = Fraction(1, fps)
            out.mux(video.encode(picture))
            end = samples_until(index, fps)
            count = end - sample
            parts = [p for p in (a.read(sample, count) for a in audios) if p is not None]
            out.mux(audio.encode(audio_frame(mix(parts, count), count, sample)))
            sample = end
            percent = (index + 1) * 100 // frames_total
            if on_progress is not None and percent != reported:
                reported = percent
                on_progress(min(percent, 99))  # 100 once the file is complete
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    if on_progress is not None:
        on_progress(100)


def _compose(
    canvas: Canvas,
    stage: Stage,
    cameras: dict[str, VideoSource],
    screens: list[VideoSource],
    t: float,
) -> Any:
    showing = {who: source for who, source in cameras.items() if source.at(t) is not None}
    # A shared screen may send no frame for long (a still slide): its last picture stays up
    # while the timeline says the share is on (or, with no screen events, while its track runs).
    shared = [(s, s.at(t, stale=float("inf"))) for s in screens]
    live = [
        (s, p)
        for s, p in shared
        if p is not None
        and (
            s.track.participant in stage.sharing
            or s.track.participant not in stage.announced_shares
        )
    ]
    shown: VideoSource | None = None
    if live:
        shown = max(live, key=lambda sp: sp[0].track.offset)[0]
    people = [
        layouts.Participant(who, stage.names.get(who, who), who in showing)
        for who in stage.people()
    ]
    sharer = shown.track.participant if shown is not None else None
    # Each picture at its tile's size, scaled ahead by its source's reader where it could.
    sizes = {
        (tile.participant, tile.content): (tile.box.width, tile.box.height)
        for tile in layouts.layout(people, stage.active, sharer, canvas.width, canvas.height)
    }
    pictures = {
        who: (source.picture(sizes[(who, "video")]), (id(source), source.serial))
        for who, source in showing.items()
        if (who, "video") in sizes
    }
    screen = None
    if shown is not None and sharer is not None:
        size = sizes.get((sharer, "screen"), (canvas.width, canvas.height))
        screen = (sharer, shown.picture(size), (id(shown), shown.serial))
    return canvas.draw(people, stage.active, screen, pictures)


# -- background rendering ----------------------------------------------------------------------


def write_progress(directory: Path, **state: Any) -> None:
    """Replace render.json atomically (a reader never sees half a file)."""
    path = Path(directory) / PROGRESS
    temporary = path.with_name(f".{PROGRESS}.{os.getpid()}")
    temporary.write_text(json.dumps(state), encoding="utf-8")
    temporary.replace(path)


def read_progress(directory: Path) -> dict[str, Any]:
    """The last state a background render wrote: state (rendering, done, failed), percent,
    error, and when done output, duration, elapsed, speed, peak_memory_kb, warnings."""
    try:
        data = json.loads((Path(directory) / PROGRESS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"state": "none", "percent": 0}
    except (OSError, ValueError) as error:
        return {"state": "unknown", "percent": 0, "error": str(error)}
    return data if isinstance(data, dict) else {"state": "unknown", "percent": 0}


def render_with_progress(directory: Path, **options: Any) -> RenderResult | None:
    """`render` reporting to render.json; a failure is written there, not raised."""
    write_progress(directory, state="rendering", percent=0)

    def progress(percent: int) -> None:
        write_progress(directory, state="rendering", percent=percent)

    try:
        result = render(directory, on_progress=progress, **options)
    except RecordingError as error:
        write_progress(directory, state="failed", percent=0, error=error.message, code=error.code)
        return None
    except Exception as error:  # the process is ending anyway: say why instead of a traceback
        write_progress(directory, state="failed", percent=0, error=repr(error), code="crashed")
        return None
    write_progress(directory, state="done", percent=100, speed=result.speed, **asdict(result))
    return result


def start_render(directory: Path, *args: str) -> subprocess.Popen[bytes]:
    """Render `directory` in a process of its own (`python -m recording.render DIR`); follow
    it with read_progress(directory). Its own output goes to render.log beside the tracks."""
    command = [sys.executable, "-m", "recording.render", str(directory), *args]
    with (Path(directory) / LOG).open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
