"""The embedded default store: one SQLite file, driven off the event loop by aiosqlite."""

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from rooms.attendance import Stay
from rooms.meeting import Meeting, MeetingSettings, Visibility
from rooms.recordings import Recording, RecordingStatus
from rooms.roles import Role
from rooms.roster import RosterEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS meetings (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    visibility TEXT NOT NULL,
    settings TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS roster (
    id TEXT NOT NULL,
    meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    school TEXT NOT NULL,
    region TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (meeting_id, id)
);
CREATE TABLE IF NOT EXISTS attendance (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_id TEXT NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    person TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    school TEXT NOT NULL,
    region TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    left_at TEXT
);
CREATE INDEX IF NOT EXISTS attendance_meeting ON attendance(meeting_id, joined_at);
-- No foreign key to meetings: a recording outlives its meeting's deletion until retention.
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    meeting_id TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    stopped_at TEXT,
    duration REAL NOT NULL,
    size INTEGER NOT NULL,
    progress INTEGER,
    error TEXT NOT NULL,
    keep INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_meeting ON recordings(meeting_id, started_at);
-- Admin sessions signed out before they expire (their tokens stay valid JWTs until then).
CREATE TABLE IF NOT EXISTS ended_sessions (
    id TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);
"""


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class SqliteStore:
    """Store in `path`; open with `await SqliteStore.open(path)`, close with `close()`."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> "SqliteStore":
        path.parent.mkdir(parents=True, exist_ok=True)
        # The database holds names, schools and attendance: readable by the server's user
        # only. SQLite gives its -wal and -shm files the database file's mode.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        # Autocommit: every statement is its own transaction (no method needs more), so a write
        # is one trip to aiosqlite's thread instead of two (execute, then commit). Each trip
        # waits for the event loop, which during a wave of joins is busy.
        db = await aiosqlite.connect(path, isolation_level=None)
        db.row_factory = aiosqlite.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.executescript(SCHEMA)
        return cls(db)

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        cursor = await self._db.execute(sql, params)  # committed (autocommit)
        return cursor.rowcount

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[aiosqlite.Row]:
        # One trip to the thread (a cursor's execute, fetchall and close would be three).
        return list(await self._db.execute_fetchall(sql, params))

    # meetings

    async def create_meeting(self, meeting: Meeting) -> None:
        await self._write(
            "INSERT INTO meetings VALUES (?, ?, ?, ?, ?, ?)",
            (
                meeting.id,
                meeting.title,
                meeting.starts_at.isoformat(),
                meeting.visibility.value,
                json.dumps(meeting.settings.as_dict()),
                meeting.created_at.isoformat(),
            ),
        )

    async def get_meeting(self, meeting_id: str) -> Meeting | None:
        rows = await self._rows("SELECT * FROM meetings WHERE id = ?", (meeting_id,))
        return _meeting(rows[0]) if rows else None

    async def list_meetings(self) -> list[Meeting]:
        rows = await self._rows("SELECT * FROM meetings ORDER BY starts_at DESC, id", ())
        return [_meeting(row) for row in rows]

    async def update_meeting(self, meeting: Meeting) -> None:
        await self._write(
            "UPDATE meetings SET title = ?, starts_at = ?, visibility = ?, settings = ? "
            "WHERE id = ?",
            (
                meeting.title,
                meeting.starts_at.isoformat(),
                meeting.visibility.value,
                json.dumps(meeting.settings.as_dict()),
                meeting.id,
            ),
        )

    async def delete_meeting(self, meeting_id: str) -> bool:
        return await self._write("DELETE FROM meetings WHERE id = ?", (meeting_id,)) > 0

    # roster

    async def add_entry(self, entry: RosterEntry) -> None:
        await self._write(
            "INSERT INTO roster VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                entry.meeting_id,
                entry.name,
                entry.role.value,
                entry.school,
                entry.region,
                entry.created_at.isoformat(),
            ),
        )

    async def get_entry(self, meeting_id: str, entry_id: str) -> RosterEntry | None:
        rows = await self._rows(
            "SELECT * FROM roster WHERE meeting_id = ? AND id = ?", (meeting_id, entry_id)
        )
        return _entry(rows[0]) if rows else None

    async def list_roster(self, meeting_id: str) -> list[RosterEntry]:
        rows = await self._rows(
            "SELECT * FROM roster WHERE meeting_id = ? ORDER BY created_at, name", (meeting_id,)
        )
        return [_entry(row) for row in rows]

    async def update_entry(self, entry: RosterEntry) -> None:
        await self._write(
            "UPDATE roster SET name = ?, role = ?, school = ?, region = ? "
            "WHERE meeting_id = ? AND id = ?",
            (entry.name, entry.role.value, entry.school, entry.region, entry.meeting_id, entry.id),
        )

    async def delete_entry(self, meeting_id: str, entry_id: str) -> bool:
        count = await self._write(
            "DELETE FROM roster WHERE meeting_id = ? AND id = ?", (meeting_id, entry_id)
        )
        return count > 0

    # attendance

    async def record_join(
        self,
        meeting_id: str,
        person: str,
        name: str,
        role: str,
        school: str,
        region: str,
        at: datetime,
    ) -> int:
        cursor = await self._db.execute(
            "INSERT INTO attendance (meeting_id, person, name, role, school, region, joined_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (meeting_id, person, name, role, school, region, at.isoformat()),
        )  # committed (autocommit)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def record_leave(self, stay_id: int, at: datetime) -> None:
        await self._write(
            "UPDATE attendance SET left_at = ? WHERE id = ? AND left_at IS NULL",
            (at.isoformat(), stay_id),
        )

    async def list_attendance(self, meeting_id: str) -> list[Stay]:
        rows = await self._rows(
            "SELECT * FROM attendance WHERE meeting_id = ? ORDER BY joined_at, id", (meeting_id,)
        )
        return [_stay(row) for row in rows]

    async def close_open_stays(self, at: datetime) -> int:
        # After a crash nobody is in any room; close what the crash left open.
        return await self._write(
            "UPDATE attendance SET left_at = ? WHERE left_at IS NULL", (at.isoformat(),)
        )

    # recordings

    async def add_recording(self, recording: Recording) -> None:
        await self._write(
            "INSERT INTO recordings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (recording.id, recording.meeting_id, recording.title, *_recording_fields(recording)),
        )

    async def get_recording(self, recording_id: str) -> Recording | None:
        rows = await self._rows("SELECT * FROM recordings WHERE id = ?", (recording_id,))
        return _recording(rows[0]) if rows else None

    async def list_recordings(self, meeting_id: str | None = None) -> list[Recording]:
        if meeting_id is None:
            rows = await self._rows("SELECT * FROM recordings ORDER BY started_at DESC, id", ())
        else:
            rows = await self._rows(
                "SELECT * FROM recordings WHERE meeting_id = ? ORDER BY started_at DESC, id",
                (meeting_id,),
            )
        return [_recording(row) for row in rows]

    async def update_recording(self, recording: Recording) -> None:
        await self._write(
            "UPDATE recordings SET status = ?, started_at = ?, stopped_at = ?, duration = ?, "
            "size = ?, progress = ?, error = ?, keep = ? WHERE id = ?",
            (*_recording_fields(recording), recording.id),
        )

    async def delete_recording(self, recording_id: str) -> bool:
        return await self._write("DELETE FROM recordings WHERE id = ?", (recording_id,)) > 0

    # admin sessions

    async def end_session(self, session_id: str, expires_at: datetime) -> None:
        await self._write(
            "INSERT OR IGNORE INTO ended_sessions VALUES (?, ?)",
            (session_id, expires_at.isoformat()),
        )

    async def ended_sessions(self, at: datetime) -> list[str]:
        await self._write("DELETE FROM ended_sessions WHERE expires_at <= ?", (at.isoformat(),))
        rows = await self._rows("SELECT id FROM ended_sessions", ())
        return [str(row["id"]) for row in rows]


