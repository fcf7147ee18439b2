"""The live programme of a meeting: the latest picture of each tile laid out as the renderer
lays out a recording, all sound mixed, encoded once (H.264 + AAC) on the compositor's own clock
into a fragmented MP4 and HLS segments as the meeting goes; at the end, a fast-start MP4 made
from the fragments by remuxing.

Callers (the recording process's asyncio loop) only store what arrives; composing and encoding
run in a worker thread, each frame `LATENCY` after its time so that sound arriving a little
late still finds its place."""

import asyncio
import logging
import threading
import time
from array import array
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from recording import fmp4
from recording import layout as layouts
from recording.errors import RecordingError
from recording.hls import WINDOW, HlsWriter
from recording.lettering import Lettering
from recording.quality import CardLog
from recording.renderer import (
    OUTPUT,
    Canvas,
    Stage,
    audio_frame,
    programme_streams,
    samples_until,
)
from recording.sources import RATE, STALE, Samples, mix

FRAGMENTED = "programme.fmp4"
HLS_DIRECTORY = "hls"
# libx264's preset for the live programme: "superfast" encodes 1280x720 at 30 fps in about a
# third of a core here ("veryfast" about 0.43), so the recording process stays under half a
# core with the decoding; a re-render, with no clock to keep, may take "veryfast".
PRESET = "superfast"
SEGMENT = 2.0  # seconds between keyframes: an MP4 fragment and an HLS segment each
LATENCY = 0.2  # a frame is made this long after its time: sound that late still fits
MAX_LAG = 1.0  # further behind the clock than this, pictures are skipped (sound is kept)
AHEAD = 0.5  # a track's own timestamps may run this far ahead of its arrival, no further
PICTURES_KEPT = 16  # per tile: those arrived but not yet due, and the one showing
# A camera's last picture stays up this long while no newer one is due: on a loaded machine
# pictures are decoded and composed late, and a frozen picture beats a name card. A camera
# turned off (its owner's state, or its track ended) shows the card at once.
HOLD = 10.0
ARRIVALS_KEPT = 5000  # sound frames waiting for the worker; beyond that the oldest go
SOURCES = ("camera", "screen")
AAC_PRIMING = 1024  # samples FFmpeg's AAC encoder puts before the first (its first pts: -1024)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Picture:
    at: float  # programme seconds when it arrived
    frame: Any
    serial: int  # unique: lets the canvas reuse its scaling while the picture stays


class _Sound:
    """One audio track, resampled to 48 kHz stereo float, placed on the programme's clock: its
    first frame where it arrived, the next ones by their own timestamps (a mute's gap stays
    silent), put back at their arrival when they drift too far or come too late."""

    def __init__(self) -> None:
        self._resampler = av.AudioResampler(format="flt", layout="stereo", rate=RATE)
        self._samples = Samples()
        self._anchor: tuple[int, float] | None = None  # (sample, the track's own seconds)

    def add(self, at: int, frame: Any, cursor: int) -> None:
        """Place `frame`, arrived at sample `at`; `cursor` is the first sample not yet mixed."""
        own = float(frame.time) if frame.time is not None else None
        position: int | None = None
        if own is not None and self._anchor is not None:
            position = self._anchor[0] + round((own - self._anchor[1]) * RATE)
        elif own is None and self._samples.end is not None:
            position = self._samples.end
        if position is None or position < cursor or position > at + AHEAD * RATE:
            position = max(at, cursor)
            if own is not None:
                self._anchor = (position, own)
        for chunk in self._resampler.resample(frame):
            position = self._samples.append(position, chunk)

    def read(self, start: int, count: int) -> "array[float] | None":
        """Samples [start, start + count) interleaved, or None when the track is silent."""
        return self._samples.read(start, count)


