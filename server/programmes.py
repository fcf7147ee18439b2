"""The broadcast's HLS programme: one process per live meeting that somebody watches over HLS.

The process is the recording's egress with `--stage` (server/recorder.py starts it): it joins the
meeting as a hidden seat that receives the stage as viewers do, decodes each stage track once,
composes and encodes once (H.264 + AAC), and writes 2 s HLS segments. The forwarding process
only forwards it one more copy of each stage track. It starts when a player first asks for a
live meeting's playlist (server/hls.py) and stops `hls_idle` seconds after the last ask, or
when the meeting ends; its playlist then ends (#EXT-X-ENDLIST) and stays as the VOD of what was
broadcast.

Files: <data_dir>/broadcasts/<meeting id>/<session id>/: hls/ (index.m3u8 and segments),
programme.mp4 once it stopped, egress.json and egress.log.
"""

import asyncio
import logging
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from aiohttp import web

from recording.compositor import HLS_DIRECTORY
from server.auth import Tokens
from server.config import Settings
from server.context import LIVE, SETTINGS, TOKENS
from server.periodic import repeating
from server.recorder import STANDBY, Egress, Standby

log = logging.getLogger(__name__)

ROOT = "broadcasts"
SESSION_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{4}")
MEETING_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
SWEEP_EVERY = 5.0  # seconds between looks for idle or finished programmes
RETRY_AFTER = 10.0  # a programme process that failed is not started again sooner


class Process(Protocol):
    """The programme process (server/recorder.py's Egress)."""

    @property
    def running(self) -> bool: ...

    async def stop(self, timeout: float = 30.0) -> int: ...  # noqa: ASYNC109 (the contract's)


async def _launch(
    settings: Settings, token: str, directory: Path, standby: Standby | None
) -> Process:
    canvas = (settings.hls_size, settings.hls_fps)
    return await Egress.launch(settings, token, directory, ["--stage"], canvas, standby)


@dataclass
class Session:
    """One run of a meeting's programme process and its files."""

    meeting_id: str
    id: str
    directory: Path
    process: Process | None = None
    wanted_at: float = 0.0  # loop time of the latest playlist request

    @property
    def hls(self) -> Path:
        return self.directory / HLS_DIRECTORY

    @property
    def live(self) -> bool:
        return self.process is not None and self.process.running


def meeting_root(settings: Settings, meeting_id: str) -> Path:
    return settings.data_dir / ROOT / meeting_id


class Programmes:
    """The programme processes of this server's live meetings (kept on the app)."""

    def __init__(
        self,
        settings: Settings,
        tokens: Tokens,
        is_live: Callable[[str], bool],
        standby: Standby | None = None,
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._is_live = is_live
        self._standby = standby  # a process started ahead, if any (server/recorder.py)
        self._running: dict[str, Session] = {}  # meeting id -> its programme
        self._starting: dict[str, asyncio.Future[Session | None]] = {}
        self._failed_at: dict[str, float] = {}  # meeting id -> loop time its process failed

    @property
    def enabled(self) -> bool:
        return self._settings.hls_idle > 0

    def running(self, meeting_id: str) -> Session | None:
        session = self._running.get(meeting_id)
        return session if session is not None and session.live else None

    async def want(self, meeting_id: str) -> Session | None:
        """The meeting's programme, started if the meeting is live and has none; None when
        it is not live (or HLS programmes are off, or its process just failed)."""
        loop = asyncio.get_running_loop()
        session = self.running(meeting_id)
        if session is not None:
            session.wanted_at = loop.time()
            return session
        if not self.enabled or not self._is_live(meeting_id):
            return None
        if loop.time() - self._failed_at.get(meeting_id, -RETRY_AFTER) < RETRY_AFTER:
            return None
        starting = self._starting.get(meeting_id)
        if starting is None:
            starting = self._starting[meeting_id] = asyncio.ensure_future(self._start(meeting_id))
            starting.add_done_callback(lambda _: self._starting.pop(meeting_id, None))
        return await asyncio.shield(starting)

    async def _start(self, meeting_id: str) -> Session | None:
        loop = asyncio.get_running_loop()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        session_id = f"{stamp}-{secrets.token_hex(2)}"
        directory = meeting_root(self._settings, meeting_id) / session_id
        session = Session(meeting_id, session_id, directory, wanted_at=loop.time())
        token = self._tokens.programme(meeting_id, session_id)
        try:
            session.process = await _launch(self._settings, token, directory, self._standby)
        except OSError as error:
            log.error("cannot start the programme of %s: %s", meeting_id, error)
            self._failed_at[meeting_id] = loop.time()
            return None
        log.info("broadcast programme %s of %s started", session_id, meeting_id)
        self._running[meeting_id] = session
        return session

    async def sweep(self) -> None:
        """Stop programmes nobody asked for in `hls_idle` seconds; forget finished ones."""
        loop = asyncio.get_running_loop()
        for meeting_id, session in list(self._running.items()):
            if not session.live:
                # It stopped by itself: the meeting ended or emptied, or it failed.
                del self._running[meeting_id]
                if loop.time() - session.wanted_at < RETRY_AFTER:
                    self._failed_at[meeting_id] = loop.time()
            elif loop.time() - session.wanted_at > self._settings.hls_idle:
                log.info("broadcast programme of %s idle: stopped", meeting_id)
                await self._stop(meeting_id)

    async def meeting_over(self, meeting_id: str) -> None:
        await self._stop(meeting_id)

    async def _stop(self, meeting_id: str) -> None:
        session = self._running.pop(meeting_id, None)
        if session is not None and session.process is not None:
            await session.process.stop()

    def sessions(self, meeting_id: str) -> list[Session]:
        """The meeting's programmes on disk that have a playlist, newest first."""
        if not MEETING_ID.fullmatch(meeting_id):
            return []
        root = meeting_root(self._settings, meeting_id)
        try:
            names = sorted((p.name for p in root.iterdir()), reverse=True)
        except OSError:
            return []
        found = []
        running = self.running(meeting_id)
        for name in names:
            if SESSION_ID.fullmatch(name):
                if running is not None and running.id == name:
                    found.append(running)
                else:
                    found.append(Session(meeting_id, name, root / name))
        return [s for s in found if s.live or (s.hls / "index.m3u8").is_file()]

    def session(self, meeting_id: str, session_id: str) -> Session | None:
        """One programme of the meeting by id (None: no such one)."""
        if not SESSION_ID.fullmatch(session_id) or not MEETING_ID.fullmatch(meeting_id):
            return None
        running = self.running(meeting_id)
        if running is not None and running.id == session_id:
            return running
        directory = meeting_root(self._settings, meeting_id) / session_id
        return Session(meeting_id, session_id, directory) if directory.is_dir() else None

    async def close(self) -> None:
        for meeting_id in list(self._running):
            await self._stop(meeting_id)


PROGRAMMES = web.AppKey("programmes", Programmes)


def setup_programmes(app: web.Application) -> None:
    """Keep the service on the app: idle programmes stopped, every one stopped at shutdown."""

    def is_live(meeting_id: str) -> bool:
        live = app.get(LIVE)
        return live is not None and live.live(meeting_id) is not None

    programmes = Programmes(app[SETTINGS], app[TOKENS], is_live, app.get(STANDBY))
    app[PROGRAMMES] = programmes

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        async with repeating(SWEEP_EVERY, programmes.sweep, "programme sweep"):
            yield
        await programmes.close()

    app.cleanup_ctx.append(lifetime)