def _recording_fields(recording: Recording) -> tuple[Any, ...]:
    # The columns after id, meeting_id and title, in table order.
    return (
        recording.status.value,
        recording.started_at.isoformat(),
        recording.stopped_at.isoformat() if recording.stopped_at else None,
        recording.duration,
        recording.size,
        recording.progress,
        recording.error,
        int(recording.keep),
    )


def _recording(row: aiosqlite.Row) -> Recording:
    return Recording(
        id=row["id"],
        meeting_id=row["meeting_id"],
        title=row["title"],
        status=RecordingStatus(row["status"]),
        started_at=_time(row["started_at"]),
        stopped_at=_time(row["stopped_at"]) if row["stopped_at"] else None,
        duration=row["duration"],
        size=row["size"],
        progress=row["progress"],
        error=row["error"],
        keep=bool(row["keep"]),
    )


def _meeting(row: aiosqlite.Row) -> Meeting:
    settings = json.loads(row["settings"])
    return Meeting(
        id=row["id"],
        title=row["title"],
        starts_at=_time(row["starts_at"]),
        visibility=Visibility(row["visibility"]),
        settings=MeetingSettings(**settings),
        created_at=_time(row["created_at"]),
    )


def _entry(row: aiosqlite.Row) -> RosterEntry:
    return RosterEntry(
        id=row["id"],
        meeting_id=row["meeting_id"],
        name=row["name"],
        role=Role(row["role"]),
        school=row["school"],
        region=row["region"],
        created_at=_time(row["created_at"]),
    )


def _stay(row: aiosqlite.Row) -> Stay:
    return Stay(
        id=row["id"],
        meeting_id=row["meeting_id"],
        person=row["person"],
        name=row["name"],
        role=row["role"],
        school=row["school"],
        region=row["region"],
        joined_at=_time(row["joined_at"]),
        left_at=_time(row["left_at"]) if row["left_at"] else None,
    )
