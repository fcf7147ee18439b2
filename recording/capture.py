"""A recording being written: its directory, its timeline, one TrackWriter per track.

What the server's recorder (a subscriber of the SFU) calls: `open_track` when a track is
forwarded to it, `push_rtp` per packet, the track's `close` when it ends, `close` at stop.
"""

import time
from collections.abc import Callable
from pathlib import Path

from recording import names
from recording.errors import RecordingError
from recording.rtpframes import RtpData
from recording.timeline import FILE_NAME, SOURCES, Timeline
from recording.trackfile import TrackWriter


class CapturedTrack:
    """One track of a capture: its writer, and the timeline events at its start and end."""

    def __init__(
        self, timeline: Timeline, participant: str, source: str, writer: TrackWriter
    ) -> None:
        self.participant = participant
        self.source = source
        self.writer = writer
        self._timeline = timeline
        self._announced = False
        self.stopped = False

    @property
    def file(self) -> str:
        return self.writer.path.name

    def push_rtp(self, data: bytes, arrival: float | None = None) -> None:
        """One RTP packet. A write error stops this track only: it is logged in the timeline
        and raised as RecordingError."""
        self._guard(lambda: self.writer.push_rtp(data, arrival))

    def push(self, packet: RtpData, arrival: float | None = None) -> None:
        self._guard(lambda: self.writer.push(packet, arrival))

    def _guard(self, step: Callable[[], None]) -> None:
        try:
            step()
        except RecordingError as error:
            self._stop(error.message)
            raise
        if not self._announced and self.writer.started_wall is not None:
            self._announced = True
            self._timeline.track_started(
                self.participant,
                self.file,
                self.source,
                self.writer.codec,
                self.writer.started_rtp or 0,
                self.writer.clock_rate,
                t=self.writer.started_wall,
            )

    def close(self) -> None:
        error = ""
        try:
            self.writer.close()
        except RecordingError as failure:
            error = failure.message
        self._stop(error or (self.writer.error.message if self.writer.error else ""))

    def _stop(self, error: str) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self._announced:
            self._timeline.track_stopped(
                self.file, self.writer.frames, self.writer.duration, error=error
            )


class Capture:
    """A recording directory being written: `timeline.jsonl` and one file per track."""

    def __init__(
        self, directory: Path, meeting: str = "", title: str = "", t: float | None = None
    ) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RecordingError("open_failed", f"cannot create the recording: {error}") from error
        self.timeline = Timeline(self.directory / FILE_NAME)
        self.tracks: list[CapturedTrack] = []
        self.timeline.recording_started(meeting, title, t=t)

    def open_track(self, participant: str, label: str, source: str, codec: str) -> CapturedTrack:
        """A new track file named after `label` (made safe and unique in the directory)."""
        if source not in SOURCES:
            raise RecordingError("bad_source", f"unknown track source {source!r}")
        name = names.track_file_name(label, codec)
        stem, suffix = name.rsplit(".", 1)
        taken = {t.file for t in self.tracks}
        count = 1
        while name in taken or (self.directory / name).exists():
            count += 1
            name = names.check_name(f"{stem}-{count}.{suffix}")
        writer = TrackWriter(self.directory / name, codec)
        track = CapturedTrack(self.timeline, participant, source, writer)
        self.tracks.append(track)
        return track

    def close(self, reason: str = "") -> None:
        """Close every track (errors are in the timeline) and mark the recording stopped."""
        for track in self.tracks:
            track.close()
        self.timeline.recording_stopped(time.time(), reason)
        self.timeline.close()