class Compositor:
    """The live programme: latest picture per tile, all audio mixed, encoded once.

    `run()` makes frames on the wall clock until `finish()`; with `manual=True` the caller
    drives the clock instead, one frame per `tick()` (tests, tools)."""

    def __init__(
        self,
        directory: Path,
        *,
        size: tuple[int, int] = (640, 360),
        fps: int = 25,
        hls: bool = True,
        font: Path | None = None,
        preset: str = PRESET,
        manual: bool = False,
        hls_window: int = WINDOW,
    ) -> None:
        width, height = size
        if width % 2 or height % 2 or not 64 <= width <= 3840 or not 36 <= height <= 2160:
            raise RecordingError("bad_size", f"cannot compose at {width}x{height}")
        if not 1 <= fps <= 60:
            raise RecordingError("bad_rate", f"cannot compose at {fps} frames per second")
        self.directory = Path(directory)
        self.fps = fps
        self.manual = manual
        self.error: RecordingError | None = None
        lettering = Lettering(font)
        self.warnings = [lettering.warning] if lettering.warning else []
        self._canvas = Canvas(width, height, lettering)
        self._stage = Stage()
        self._camera_off: dict[str, float] = {}  # participant -> when their camera went off
        self.cards = CardLog()  # who was shown without a picture: checked after the stop
        self._gop = round(SEGMENT * fps)
        self._lock = threading.Lock()  # guards what callers hand over (below)
        self._events: deque[dict[str, Any]] = deque()
        self._pictures: dict[tuple[str, str], deque[_Picture]] = {}
        self._arrivals: deque[tuple[str, float, Any]] = deque(maxlen=ARRIVALS_KEPT)
        self._serial = 0
        # Worker-only state.
        self._slots: dict[tuple[str, str], int] = {}
        self._sounds: dict[str, _Sound] = {}
        self._made = 0  # frames made (the next frame's index)
        self._sample = 0  # the first audio sample not yet mixed
        self._group = -1  # the keyframe group (segment) of the last picture encoded
        self._origin = time.monotonic()
        self._stop_at: float | None = None
        self._runner: asyncio.Future[None] | None = None
        self._finished: Path | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._out: Any = fmp4.open_fragmented(self.directory / FRAGMENTED)
            live = programme_streams(self._out, width, height, fps, preset, live=True)
            self._video, self._audio = live
            self._hls = (
                HlsWriter(
                    self.directory / HLS_DIRECTORY, self._video, self._audio, SEGMENT, hls_window
                )
                if hls
                else None
            )
        except (OSError, av.FFmpegError) as error:
            raise RecordingError("open_failed", f"cannot write the programme: {error}") from error

    # -- what the recording process tells (any thread; never blocks on the work) ----------------

    def join(self, participant: str, name: str) -> None:
        self._event("joined", participant, name=str(name))

    def leave(self, participant: str) -> None:
        self._event("left", participant)

    def speaking(self, participant: str | None) -> None:
        """`participant` is the active speaker now; None: nobody speaks (the last stays)."""
        self._event("active", participant or "")

    def screen(self, participant: str, on: bool) -> None:
        self._event("screen", participant, on=bool(on))

    def camera(self, participant: str, on: bool) -> None:
        """`participant` turned their camera off (a card from now on) or on again."""
        self._event("camera", participant, on=bool(on))

    def picture(self, participant: str, source: str, frame: av.VideoFrame) -> None:
        """A decoded picture of `participant`'s camera or screen; shown until a newer one,
        for at most HOLD seconds for a camera unless it is turned off (then a card), as long
        as the share lasts for a screen."""
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, not {source!r}")
        if not isinstance(frame, av.VideoFrame):
            raise TypeError("a picture is an av.VideoFrame")
        self._check(participant)
        if self._stop_at is not None:
            return  # late frames after the end
        with self._lock:
            self._serial += 1
            kept = self._pictures.get((participant, source))
            if kept is None:
                kept = self._pictures[(participant, source)] = deque()
            if len(kept) >= PICTURES_KEPT:
                # The oldest stays: while the clock runs late it is the one still due, and
                # dropping it would leave the tile with nothing to show (a card).
                del kept[1]
            kept.append(_Picture(self._now(), frame, self._serial))

    def sound(self, key: str, frame: av.AudioFrame) -> None:
        """Decoded sound of one audio track (`key` names it), in order; any rate or layout."""
        if not isinstance(frame, av.AudioFrame):
            raise TypeError("sound is an av.AudioFrame")
        if self._stop_at is not None:
            return
        with self._lock:
            self._arrivals.append((str(key), self._now(), frame))

    def _event(self, kind: str, participant: str, **fields: Any) -> None:
        if kind != "active" or participant:
            self._check(participant)
        with self._lock:
            self._events.append(
                {"event": kind, "participant": participant, "at": self._now(), **fields}
            )

    @staticmethod
    def _check(participant: str) -> None:
        if not isinstance(participant, str) or not participant:
            raise ValueError("a participant is a non-empty string")

    def _now(self) -> float:
        """Seconds of programme: frames made so far (manual) or since the start (wall)."""
        if self.manual:
            return self._made / self.fps
        return time.monotonic() - self._origin

    @property
    def duration(self) -> float:
        """Seconds of programme made so far."""
        return self._made / self.fps

    # -- the clock ------------------------------------------------------------------------------

    def begin(self) -> None:
        """The programme's time 0 is now (the recording started): before the first frame."""
        if self._made == 0 and self._runner is None:
            self._origin = time.monotonic()

    async def run(self) -> None:
        """Make frames on the wall clock, in a worker thread, until `finish()`. Raises
        RecordingError when writing fails (the outputs keep what was written)."""
        if self.manual:
            raise RecordingError("manual_clock", "this compositor's clock is driven by tick()")
        if self._runner is None:
            self._runner = asyncio.ensure_future(asyncio.to_thread(self._run_clock))
        try:
            await asyncio.shield(self._runner)
        except asyncio.CancelledError:
            # The thread cannot be cancelled: stop its clock, or it would keep the process.
            if self._stop_at is None:
                self._stop_at = self._now()
            raise
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        """End the programme now: no frame is made after this moment, even if `finish` comes
        later (the recording has stopped; pictures stop arriving as its connection closes)."""
        if self._stop_at is None:
            self._stop_at = self._now()

    def tick(self) -> None:
        """Make the next frame now (manual clock)."""
        if not self.manual:
            raise RecordingError("wall_clock", "this compositor runs on the wall clock")
        if self._stop_at is None and self.error is None:
            self._make(self._made)

    async def finish(self) -> Path:
        """Stop at the current time, close the outputs (HLS gets #EXT-X-ENDLIST) and make
        programme.mp4 (fast start) from the fragments. Idempotent."""
        if self._finished is not None:
            return self._finished
        if self._stop_at is None:
            self._stop_at = self._now()
        if not self.manual:
            if self._runner is None:  # never ran: make what the time asks for now
                self._runner = asyncio.ensure_future(asyncio.to_thread(self._run_clock))
            await asyncio.shield(self._runner)
        self._finished = await asyncio.to_thread(self._close)
        return self._finished

    def _run_clock(self) -> None:
        while self.error is None:
            index = self._made
            stop = self._stop_at
            if stop is not None and index / self.fps >= stop - 1e-9:
                return
            late = time.monotonic() - (self._origin + (index + 1) / self.fps + LATENCY)
            if late < 0:
                time.sleep(min(-late, 0.1))
                continue
            self._make(index, draw=late <= MAX_LAG)

    # -- one frame ------------------------------------------------------------------------------

    def _make(self, index: int, draw: bool = True) -> None:
        try:
            self._make_frame(index, draw)
        except (OSError, av.FFmpegError) as error:
            self.error = RecordingError("write_failed", f"the programme stopped: {error}")
            log.error("%s", self.error.message)

    def _make_frame(self, index: int, draw: bool) -> None:
        due = (index + 1) / self.fps  # what arrived before the end of this frame's span
        with self._lock:
            events = []
            while self._events and self._events[0]["at"] < due:
                events.append(self._events.popleft())
            arrivals = list(self._arrivals)
            self._arrivals.clear()
            showing = {key: self._due(kept, due) for key, kept in self._pictures.items()}
        for event in events:
            self._apply(event)
        for key, at, frame in arrivals:
            sound = self._sounds.get(key)
            if sound is None:
                sound = self._sounds[key] = _Sound()
            sound.add(round(at * RATE), frame, self._sample)
        if not draw:
            self.cards.held(due)
        else:
            picture = self._compose(showing, index / self.fps)
            picture.pts = index
            picture.time_base = Fraction(1, self.fps)
            group = index // self._gop
            if group != self._group:  # a keyframe at each segment's start
                picture.pict_type = av.video.frame.PictureType.I
                self._group = group
            self._write(self._video.encode(picture))
        end = samples_until(index, self.fps)
        count = end - self._sample
        parts = [
            p for p in (s.read(self._sample, count) for s in self._sounds.values()) if p is not None
        ]
        self._write(self._audio.encode(audio_frame(mix(parts, count), count, self._sample)))
        self._sample = end
        self._made = index + 1

    @staticmethod
    def _due(kept: deque[_Picture], due: float) -> _Picture | None:
        """The latest picture arrived before `due`; older ones are dropped (lock held)."""
        while len(kept) > 1 and kept[1].at < due:
            kept.popleft()
        return kept[0] if kept and kept[0].at < due else None

    def _apply(self, event: dict[str, Any]) -> None:
        stage = self._stage
        if event["event"] == "camera":
            if event["on"]:
                self._camera_off.pop(event["participant"], None)
            else:
                self._camera_off[event["participant"]] = event["at"]
            return
        if event["event"] != "active":
            stage.apply(event)
            if event["event"] == "left":
                self._camera_off.pop(event["participant"], None)
                with self._lock:
                    for source in SOURCES:
                        self._pictures.pop((event["participant"], source), None)
            return
        who, at = event["participant"], event["at"]
        changes = [
            {"event": "speaking", "participant": other, "on": False, "at": at}
            for other in stage.speaking
            if other != who
        ]
        if who and who not in stage.speaking:
            changes.append({"event": "speaking", "participant": who, "on": True, "at": at})
        stage.apply(*changes)

    def _compose(self, showing: dict[tuple[str, str], _Picture | None], t: float) -> Any:
        stage = self._stage
        present = stage.people()
        pictures: dict[str, tuple[Any, tuple[int, int]]] = {}
        screen: tuple[str, Any, tuple[int, int]] | None = None
        for who in present:
            camera = showing.get((who, "camera"))
            off = self._camera_off.get(who)
            if camera is not None and t - camera.at <= HOLD and (off is None or off < camera.at):
                pictures[who] = (camera.frame, (self._slot(who, "camera"), camera.serial))
        # The share that began last and has a picture since it began (a still slide sends
        # no new frames: its picture stays while the share is on). A screen nobody announced
        # counts as shared while its pictures come, as in the renderer.
        shares = []
        for who in present:
            shown = showing.get((who, "screen"))
            if shown is None:
                continue
            if who in stage.sharing:
                if shown.at >= stage.sharing[who] - STALE:
                    shares.append((stage.sharing[who], who, shown))
            elif who not in stage.announced_shares and t - shown.at <= STALE:
                shares.append((shown.at, who, shown))
        if shares:
            _, who, shown = max(shares, key=lambda s: s[0])
            screen = (who, shown.frame, (self._slot(who, "screen"), shown.serial))
        people = [
            layouts.Participant(who, stage.names.get(who, who), who in pictures) for who in present
        ]
        self.cards.drawn(t, t + 1 / self.fps, {who for who in present if who not in pictures})
        return self._canvas.draw(people, stage.active, screen, pictures)

    def _slot(self, participant: str, source: str) -> int:
        slot = self._slots.get((participant, source))
        if slot is None:
            slot = self._slots[(participant, source)] = len(self._slots) + 1
        return slot

    def _write(self, packets: list[Any]) -> None:
        for packet in packets:
            # Both streams on one clock of samples, the AAC encoder's priming at 0 rather than
            # before it: the fragmented MP4 has no edit list to hide negative timestamps (the
            # muxer would shift them unevenly), MPEG-TS cannot hold them.
            if packet.stream.type == "video":
                packet.pts = packet.pts * RATE // self.fps + AAC_PRIMING
                packet.dts = packet.dts * RATE // self.fps + AAC_PRIMING
                packet.duration = round(RATE / self.fps)
                packet.time_base = Fraction(1, RATE)
            else:
                packet.pts += AAC_PRIMING
                packet.dts += AAC_PRIMING
            self._out.mux(packet)
            if self._hls is not None:
                self._hls.write(packet)

    # -- the end --------------------------------------------------------------------------------

    def _close(self) -> Path:
        """Each output is closed even when another fails; the first failure is raised."""
        failures: list[BaseException] = []
        if self.error is None:
            try:
                self._write(self._video.encode(None))
                self._write(self._audio.encode(None))
            except (OSError, av.FFmpegError) as error:
                failures.append(error)
        if self._hls is not None:
            try:
                self._hls.close()
            except (OSError, av.FFmpegError) as error:
                failures.append(error)
        target = self.directory / OUTPUT
        try:
            self._out.close()
        except (OSError, av.FFmpegError) as error:
            failures.append(error)
        try:  # a fragmented file cut by a failed write still gives what it holds
            fmp4.fast_start(self.directory / FRAGMENTED, target)
        except (OSError, av.FFmpegError) as error:
            failures.append(error)
        try:  # the check after the stop reads it; without it the tracks are rendered again
            self.cards.write(self.directory)
        except OSError as error:
            log.warning("cannot write the programme's card log: %s", error)
        if self.error is not None:
            raise self.error
        if failures:
            message = f"cannot finish the programme: {failures[0]}"
            raise RecordingError("write_failed", message) from failures[0]
        return target
