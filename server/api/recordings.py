"""/api/meetings/{id}/recording and /api/recordings: control, catalog and files of recordings."""

import re
import unicodedata
from urllib.parse import quote

from aiohttp import web

from rooms.errors import Invalid, NotFound, RoomError
from rooms.meeting import Meeting
from rooms.recordings import Recording
from rooms.roles import Permission
from server.api.bodies import json_object
from server.api.guard import require_admin, valid_id
from server.api.recording_guard import (
    require_controller,
    require_meeting_reader,
    require_reader,
)
from server.context import METRICS, STORE
from server.errors import Handler, error_response
from server.recordings import Recordings, programme_path, service

# Refusals of the recording's state: 409 Conflict (server/errors.py maps only generic codes).
CONFLICTS = frozenset({"already_recording", "not_recording", "not_live", "busy"})


def _conflicts(request: web.Request, error: RoomError) -> web.Response:
    """A refusal of the recording's state as 409 (503 when the recorder cannot start)."""
    if error.code not in CONFLICTS and error.code != "recording_failed":
        raise error
    request.app[METRICS].error(error.code)
    status = 409 if error.code in CONFLICTS else 503
    return error_response(status, error.code, error.message)


async def _meeting(request: web.Request) -> Meeting:
    meeting_id = valid_id(request.match_info["meeting_id"], "meeting")
    meeting = await request.app[STORE].get_meeting(meeting_id)
    if meeting is None:
        raise NotFound("meeting")
    return meeting


async def _recording(request: web.Request) -> tuple[Recordings, Recording]:
    recordings = service(request.app)
    rec = await recordings.get(valid_id(request.match_info["recording_id"], "recording"))
    return recordings, rec


async def start_recording(request: web.Request) -> web.Response:
    meeting = await _meeting(request)
    await require_controller(request, meeting.id)
    recordings = service(request.app)
    try:
        rec = await recordings.start(meeting)
    except RoomError as error:
        return _conflicts(request, error)
    return web.json_response(recordings.as_json(rec), status=201)


async def stop_recording(request: web.Request) -> web.Response:
    meeting = await _meeting(request)
    await require_controller(request, meeting.id)
    recordings = service(request.app)
    try:
        rec = await recordings.stop(meeting.id)
    except RoomError as error:
        return _conflicts(request, error)
    return web.json_response(recordings.as_json(rec))


async def list_recordings(request: web.Request) -> web.Response:
    meeting_id = request.query.get("meeting")
    if meeting_id is None:
        await require_admin(request)
    else:
        await require_meeting_reader(request, valid_id(meeting_id, "meeting"))
    recordings = service(request.app)
    found = await request.app[STORE].list_recordings(meeting_id)
    return web.json_response({"recordings": [recordings.as_json(rec) for rec in found]})


async def get_recording(request: web.Request) -> web.Response:
    recordings, rec = await _recording(request)
    await require_reader(request, rec)
    return web.json_response(recordings.as_json(rec))


async def recording_file(request: web.Request) -> web.StreamResponse:
    """The programme MP4; aiohttp's FileResponse answers Range requests (206) for seeking."""
    recordings, rec = await _recording(request)
    await require_reader(request, rec)
    path = programme_path(recordings.settings, rec)
    if not path.is_file():
        raise RoomError("not_found", "this recording has no programme yet")
    # Revalidated each time (ETag, Last-Modified): a re-render replaces the file.
    headers = {"Cache-Control": "private, no-cache"}
    if request.query.get("download") in ("1", "true", "yes"):
        headers["Content-Disposition"] = _attachment(rec)
    return web.FileResponse(path, headers=headers)


def _attachment(rec: Recording) -> str:
    day = rec.started_at.strftime("%Y-%m-%d")
    name = f"{rec.title or 'recording'} {day}.mp4"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "", ascii_name).strip() or f"recording {day}.mp4"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def change_recording(request: web.Request) -> web.Response:
    recordings, rec = await _recording(request)
    await require_controller(request, rec.meeting_id)
    body = await json_object(request)
    unknown = set(body) - {"keep"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    keep = body.get("keep")
    if not isinstance(keep, bool):
        raise Invalid("keep must be true or false")
    return web.json_response(recordings.as_json(await recordings.set_keep(rec.id, keep)))


async def delete_recording(request: web.Request) -> web.Response:
    recordings, rec = await _recording(request)
    await require_controller(request, rec.meeting_id, Permission.MANAGE_MEETING)
    try:
        await recordings.delete(rec.id)
    except RoomError as error:
        return _conflicts(request, error)
    return web.Response(status=204)


async def render_recording(request: web.Request) -> web.Response:
    recordings, rec = await _recording(request)
    await require_controller(request, rec.meeting_id)
    try:
        rendering = await recordings.render(rec.id)
    except RoomError as error:
        return _conflicts(request, error)
    return web.json_response(recordings.as_json(rendering), status=202)


_R = "/api/recordings/{recording_id}"

# Added to server/api/routes.py's table (method, path, handler, route name).
ROUTES: list[tuple[str, str, Handler, str]] = [
    ("POST", "/api/meetings/{meeting_id}/recording", start_recording, "api.meeting_recording"),
    ("DELETE", "/api/meetings/{meeting_id}/recording", stop_recording, "api.meeting_recording"),
    ("GET", "/api/recordings", list_recordings, "api.recordings"),
    ("GET", _R, get_recording, "api.recording"),
    ("PATCH", _R, change_recording, "api.recording"),
    ("DELETE", _R, delete_recording, "api.recording"),
    ("GET", _R + "/file", recording_file, "api.recording_file"),
    ("POST", _R + "/render", render_recording, "api.recording_render"),
]
