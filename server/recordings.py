"""The recordings service: start and stop a meeting's recording, finish or re-render its
programme, recover recordings cut by a crash, and delete expired ones (docs/api.md).

One recording at a time per meeting. The egress process (server/recorder.py) writes the tracks
and the live programme; when it stops cleanly its programme.mp4 is the recording. When it fails,
or after a crash, the programme is rendered again from the tracks in a background process
(recording.renderer.start_render), one render at a time, progress read from render.json.
A failure of either process shows on the recording and in the room, never stops the meeting.
"""

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import av
from aiohttp import web

from recording import quality
from recording.errors import RecordingError, without_paths
from recording.renderer import read_progress, start_render
from recording.timeline import FILE_NAME as TIMELINE
from recording.timeline import read_events
from rooms.errors import NotFound, RoomError
from rooms.meeting import Meeting, new_id, now
from rooms.recordings import ACTIVE, Recording, RecordingStatus
from rooms.store import Store
from server.api.recording_guard import require_reader
from server.auth import Tokens
from server.config import Settings
from server.context import LIVE, RECORDINGS, SETTINGS, STORE, TOKENS
from server.periodic import repeating
from server.recorder import STANDBY, Standby
from server.recorder import Egress as Recorder

log = logging.getLogger(__name__)

PROGRAMME = "programme.mp4"
EGRESS_STATE = "egress.json"
# The programme a re-render makes, at the live programme's preset: a recovery after a crash
# or a render after a short live programme runs at 3x real time or more on two cores
# (python -m bench.render_speed), so a two-hour meeting is ready well within the hour.
RENDER_ARGS = ("--size", "1280x720", "--preset", "superfast")
POLL = 0.5  # seconds between looks at a render's progress or an egress's health
FINISH_WAIT = 20.0  # at shutdown, how long finishing recordings may take
SWEEP_EVERY = 3600.0  # seconds between retention sweeps


class Egress(Protocol):
    """What the service needs of a running recording process (server/recorder.py)."""

    @property
    def running(self) -> bool: ...

    async def stop(self, timeout: float = 30.0) -> int: ...  # noqa: ASYNC109 (the contract's)


Announce = Callable[[str, dict[str, Any]], Awaitable[None]]


async def _start_egress(
    settings: Settings,
    tokens: Tokens,
    meeting_id: str,
    recording_id: str,
    directory: Path,
    standby: Standby | None,
) -> Egress:
    return await Recorder.start(settings, tokens, meeting_id, recording_id, directory, standby)


def recordings_root(settings: Settings) -> Path:
    return settings.data_dir / "recordings"


def directory_of(settings: Settings, recording_id: str) -> Path:
    return recordings_root(settings) / recording_id


def programme_path(settings: Settings, rec: Recording) -> Path:
    """Where a recording's playable MP4 is (it may not exist yet)."""
    return directory_of(settings, rec.id) / PROGRAMME


def probe(path: Path) -> tuple[float, int] | None:
    """(duration in seconds, size in bytes) of a playable MP4, else None."""
    try:
        size = path.stat().st_size
        with av.open(str(path)) as container:
            if container.duration:
                return container.duration / av.time_base, size
            spans = [
                float(s.duration * s.time_base)
                for s in container.streams
                if s.duration is not None and s.time_base is not None
            ]
            return max(spans, default=0.0), size
    except (OSError, av.FFmpegError):
        return None


def _timestamp(t: object) -> datetime | None:
    return datetime.fromtimestamp(t, UTC) if isinstance(t, int | float) else None


@dataclass
class _Active:
    """A recording whose egress runs."""

    recording: Recording
    egress: Egress
    notice: str
    watch: asyncio.Task[None] | None = None
    error: str = ""  # what the egress reports failing while it goes on (shown in the room)


