"""Mounts web/'s pages, handing them the store, tokens and settings through web's Backend, and
the recordings catalog through web's RecordingsBackend."""

import asyncio
import os
from typing import Any

from aiohttp import web

from recording.chapters import chapters
from rooms.attendance import Stay
from rooms.meeting import Meeting
from rooms.recordings import Recording
from rooms.roster import RosterEntry
from server.auth import BadToken, same_secret
from server.context import LIVE, RECORDINGS, SETTINGS, STORE, TOKENS
from server.recordings import programme_path, readable
from web.assets import find_assets
from web.backend import Claim
from web.pages import setup_web
from web.recording_pages import setup_recording_pages


class ServerBackend:
    """web.backend.Backend over the app's parts; the store is read when a page asks, since
    it is opened at start-up (cleanup_ctx), after the routes are set up."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    @property
    def base_url(self) -> str:
        return self._app[SETTINGS].base_url

    def api_key_matches(self, key: str) -> bool:
        return same_secret(key, self._app[SETTINGS].api_key)

    def new_admin_session(self) -> str:
        return self._app[TOKENS].admin_session()

    def is_admin_session(self, value: str) -> bool:
        try:
            return self._app[TOKENS].check(value).kind == "admin"
        except BadToken:
            return False

    async def end_admin_session(self, value: str) -> None:
        ended = self._app[TOKENS].end_session(value)
        if ended is not None:
            await self._app[STORE].end_session(*ended)

    def check_token(self, token: str) -> Claim:
        grant = self._app[TOKENS].check(token)
        return Claim(
            kind=grant.kind, meeting_id=grant.meeting_id, entry_id=grant.entry_id, role=grant.role
        )

    def invite_token(self, meeting_id: str, entry_id: str) -> str:
        return self._app[TOKENS].invite(meeting_id, entry_id)

    async def meetings(self) -> list[Meeting]:
        return await self._app[STORE].list_meetings()

    async def meeting(self, meeting_id: str) -> Meeting | None:
        return await self._app[STORE].get_meeting(meeting_id)

    async def roster(self, meeting_id: str) -> list[RosterEntry]:
        return await self._app[STORE].list_roster(meeting_id)

    async def entry(self, meeting_id: str, entry_id: str) -> RosterEntry | None:
        return await self._app[STORE].get_entry(meeting_id, entry_id)

    async def attendance(self, meeting_id: str) -> list[Stay]:
        return await self._app[STORE].list_attendance(meeting_id)

    def live(self, meeting_id: str) -> dict[str, Any] | None:
        rooms = self._app.get(LIVE)
        return rooms.live(meeting_id) if rooms is not None else None


class ServerRecordings:
    """web.recording_pages.RecordingsBackend over the store and server/recordings.py."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def recording(self, recording_id: str) -> Recording | None:
        return await self._app[STORE].get_recording(recording_id)

    async def recordings(self, meeting_id: str | None = None) -> list[Recording]:
        return await self._app[STORE].list_recordings(meeting_id)

    async def readable(self, request: web.Request, recording: Recording) -> bool:
        return await readable(request, recording)

    async def chapters(self, recording: Recording) -> list[dict[str, Any]]:
        directory = programme_path(self._app[SETTINGS], recording).parent
        found = await asyncio.to_thread(chapters, directory)
        return [chapter.as_dict() for chapter in found]

    def as_json(self, recording: Recording) -> dict[str, Any]:
        service = self._app.get(RECORDINGS)
        return service.as_json(recording) if service is not None else recording.as_dict()


def setup_pages(app: web.Application) -> None:
    settings = app[SETTINGS]
    assets_dir = settings.extra.get("assets_dir") or os.environ.get("VECHE_ASSETS_DIR")
    setup_web(app, ServerBackend(app), find_assets(assets_dir))
    setup_recording_pages(app, ServerRecordings(app))
