"""The broadcast's programme as HLS (docs/broadcast.md): a meeting's playlist and segments.

While the meeting is live: its broadcast programme (server/programmes.py, the stage), started by
the first request and kept going while players ask; the first request waits for the first
segment. Otherwise: a recording being made (its live window), else the latest programme or
recording that has a playlist (VOD).

`GET /hls/{meeting_id}/index.m3u8` and `GET /hls/{meeting_id}/segment-NNNNN.ts`. Who may watch:
as the viewer page, anyone for a public meeting open to viewers; otherwise a token of that
meeting (`?token=`, as a player cannot send headers, or `Authorization: Bearer`) or the admin.
A recording's or an old programme's VOD is a recording's media: it takes the recording rule
(server/api/recording_guard.py), as the MP4 and the playback page do; a guest's link to watch
the live broadcast does not open it.
The playlist is served with its segment URIs rewritten to carry the programme's or recording's
id and the token (`segment-00003.ts?prg=<id>&token=<token>`, `?rec=` for a recording): every
player, hls.js or a native one, then fetches segments with the same rights, and a segment URL
names one file for good, so segments may be cached as immutable while the playlist is not
cached at all.
"""

import asyncio
import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from recording.compositor import HLS_DIRECTORY
from recording.hls import PLAYLIST
from rooms.errors import Forbidden
from rooms.meeting import Meeting
from rooms.recordings import Recording, RecordingStatus
from server.api.recording_guard import credentials, require_meeting_reader, require_reader
from server.config import Settings
from server.context import SETTINGS, STORE
from server.errors import error_response
from server.programmes import PROGRAMMES, Session
from server.recordings import directory_of

# Only names recording/hls.py writes: nothing else in a programme's directory is reachable.
SEGMENT_NAME = re.compile(r"segment-(\d{5,9})\.ts")
RECORDING_ID = re.compile(r"[A-Za-z0-9]{1,64}")
# The egress is still writing these: their playlist is the live one.
LIVE = frozenset({RecordingStatus.RECORDING, RecordingStatus.FINISHING})
PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
SEGMENT_TYPE = "video/mp2t"
IMMUTABLE = "max-age=31536000, immutable"
ENDLIST = "#EXT-X-ENDLIST"
# The live playlist of a programme whose first segment is not complete yet.
STARTING = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
# A programme that has just started: its first playlist request waits this long at most for
# the first segment (the process joins in 1-2 s, a segment is 2 s), so that a player starts
# playing rather than meeting an empty playlist. Below hls.js's 10 s manifest timeout.
FIRST_SEGMENT_WAIT = 8.0


@dataclass(frozen=True)
class Programme:
    """What a meeting's HLS players get: a broadcast programme ("prg") or a recording's
    ("rec"), its id, where its files are, and whether it is still being written."""

    kind: str
    id: str
    directory: Path
    live: bool
    recording: Recording | None = None  # of a "rec"

    @classmethod
    def of_recording(cls, settings: Settings, rec: Recording) -> "Programme":
        directory = directory_of(settings, rec.id) / HLS_DIRECTORY
        return cls("rec", rec.id, directory, rec.status in LIVE, rec)

    @classmethod
    def of_session(cls, session: Session) -> "Programme":
        return cls("prg", session.id, session.hls, session.live)


async def _may_replay(request: web.Request, meeting: Meeting, programme: Programme) -> None:
    """A programme no longer being made is a recording of the meeting: whoever may watch the
    meeting's recordings may replay it, nobody else (401/403, as for the MP4)."""
    if programme.live:
        return
    if programme.recording is not None:
        await require_reader(request, programme.recording)
    else:
        await require_meeting_reader(request, meeting.id)


def _missing(message: str, code: str = "not_found") -> web.Response:
    return error_response(404, code, message)


async def _meeting(request: web.Request) -> Meeting | web.Response:
    """The meeting of the URL if the request may watch it; a 404 response if it is unknown.
    Raises 401/403 (RoomError, made JSON by the error middleware) for a missing or foreign token."""
    meeting = await request.app[STORE].get_meeting(request.match_info["meeting_id"])
    if meeting is None:
        return _missing("meeting not found")
    if meeting.public and meeting.settings.viewers_allowed:
        return meeting
    found = await credentials(request)
    if not found.admin and found.meeting_id != meeting.id:
        raise Forbidden("this broadcast is for the meeting's participants and invited viewers")
    return meeting


async def _programme(request: web.Request, meeting: Meeting) -> Programme | None:
    """`?prg=` or `?rec=` names one of the meeting's programmes or recordings (segment URLs
    carry it); otherwise, while the meeting is live, its broadcast programme (started now if
    need be); else a recording being made; else the latest programme or recording that has a
    playlist."""
    settings = request.app[SETTINGS]
    programmes = request.app[PROGRAMMES]
    if "prg" in request.query:
        session = programmes.session(meeting.id, request.query["prg"])
        return None if session is None else Programme.of_session(session)
    if "rec" in request.query:
        wanted = request.query["rec"]
        if not RECORDING_ID.fullmatch(wanted):
            return None
        rec = await request.app[STORE].get_recording(wanted)
        if rec is None or rec.meeting_id != meeting.id:
            return None
        return Programme.of_recording(settings, rec)
    if request.match_info.get("name") is None:  # a playlist request keeps the programme going
        session = await programmes.want(meeting.id)
        if session is not None:
            return Programme.of_session(session)
    recordings = await request.app[STORE].list_recordings(meeting.id)  # newest first
    running = next((rec for rec in recordings if rec.status in LIVE), None)
    # A new recording's first segment is 2 s away: its viewers get an empty live playlist and
    # wait for it (a player reloads it), rather than an older recording's VOD.
    if running is not None:
        return Programme.of_recording(settings, running)
    sessions = await asyncio.to_thread(programmes.sessions, meeting.id)
    candidates = [Programme.of_session(s) for s in sessions]
    candidates += [
        Programme.of_recording(settings, rec)
        for rec in recordings
        if RECORDING_ID.fullmatch(rec.id)
    ]
    return await asyncio.to_thread(_newest, candidates)


