"""The recordings pages: the list of a meeting's recordings, the list across meetings, and the
playback page with chapters by speaker. The server hands them the catalog through
`RecordingsBackend` (web/ never imports server/)."""

from typing import Any, Protocol

from aiohttp import web
from yarl import URL

from rooms.recordings import Recording, RecordingStatus
from web.backend import BACKEND
from web.pages import (
    N_,
    NO_MEETING,
    PageError,
    Problem,
    SignIn,
    error_page,
    host_access,
    is_admin,
    render,
    to_login,
    url,
)

NO_RECORDING = Problem(
    404, N_("Recording not found"), N_("This recording does not exist or has been deleted.")
)
NOT_YOURS = Problem(
    403,
    N_("This recording is for the meeting's participants"),
    N_("Open it with your personal link to the meeting, or ask the meeting's host."),
)


class RecordingsBackend(Protocol):
    """The recordings catalog as the pages use it."""

    async def recording(self, recording_id: str) -> Recording | None: ...
    async def recordings(self, meeting_id: str | None = None) -> list[Recording]: ...

    async def readable(self, request: web.Request, recording: Recording) -> bool:
        """May this request watch the recording (public meeting, roster token, admin)?"""
        ...

    async def chapters(self, recording: Recording) -> list[dict[str, Any]]:
        """Chapters by speaker: {start, end, participant, name}, start in seconds."""
        ...

    def as_json(self, recording: Recording) -> dict[str, Any]:
        """The recording's REST JSON (with its expiry under the server's retention)."""
        ...


RECORDINGS = web.AppKey("web_recordings", RecordingsBackend)


def duration_text(seconds: float) -> str:
    """1:02:03 or 2:03, as a player shows time."""
    whole = max(0, int(seconds + 0.5))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def size_text(size: int) -> str:
    """Megabytes with one decimal (0.1 MB at least for a file that has bytes)."""
    if size <= 0:
        return "—"
    return f"{max(size / 1_000_000, 0.1):.1f} MB"


def recording_context(request: web.Request, listed: list[Recording]) -> dict[str, Any]:
    return {
        "recordings": listed,
        "as_json": request.app[RECORDINGS].as_json,
        "duration_text": duration_text,
        "size_text": size_text,
    }


async def all_recordings(request: web.Request) -> web.StreamResponse:
    """Every meeting's recordings, for the admin."""
    if not is_admin(request):
        return to_login(request)
    listed = await request.app[RECORDINGS].recordings(None)
    context = {**recording_context(request, listed), "meeting": None, "manage": True, "token": ""}
    config = {"api": "/api/recordings", "token": None}
    return render(request, "recordings.html", context, config=config)


async def meeting_recordings(request: web.Request) -> web.StreamResponse:
    """One meeting's recordings, for the admin or the meeting's host (with their link)."""
    meeting_id = request.match_info["meeting_id"]
    try:
        token = await host_access(request, meeting_id)
    except SignIn:
        return to_login(request)
    except PageError as error:
        return error_page(request, error.problem)
    meeting = await request.app[BACKEND].meeting(meeting_id)
    if meeting is None:
        return error_page(request, NO_MEETING)
    listed = await request.app[RECORDINGS].recordings(meeting_id)
    query = {"token": token} if token else None
    context = {
        **recording_context(request, listed),
        "meeting": meeting,
        "manage": True,
        "meeting_url": str(url(request, "meeting", query, meeting_id=meeting_id)),
        "token": token,
    }
    config = {"api": f"/api/recordings?meeting={meeting_id}", "token": token or None}
    return render(request, "recordings.html", context, config=config)


async def playback(request: web.Request) -> web.StreamResponse:
    """The playback page: the programme in a <video>, chapters by speaker, the download."""
    catalog = request.app[RECORDINGS]
    recording = await catalog.recording(request.match_info["recording_id"])
    if recording is None:
        return error_page(request, NO_RECORDING)
    if not await catalog.readable(request, recording):
        return error_page(request, NOT_YOURS)
    token = request.query.get("token", "")
    # A <video> cannot send an Authorization header: a roster member's link rides in the query.
    query = {"token": token} if token else {}
    file_url = URL(f"/api/recordings/{recording.id}/file").with_query(query)
    download_url = file_url.update_query(download="1")
    ready = recording.status is RecordingStatus.READY and recording.size > 0
    chapters = await catalog.chapters(recording) if ready else []
    as_json = catalog.as_json(recording)
    context = {
        "recording": recording,
        "started_at": as_json["started_at"],
        "ready": ready,
        "chapters": chapters,
        "file_url": str(file_url),
        "download_url": str(download_url),
        "duration_text": duration_text,
        "size_text": size_text,
        "admin": is_admin(request),
    }
    config = {
        "recording": as_json,
        "chapters": chapters,
        "token": token or None,
    }
    return render(request, "recording.html", context, config=config)


def setup_recording_pages(app: web.Application, recordings: RecordingsBackend) -> None:
    """Mount the recordings pages (after setup_web)."""
    app[RECORDINGS] = recordings
    router = app.router
    router.add_get("/recordings", all_recordings, name="recordings")
    router.add_get("/recordings/{recording_id}", playback, name="recording")
    router.add_get(
        "/meetings/{meeting_id}/recordings", meeting_recordings, name="meeting_recordings"
    )
