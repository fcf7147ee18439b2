"""What a recording directory holds, read back for rendering: the tracks (files, owners, where
they sit on the recording's clock) and the timeline's participants, speakers and screens."""

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from recording import names
from recording.errors import RecordingError
from recording.timeline import FILE_NAME, Event, read_events

logger = logging.getLogger(__name__)

# A sender report that moves a track further than this from its arrival time is not trusted.
_MAX_SYNC_SHIFT = 1.0


@dataclass(frozen=True)
class Track:
    """One track file: `offset` is when its pts 0 falls on the recording's clock (seconds),
    `duration` how long it runs (read from the file: valid after a crash too)."""

    file: str
    path: Path
    participant: str
    source: str
    kind: str
    offset: float
    duration: float

    @property
    def end(self) -> float:
        return self.offset + self.duration


@dataclass
class Plan:
    directory: Path
    origin: float  # wall clock of the recording's time 0
    tracks: list[Track]
    events: list[Event]  # timeline events, times made relative to origin (key "at")
    duration: float
    names: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _scan(path: Path) -> tuple[str, float]:
    """(kind, seconds) of a track file, by reading its packets (no decoding)."""
    with av.open(str(path)) as container:
        if not container.streams:
            raise RecordingError("bad_track", f"{path.name} holds no stream")
        stream: Any = container.streams[0]
        end = 0.0
        for packet in container.demux(stream):
            if packet.pts is None or packet.time_base is None:
                continue
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
        if stream.type not in ("audio", "video"):
            raise RecordingError("bad_track", f"{path.name} is neither audio nor video")
        return str(stream.type), end


def _lip_sync(tracks: list[Track], starts: list[Event], events: list[Event]) -> list[Track]:
    """Line up each publisher's camera with their microphone by their sender reports: arrival
    times differ by network and frame assembly delays, the publisher's own clock does not."""
    first_report: dict[str, Event] = {}
    for event in events:
        if event["event"] == "sender_report":
            first_report.setdefault(str(event.get("file")), event)
    started = {str(e.get("file")): e for e in starts}

    def clock_at_start(track: Track) -> float | None:
        """The publisher's clock (seconds) at the file's pts 0."""
        report, start = first_report.get(track.file), started.get(track.file)
        if report is None or start is None:
            return None
        try:
            rate = int(start["clock_rate"])
            delta = (int(start["rtp"]) - int(report["rtp"])) & 0xFFFFFFFF
            if delta >= 1 << 31:
                delta -= 1 << 32
            return float(report["ntp"]) + delta / rate
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            return None

    microphones = {
        t.participant: (t, clock_at_start(t)) for t in tracks if t.source == "microphone"
    }
    out = []
    for track in tracks:
        audio, audio_clock = microphones.get(track.participant, (None, None))
        own_clock = clock_at_start(track) if track.kind == "video" else None
        if audio is not None and audio_clock is not None and own_clock is not None:
            offset = audio.offset + own_clock - audio_clock
            if abs(offset - track.offset) < _MAX_SYNC_SHIFT:
                track = dataclasses.replace(track, offset=offset)
        out.append(track)
    return out


def read_plan(directory: Path) -> Plan:
    """The plan of `directory`, or RecordingError: not_found (no such directory or timeline),
    no_tracks (nothing readable to render)."""
    directory = Path(directory)
    if not (directory / FILE_NAME).is_file():
        raise RecordingError("not_found", f"no recording timeline in {directory}")
    events = read_events(directory / FILE_NAME)
    warnings: list[str] = []
    tracks: list[Track] = []
    starts = [e for e in events if e["event"] == "track_started"]
    # Time 0 is when recording started, as for the live programme and the chapters; a
    # timeline without that line (or with tracks from before it) starts at its first track.
    first = min((float(e["t"]) for e in starts), default=0.0)
    started = next((float(e["t"]) for e in events if e["event"] == "recording_started"), None)
    origin = started if started is not None and started <= first else first
    for event in starts:
        file = str(event.get("file", ""))
        try:
            path = names.inside(directory, file)
            kind, duration = _scan(path)
        except (RecordingError, av.FFmpegError, OSError) as error:
            warnings.append(f"track {file!r} skipped: {getattr(error, 'message', error)}")
            continue
        if duration <= 0:
            warnings.append(f"track {file!r} skipped: it holds no frames")
            continue
        tracks.append(
            Track(
                file,
                path,
                str(event.get("participant", "")),
                str(event.get("source", "camera" if kind == "video" else "microphone")),
                kind,
                float(event["t"]) - origin,
                duration,
            )
        )
    tracks = _lip_sync(tracks, starts, events)
    if not tracks:
        detail = "; ".join(warnings) or "the timeline names no track"
        raise RecordingError("no_tracks", f"nothing to render in {directory.name}: {detail}")
    relative = []
    person_names: dict[str, str] = {}
    for event in events:
        relative.append({**event, "at": float(event["t"]) - origin})
        if event["event"] == "joined":
            person_names[str(event.get("participant"))] = str(event.get("name", ""))
    return Plan(
        directory,
        origin,
        tracks,
        relative,
        max(t.end for t in tracks),
        person_names,
        warnings,
    )