class Recordings:
    """The recordings of this server's meetings (kept on the app as RECORDINGS)."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[], Store],
        tokens: Tokens,
        announce: Announce,
        is_live: Callable[[str], bool],
        standby: Standby | None = None,
    ) -> None:
        self._settings = settings
        self._store = store  # read late: the store opens in a cleanup context after setup
        self._tokens = tokens
        self._announce = announce
        self._is_live = is_live
        self._standby = standby  # a recording process started ahead, if any
        self._active: dict[str, _Active] = {}  # meeting id -> its running recording
        self._starting: set[str] = set()  # meeting ids whose egress is being started
        self._renders: dict[str, asyncio.Task[None]] = {}  # recording id -> its render
        self._fallback: set[str] = set()  # renders for quality: the live programme is kept
        self._watched: dict[str, str] = {}  # recording id -> meeting told of its render
        self._render_slot = asyncio.Semaphore(1)  # two renders would only share two cores
        self._changing = asyncio.Lock()  # read-modify-write of catalog rows
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def retention(self) -> timedelta | None:
        days = self._settings.recording_retention_days
        return timedelta(days=days) if days > 0 else None

    def as_json(self, recording: Recording) -> dict[str, Any]:
        """The REST JSON of a recording, with its quality check (None: not checked)."""
        found = None
        if recording.status not in ACTIVE or recording.status is RecordingStatus.RENDERING:
            found = quality.read(self.directory(recording.id))
        return {
            **recording.as_dict(self.retention),
            "quality": found.as_dict() if found is not None else None,
        }

    def state(self, meeting_id: str) -> dict[str, Any]:
        active = self._active.get(meeting_id)
        if active is None:
            return {"on": False, "id": None, "notice": "", "error": None}
        error = active.error or None
        return {"on": True, "id": active.recording.id, "notice": active.notice, "error": error}

    def directory(self, recording_id: str) -> Path:
        return directory_of(self._settings, recording_id)

    # start and stop

    async def start(self, meeting: Meeting) -> Recording:
        """Start recording a live meeting; `already_recording`, `not_live`, `recording_failed`."""
        if meeting.id in self._active or meeting.id in self._starting:
            raise RoomError("already_recording", "this meeting is already being recorded")
        if not self._is_live(meeting.id):
            raise RoomError("not_live", "nobody is in this meeting: record it once it has begun")
        self._starting.add(meeting.id)
        try:
            rec = Recording(
                id=new_id(),
                meeting_id=meeting.id,
                title=meeting.title,
                status=RecordingStatus.RECORDING,
                started_at=now(),
                stopped_at=None,
            )
            directory = self.directory(rec.id)
            try:
                directory.mkdir(parents=True)
            except OSError as error:
                # A row says it failed and why (no server path): the operator sees it too.
                reason = without_paths(f"cannot create the recording's directory: {error}")
                log.error("recording %s: %s (%s)", rec.id, reason, directory)
                failed = replace(rec, status=RecordingStatus.FAILED, stopped_at=now(), error=reason)
                await self._store().add_recording(failed)
                raise RoomError("recording_failed", reason) from None
            await self._store().add_recording(rec)
            try:
                egress = await _start_egress(
                    self._settings, self._tokens, meeting.id, rec.id, directory, self._standby
                )
            except Exception as error:
                log.exception("recording %s: the egress did not start", rec.id)
                reason = without_paths(f"the recording process did not start: {error}")
                await self._change(rec.id, status=RecordingStatus.FAILED, error=reason)
                raise RoomError("recording_failed", reason) from None
            active = _Active(rec, egress, meeting.settings.recording_notice)
            self._active[meeting.id] = active
        finally:
            self._starting.discard(meeting.id)
        active.watch = self._spawn(self._watch(meeting.id, active))
        log.info("recording %s of meeting %s started", rec.id, meeting.id)
        await self._tell(meeting.id)
        return rec

    async def stop(self, meeting_id: str) -> Recording:
        """Stop a meeting's recording (`not_recording` if none); the programme is finished in
        the background: the recording is `finishing`, then `ready` (or `rendering`)."""
        return await self._stop(meeting_id, "")

    async def meeting_over(self, meeting_id: str) -> None:
        with contextlib.suppress(RoomError):
            await self._stop(meeting_id, "")

    async def _stop(self, meeting_id: str, error: str) -> Recording:
        active = self._active.pop(meeting_id, None)
        if active is None:
            raise RoomError("not_recording", "this meeting is not being recorded")
        if active.watch is not None and active.watch is not asyncio.current_task():
            active.watch.cancel()
        if active.error and active.error not in error:  # what failed on the way, too
            error = "; ".join(e for e in (active.error, error) if e)
        rec = await self._change(
            active.recording.id, status=RecordingStatus.FINISHING, stopped_at=now(), error=error
        )
        log.info("recording %s stopped%s", active.recording.id, f": {error}" if error else "")
        await self._tell(meeting_id, error or None)
        self._spawn(self._finish(active, failed=bool(error)))
        return rec or replace(active.recording, status=RecordingStatus.FINISHING)

    async def _watch(self, meeting_id: str, active: _Active) -> None:
        """Tell the room and the catalog what the egress reports failing (a track, the
        programme, the disk) as it goes on; stop the recording, with its error, when the
        egress fails or dies."""
        while True:
            await asyncio.sleep(POLL)
            state = self._egress_state(active.recording.id)
            failed = state.get("state") == "failed"
            if not failed and active.egress.running:
                problem = without_paths(str(state.get("error") or ""))
                if problem and problem != active.error and self._active.get(meeting_id) is active:
                    active.error = problem
                    log.warning("recording %s: %s", active.recording.id, problem)
                    await self._change(active.recording.id, error=problem)
                    await self._tell(meeting_id, problem)
                continue
            error = ""
            if failed or state.get("state") != "done":  # "done": it ended with the meeting
                reason = str(state.get("error") or "") or "the recording process stopped"
                error = without_paths(f"recording stopped: {reason}")
            if self._active.get(meeting_id) is active:
                await self._stop(meeting_id, error)
            return

    def _recording_problems(self, recording_id: str) -> str:
        """What the egress reported failing while recording (egress.json), without paths."""
        return without_paths(str(self._egress_state(recording_id).get("error") or ""))

    def _egress_state(self, recording_id: str) -> dict[str, Any]:
        try:
            data = json.loads((self.directory(recording_id) / EGRESS_STATE).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    async def _finish(self, active: _Active, *, failed: bool) -> None:
        """Wait for the egress's programme; render from the tracks when there is none."""
        rid = active.recording.id
        try:
            code = await active.egress.stop()
        except Exception as error:
            log.exception("recording %s: stopping the egress failed", rid)
            code, failed = -1, True
            await self._change(rid, error=f"the recording process failed: {error}")
        if code != 0:
            failed = True
        found = None if failed else await asyncio.to_thread(probe, self.directory(rid) / PROGRAMME)
        if found is not None:
            checked = await asyncio.to_thread(self._check, rid)
            if checked is not None and not checked.short:
                duration, size = found
                await self._change(rid, status=RecordingStatus.READY, duration=duration, size=size)
                log.info("recording %s ready: %.1f s, %d bytes", rid, duration, size)
                return
            self._fallback.add(rid)  # should the render fail, the live programme stays
            log.info("recording %s: the live programme fell short; rendering from the tracks", rid)
        else:
            log.info("recording %s: no programme from the egress; rendering from the tracks", rid)
        self._watched[rid] = active.recording.meeting_id  # the room sees the render's progress
        await self._queue_render(rid, keep_error=True)

    def _check(self, rid: str) -> quality.Quality | None:
        """The live programme against its tracks (kept in quality.json); None when it cannot
        be vouched for (no card log: render from the tracks)."""
        directory = self.directory(rid)
        try:
            found = quality.check(directory)
        except (RecordingError, OSError, av.FFmpegError) as error:
            log.warning("recording %s: the programme was not checked: %s", rid, error)
            return None
        found = replace(found, re_rendered=found.short)
        log.info(
            "recording %s: %.1f s (%.1f %%) shown without a picture",
            rid,
            found.seconds,
            100 * found.share,
        )
        try:
            quality.write(directory, found)
        except OSError as error:
            log.warning("recording %s: cannot keep the quality check: %s", rid, error)
        return found

    # re-render

    async def render(self, recording_id: str) -> Recording:
        """Render the programme again from the tracks (202 in the API); `busy` while the
        recording runs, finishes or renders."""
        rec = await self.get(recording_id)
        if rec.status in ACTIVE:
            raise RoomError("busy", f"the recording is {rec.status.value}; try again when it ends")
        rendering = await self._queue_render(rec.id, keep_error=False)
        if rendering is None:
            raise NotFound("recording")
        return rendering

    async def _queue_render(self, recording_id: str, *, keep_error: bool) -> Recording | None:
        fields: dict[str, Any] = {"status": RecordingStatus.RENDERING, "progress": 0}
        if not keep_error:  # what was lost while recording stays said through any render
            fields["error"] = self._recording_problems(recording_id)
        rec = await self._change(recording_id, **fields)
        if rec is not None:
            self._renders[recording_id] = self._spawn(self._render(recording_id))
        return rec

    async def _render(self, rid: str) -> None:
        directory = self.directory(rid)
        await self._tell_render(rid, 0)
        try:
            async with self._render_slot:
                result, code = await self._run_render(rid, directory)
        finally:
            self._renders.pop(rid, None)
        try:
            await self._rendered(rid, directory, result, code)
        finally:
            await self._tell_render(rid, None)

    async def _tell_render(self, rid: str, percent: int | None) -> None:
        """The room of a recording just stopped sees its render: `rendering` is the percent
        done, then None with the recording's error (if any) when it is over."""
        meeting_id = self._watched.get(rid) if percent is not None else self._watched.pop(rid, "")
        if not meeting_id or meeting_id in self._active or not self._is_live(meeting_id):
            return
        rec = await self._store().get_recording(rid)
        error = rec.error if rec is not None and percent is None and rec.error else None
        state = {"on": False, "id": rid, "notice": "", "error": error, "rendering": percent}
        try:
            await self._announce(meeting_id, state)
        except Exception:  # the room may be closing: the catalog still tells the truth
            log.exception("could not announce the render of %s", rid)

    async def _rendered(
        self, rid: str, directory: Path, result: dict[str, Any], code: int | None
    ) -> None:
        """The catalog after a render: ready, or failed with the reason."""
        found = None
        if result.get("state") == "done":
            found = await asyncio.to_thread(probe, directory / PROGRAMME)
        if found is not None:
            self._fallback.discard(rid)
            duration, size = found
            await self._change(
                rid, status=RecordingStatus.READY, progress=None, duration=duration, size=size
            )
            log.info("recording %s rendered: %.1f s, %d bytes", rid, duration, size)
            return
        reason = str(result.get("error") or "") or f"the render stopped (exit status {code})"
        reason = without_paths(reason)
        if rid in self._fallback:
            self._fallback.discard(rid)
            live = await asyncio.to_thread(probe, directory / PROGRAMME)
            if live is not None:  # the live programme, short as it is, is better than none
                before = await self._store().get_recording(rid)
                note = f"the render from the tracks failed ({reason}): the live programme is kept"
                if before is not None and before.error:
                    note = f"{before.error}; {note}"
                await self._change(
                    rid,
                    status=RecordingStatus.READY,
                    progress=None,
                    duration=live[0],
                    size=live[1],
                    error=note,
                )
                log.warning("recording %s: %s", rid, note)
                return
        before = await self._store().get_recording(rid)
        if before is not None and before.error:  # keep what stopped the recording, too
            reason = f"{before.error}; {reason}"
        await self._change(rid, status=RecordingStatus.FAILED, progress=None, error=reason)
        log.warning("recording %s: render failed: %s", rid, reason)

    async def _run_render(self, rid: str, directory: Path) -> tuple[dict[str, Any], int | None]:
        if not (directory / TIMELINE).is_file():
            return {"state": "failed", "error": "the recording has no timeline or tracks"}, None
        with contextlib.suppress(FileNotFoundError):
            (directory / "render.json").unlink()
        try:
            process = start_render(directory, *RENDER_ARGS)
        except OSError as error:
            return {"state": "failed", "error": f"cannot start the render: {error}"}, None
        try:
            shown = 0
            while process.poll() is None:
                await asyncio.sleep(POLL)
                percent = read_progress(directory).get("percent")
                if isinstance(percent, int) and percent != shown and percent < 100:
                    shown = percent
                    if await self._change(rid, progress=percent) is None:
                        break  # deleted meanwhile
                    await self._tell_render(rid, percent)
        finally:
            await _end_process(process)
        return read_progress(directory), process.returncode

    # the catalog

    async def get(self, recording_id: str) -> Recording:
        rec = await self._store().get_recording(recording_id)
        if rec is None:
            raise NotFound("recording")
        return rec

    async def set_keep(self, recording_id: str, keep: bool) -> Recording:
        rec = await self._change(recording_id, keep=keep)
        if rec is None:
            raise NotFound("recording")
        return rec

    async def delete(self, recording_id: str) -> None:
        """Delete a recording and its files; `busy` while it records or finishes."""
        rec = await self.get(recording_id)
        if rec.status in (RecordingStatus.RECORDING, RecordingStatus.FINISHING):
            raise RoomError("busy", "stop the recording before deleting it")
        await self._remove(rec.id)

    async def _remove(self, recording_id: str) -> None:
        render = self._renders.pop(recording_id, None)
        if render is not None:
            render.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await render
        async with self._changing:
            await self._store().delete_recording(recording_id)
        await asyncio.to_thread(shutil.rmtree, self.directory(recording_id), True)

    async def _change(self, recording_id: str, **fields: Any) -> Recording | None:
        """Change some fields of a catalog row; None if it is gone."""
        async with self._changing:
            store = self._store()
            rec = await store.get_recording(recording_id)
            if rec is None:
                return None
            changed = replace(rec, **fields)
            await store.update_recording(changed)
            return changed

    # retention, recovery, shutdown

    async def expire(self, at: datetime | None = None) -> list[str]:
        """Delete recordings past retention that are not kept; returns their ids."""
        retention = self.retention
        if retention is None:
            return []
        at = at or now()
        gone = []
        for rec in await self._store().list_recordings():
            expires = rec.expires_at(retention)
            if rec.status not in ACTIVE and expires is not None and expires <= at:
                await self._remove(rec.id)
                gone.append(rec.id)
                log.info("recording %s of meeting %s expired", rec.id, rec.meeting_id)
        return gone

    async def recover(self) -> list[str]:
        """At startup: recordings a crash cut short (a catalog row still active, or a
        directory whose timeline never says `recording_stopped`) are rendered from their
        tracks. Returns their ids."""
        store = self._store()
        known = {rec.id: rec for rec in await store.list_recordings()}
        found = []
        for rec in known.values():
            if rec.status in ACTIVE:
                stopped = rec.stopped_at or self._last_event(rec.id) or now()
                await self._change(rec.id, stopped_at=stopped)
                await self._queue_render(rec.id, keep_error=False)
                found.append(rec.id)
        root = recordings_root(self._settings)
        directories = sorted(root.iterdir()) if root.is_dir() else []
        for directory in directories:
            if directory.name in known or not directory.is_dir() or not _plain(directory.name):
                continue
            orphan = self._orphan(directory)
            if orphan is not None:
                await store.add_recording(orphan)
                await self._queue_render(orphan.id, keep_error=False)
                found.append(orphan.id)
        if found:
            log.info("recovering %d recording(s) cut short: %s", len(found), ", ".join(found))
        return found

    def _last_event(self, recording_id: str) -> datetime | None:
        events = read_events(self.directory(recording_id) / TIMELINE)
        return _timestamp(events[-1]["t"]) if events else None

    def _orphan(self, directory: Path) -> Recording | None:
        """A catalog row for a directory the catalog does not know, if it was cut short."""
        events = read_events(directory / TIMELINE)
        started = next((e for e in events if e["event"] == "recording_started"), None)
        if started is None or any(e["event"] == "recording_stopped" for e in events):
            return None
        began = _timestamp(started["t"]) or now()
        return Recording(
            id=directory.name,
            meeting_id=str(started.get("meeting") or ""),
            title=str(started.get("title") or ""),
            status=RecordingStatus.RENDERING,
            started_at=began,
            stopped_at=_timestamp(events[-1]["t"]) or began,
        )

    async def close(self) -> None:
        """At shutdown: stop every recording and wait (a while) for their programmes; renders
        are ended and left `rendering`, which the next start recovers."""
        for meeting_id in list(self._active):
            with contextlib.suppress(Exception):
                await self._stop(meeting_id, "")
        for rid, task in list(self._renders.items()):
            if not task.done():
                task.cancel()
            self._renders.pop(rid, None)
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=FINISH_WAIT)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _tell(self, meeting_id: str, error: str | None = None) -> None:
        state = {**self.state(meeting_id), "error": error}
        try:
            await self._announce(meeting_id, state)
        except Exception:  # the room may be closing: the catalog still tells the truth
            log.exception("could not announce the recording state of %s", meeting_id)

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("recording task failed", exc_info=task.exception())


