"""The recordings catalog: one row per recording of a meeting, its status and its programme."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from rooms.meeting import iso


class RecordingStatus(StrEnum):
    RECORDING = "recording"  # the egress is writing tracks and the live programme
    FINISHING = "finishing"  # stopped; the programme MP4 is being closed
    RENDERING = "rendering"  # the programme is being rendered again from the tracks
    READY = "ready"  # programme.mp4 is there to play
    FAILED = "failed"  # no programme; `error` says why (a re-render may be tried)


# Statuses in which a process (egress or render) should be working on the recording: after a
# restart, a row left in one of these has lost its process and is recovered.
ACTIVE = frozenset(
    {RecordingStatus.RECORDING, RecordingStatus.FINISHING, RecordingStatus.RENDERING}
)


@dataclass(frozen=True)
class Recording:
    id: str
    meeting_id: str
    title: str  # the meeting's title when it started
    status: RecordingStatus
    started_at: datetime  # UTC, aware
    stopped_at: datetime | None
    duration: float = 0.0  # seconds of programme
    size: int = 0  # bytes of programme.mp4 (0 until there is one)
    progress: int | None = None  # percent while rendering
    error: str = ""  # "" unless failed (or a track/disk error to show)
    keep: bool = False  # exempt from retention

    def expires_at(self, retention: timedelta | None) -> datetime | None:
        """When retention deletes it: never if kept, still running or retention is off."""
        if self.keep or retention is None or self.stopped_at is None:
            return None
        return self.stopped_at + retention

    def as_dict(self, retention: timedelta | None = None) -> dict[str, Any]:
        """The REST JSON of a recording (docs/api.md)."""
        expires = self.expires_at(retention)
        return {
            "id": self.id,
            "meeting": self.meeting_id,
            "title": self.title,
            "status": self.status.value,
            "progress": self.progress,
            "started_at": iso(self.started_at),
            "stopped_at": iso(self.stopped_at) if self.stopped_at else None,
            "duration": round(self.duration, 3),
            "size": self.size,
            "error": self.error,
            "keep": self.keep,
            "expires_at": iso(expires) if expires else None,
            "file": f"/api/recordings/{self.id}/file",
            "page": f"/recordings/{self.id}",
        }
