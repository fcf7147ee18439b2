"""The event timeline beside a recording's track files: JSON lines, appended and flushed one
event at a time, so a crash loses at most the line being written (a torn last line is skipped
when read).

Each line is an object with `t` (wall clock, seconds since the epoch) and `event`; the events
and their fields are listed in docs/recording.md and made by the functions below.
"""

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from recording.errors import RecordingError

FILE_NAME = "timeline.jsonl"
MAX_LINE = 64 * 1024  # an event longer than this is refused (chat text is bounded upstream)
SOURCES = ("microphone", "camera", "screen")

Event = dict[str, Any]


class Timeline:
    """Appends events to `path` (created if missing, appended to if not)."""

    def __init__(self, path: Path, fsync: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        try:
            self._file: TextIO | None = self.path.open("a", encoding="utf-8")
        except OSError as error:
            raise RecordingError("open_failed", f"cannot open the timeline: {error}") from error

    def append(self, event: str, t: float | None = None, **fields: Any) -> Event:
        """Write one event now (flushed to the OS; fsync'd too when asked) and return it."""
        if self._file is None:
            raise RecordingError("closed", "the timeline is closed")
        record: Event = {"t": round(time.time() if t is None else t, 6), "event": event, **fields}
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        if len(line) > MAX_LINE:
            raise RecordingError("too_long", f"timeline event {event!r} is too long")
        try:
            self._file.write(line + "\n")
            self._file.flush()
            if self._fsync:
                os.fsync(self._file.fileno())
        except OSError as error:
            raise RecordingError("write_failed", f"cannot write the timeline: {error}") from error
        return record

    def close(self) -> None:
        if self._file is not None:
            file, self._file = self._file, None
            try:
                file.close()
            except OSError as error:
                raise RecordingError(
                    "write_failed", f"cannot close the timeline: {error}"
                ) from error

    # The events, with their fields named once.
    def recording_started(self, meeting: str, title: str = "", t: float | None = None) -> Event:
        return self.append("recording_started", t, meeting=meeting, title=title)

    def recording_stopped(self, t: float | None = None, reason: str = "") -> Event:
        return self.append("recording_stopped", t, reason=reason)

    def joined(self, participant: str, name: str, t: float | None = None) -> Event:
        return self.append("joined", t, participant=participant, name=name)

    def role(self, participant: str, role: str, t: float | None = None) -> Event:
        """The participant's role now: a `viewer` is not in the programme (nor a re-render)."""
        return self.append("role", t, participant=participant, role=role)

    def left(self, participant: str, t: float | None = None) -> Event:
        return self.append("left", t, participant=participant)

    def speaking(self, participant: str, on: bool, t: float | None = None) -> Event:
        return self.append("speaking", t, participant=participant, on=on)

    def screen(self, participant: str, on: bool, t: float | None = None) -> Event:
        return self.append("screen", t, participant=participant, on=on)

    def chat(self, participant: str, name: str, text: str, t: float | None = None) -> Event:
        return self.append("chat", t, participant=participant, name=name, text=text)

    def track_started(
        self,
        participant: str,
        file: str,
        source: str,
        codec: str,
        rtp: int,
        clock_rate: int,
        t: float | None = None,
    ) -> Event:
        """A track file's first frame: `t` is its wall-clock time, `rtp` its RTP timestamp
        (pts 0 in the file), so a file's time maps onto the meeting's clock."""
        if source not in SOURCES:
            raise RecordingError("bad_source", f"unknown track source {source!r}")
        return self.append(
            "track_started",
            t,
            participant=participant,
            file=file,
            source=source,
            codec=codec,
            rtp=rtp,
            clock_rate=clock_rate,
        )

    def sender_report(self, file: str, ntp: float, rtp: int, t: float | None = None) -> Event:
        """A publisher's RTCP sender report for a track: its own clock (`ntp`, seconds) at RTP
        timestamp `rtp`. Tracks of one publisher are lined up by these (lip sync)."""
        return self.append("sender_report", t, file=file, ntp=round(ntp, 6), rtp=rtp)

    def track_stopped(
        self, file: str, frames: int, duration: float, error: str = "", t: float | None = None
    ) -> Event:
        return self.append(
            "track_stopped", t, file=file, frames=frames, duration=round(duration, 6), error=error
        )


def read_events(path: Path) -> list[Event]:
    """All events of a timeline file, in order. A torn or garbled line (a crash mid-write) is
    skipped; a missing file is an empty timeline."""
    return list(_events(Path(path)))


def _events(path: Path) -> Iterator[Event]:
    try:
        file = path.open("rb")
    except FileNotFoundError:
        return
    with file:
        for raw in file:
            try:
                record = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                continue
            if (
                isinstance(record, dict)
                and isinstance(record.get("event"), str)
                and isinstance(record.get("t"), int | float)
            ):
                yield record