def _newest(candidates: list[Programme]) -> Programme | None:
    """The programme whose playlist was written last (a live one first)."""
    best: tuple[float, Programme] | None = None
    for programme in candidates:
        try:
            written = (programme.directory / PLAYLIST).stat().st_mtime
        except OSError:
            if not programme.live:
                continue
            written = float("inf")
        if best is None or written > best[0]:
            best = (written, programme)
    return None if best is None else best[1]


async def _first_segment(programme: Programme) -> str | None:
    """The playlist of a programme that has just started, once it lists a segment (or None
    after FIRST_SEGMENT_WAIT)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FIRST_SEGMENT_WAIT
    path = programme.directory / PLAYLIST
    while loop.time() < deadline:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = await asyncio.to_thread(path.read_text, "utf-8")
            if SEGMENT_NAME.search(text):
                return text
        await asyncio.sleep(0.2)
    return None


def _cache(meeting: Meeting, policy: str) -> dict[str, str]:
    # Invite-only meetings' media must not sit in shared caches.
    scope = "public" if meeting.public and meeting.settings.viewers_allowed else "private"
    return {
        "Cache-Control": policy if policy == "no-cache" else f"{scope}, {policy}",
        # Any site may embed a public broadcast's player; a token still guards the others.
        "Access-Control-Allow-Origin": "*",
    }


def _rewrite(text: str, programme: Programme, token: str | None) -> str:
    """The playlist as served: segment URIs with the recording and the token; a playlist a
    crashed egress never ended gets its #EXT-X-ENDLIST, as nothing will be added to it."""
    query = {programme.kind: programme.id}
    if token:
        query["token"] = token
    suffix = "?" + urlencode(query)
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            lines.append(line)
        elif SEGMENT_NAME.fullmatch(line):
            lines.append(line + suffix)
    if not programme.live and ENDLIST not in lines:
        lines.append(ENDLIST)
    return "\n".join(lines) + "\n"


def _last_listed(text: str) -> int:
    numbers = [int(m.group(1)) for m in SEGMENT_NAME.finditer(text)]
    return max(numbers, default=-1)


async def playlist(request: web.Request) -> web.StreamResponse:
    """The meeting's media playlist (live window or VOD), never cached."""
    meeting = await _meeting(request)
    if isinstance(meeting, web.Response):
        return meeting
    programme = await _programme(request, meeting)
    if programme is None:
        return _missing(
            "this meeting has no programme to watch (it is not live and was not recorded)",
            "no_programme",
        )
    await _may_replay(request, meeting, programme)
    try:
        text = await asyncio.to_thread((programme.directory / PLAYLIST).read_text, "utf-8")
    except (OSError, UnicodeDecodeError):
        if not programme.live:
            return _missing("this meeting's programme cannot be read", "no_programme")
        text = STARTING
    if programme.live and programme.kind == "prg" and not SEGMENT_NAME.search(text):
        text = await _first_segment(programme) or text
    body = _rewrite(text, programme, request.query.get("token"))
    return web.Response(text=body, content_type=PLAYLIST_TYPE, headers=_cache(meeting, "no-cache"))


async def segment(request: web.Request) -> web.StreamResponse:
    """One MPEG-TS segment the playlist lists (or listed); cached for good."""
    name = request.match_info["name"]
    found = SEGMENT_NAME.fullmatch(name)
    if found is None:
        return _missing("no such segment")
    meeting = await _meeting(request)
    if isinstance(meeting, web.Response):
        return meeting
    programme = await _programme(request, meeting)
    if programme is None:
        return _missing("this meeting has no programme to watch", "no_programme")
    await _may_replay(request, meeting, programme)
    # The segment being written has its name already but is not complete: only segments the
    # playlist has listed are served (those older than the live window stay complete on disk).
    try:
        text = await asyncio.to_thread((programme.directory / PLAYLIST).read_text, "utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    path = programme.directory / name
    if int(found.group(1)) > _last_listed(text) or not path.is_file():
        return _missing("no such segment")
    return web.FileResponse(
        path, headers={**_cache(meeting, IMMUTABLE), "Content-Type": SEGMENT_TYPE}
    )


async def nothing_here(request: web.Request) -> web.StreamResponse:
    """Any other path under /hls/ (a traversal, a file that is not a playlist or segment)."""
    return _missing("no such file")


def setup_hls(app: web.Application) -> None:
    """Mount the HLS routes (after the store's cleanup context is registered)."""
    router = app.router
    router.add_get("/hls/{meeting_id}/index.m3u8", playlist, name="hls_playlist")
    router.add_get("/hls/{meeting_id}/{name}", segment, name="hls_segment")
    router.add_get("/hls/{tail:.*}", nothing_here, name="hls_other")