async def _end_process(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 5)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)
        except asyncio.CancelledError:
            # Cancelled at shutdown: the render must not outlive the server; a killed process
            # is reaped at once.
            process.kill()
            process.wait()
            raise


def _plain(name: str) -> bool:
    return name.isascii() and name.isalnum()


def service(app: web.Application) -> Recordings:
    """The app's recordings service."""
    found = app[RECORDINGS]
    assert isinstance(found, Recordings)
    return found


async def readable(request: web.Request, rec: Recording) -> bool:
    """Whether the request may watch `rec`: public meetings' recordings are public;
    invite-only ones are for that meeting's roster (invite token) and the admin."""
    try:
        await require_reader(request, rec)
    except RoomError:
        return False
    return True


def setup_recordings(app: web.Application) -> None:
    """Keep the service on the app (after setup_signaling): recovery at start, retention
    sweeps, every recording stopped at shutdown."""
    from server.signaling import NAMESPACE  # the signaling stack is not needed by the CLI

    settings = app[SETTINGS]
    namespace = app[NAMESPACE]

    async def announce(meeting_id: str, state: dict[str, Any]) -> None:
        await namespace.emit("recording", state, room=f"m:{meeting_id}")

    def is_live(meeting_id: str) -> bool:
        live = app.get(LIVE)
        return live is not None and live.live(meeting_id) is not None

    standby = Standby(settings) if settings.egress_standby else None
    if standby is not None:
        app[STANDBY] = standby
    recordings = Recordings(settings, lambda: app[STORE], app[TOKENS], announce, is_live, standby)
    app[RECORDINGS] = recordings
    namespace.recordings = recordings

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        if standby is not None:
            standby.warm()
        await recordings.recover()
        with contextlib.suppress(OSError):  # a sweep that fails now is tried again later
            await recordings.expire()
        # One failed sweep (a busy disk) must not end retention for good.
        async with repeating(SWEEP_EVERY, recordings.expire, "retention sweep"):
            yield
        await recordings.close()
        if standby is not None:
            await standby.close()

    app.cleanup_ctx.append(lifetime)
