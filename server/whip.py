"""WHIP (RFC 9725: publish into a room) and WHEP (watch a room) over HTTP.

`POST /whip/{meeting}` with a roster member's invite token seats that person in the live room
without a socket.io connection and publishes what they send as their microphone and camera;
`POST /whep/{meeting}` gives a receive-only connection to the room's tracks (server/whep.py).
Both answer 201 with the SDP answer and a Location whose DELETE ends the session.
Sessions are capped per meeting, per address and in total (server/session_caps.py: 503 with
Retry-After), and a session whose connection has not completed ICE within
VECHE_ICE_CONNECT_TIMEOUT is ended: an offer that never connects holds nothing for long.
See docs/whip-whep.md.
"""

import asyncio
import contextlib
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from media import sdp
from media.errors import MediaError
from media.publisher import MAX_PUBLISHED_MEDIA
from rooms.errors import Forbidden, NotFound, RoomError
from rooms.meeting import Meeting
from rooms.participant import Participant, Visitor
from rooms.roles import Permission, can
from server.auth import BadToken, Grant
from server.context import METRICS, SETTINGS, STORE, TOKENS
from server.errors import STATUS, error_response
from server.live import LiveMeeting
from server.open_files import raise_open_file_limit
from server.rtc import client_ice_servers
from server.session_caps import Busy, Place, SessionCaps
from server.signaling import NAMESPACE, SFU
from server.whep import Viewer

SDP_TYPE = "application/sdp"
MAX_SDP = 64 * 1024

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location, Link, ETag",
}


@dataclass
class Session:
    """One WHIP publisher or WHEP viewer, addressed by its Location."""

    id: str
    kind: str  # "whip" or "whep"
    meeting_id: str
    owner: str  # who may DELETE it: the token's identity ("" for an anonymous viewer)
    etag: str = field(default_factory=lambda: '"' + secrets.token_hex(8) + '"')
    live: LiveMeeting | None = None  # whip: the room the seat is in
    seat_id: str = ""  # whip
    viewer: Viewer | None = None  # whep
    place: Place | None = None  # its place under the caps, given back when it ends
    watchdog: asyncio.Task[None] | None = None  # ends it if ICE does not complete in time


SESSIONS = web.AppKey("webrtc_sessions", dict[str, Session])
ENDINGS = web.AppKey("webrtc_endings", set[asyncio.Task[None]])  # sessions ending by themselves
CAPS = web.AppKey("webrtc_caps", SessionCaps)
# Connections that have not completed ICE yet: each closed after VECHE_ICE_CONNECT_TIMEOUT.
WATCHDOGS = web.AppKey("webrtc_watchdogs", set[asyncio.Task[None]])


def setup_whip(app: web.Application) -> None:
    settings = app[SETTINGS]
    # Each session holds sockets: the open-file limit is raised before anyone comes.
    raise_open_file_limit()
    app[SESSIONS] = {}
    app[ENDINGS] = set()
    app[WATCHDOGS] = set()
    app[CAPS] = SessionCaps(
        settings.webrtc_sessions_max,
        settings.webrtc_sessions_per_meeting,
        settings.webrtc_sessions_per_address,
    )
    for kind in ("whip", "whep"):
        app.router.add_route("OPTIONS", f"/{kind}/{{meeting}}", _options)
        app.router.add_route("OPTIONS", f"/{kind}/{{meeting}}/{{session}}", _options)
        app.router.add_route("DELETE", f"/{kind}/{{meeting}}/{{session}}", _delete)
        app.router.add_route("PATCH", f"/{kind}/{{meeting}}/{{session}}", _patch)
    app.router.add_post("/whip/{meeting}", _whip)
    app.router.add_post("/whep/{meeting}", _whep)
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    watchdogs: set[asyncio.Task[None]] = app[WATCHDOGS]
    for watchdog in list(watchdogs):
        watchdog.cancel()
    sessions = list(app[SESSIONS].values())
    app[SESSIONS].clear()
    for session in sessions:
        await _end(app, session)
    endings: set[asyncio.Task[None]] = app[ENDINGS]
    for task in list(endings):
        with contextlib.suppress(Exception):
            await task


def _end_with(app: web.Application, session: Session, pc: Any) -> None:
    """End the session when its connection ends by itself (the publisher or player went away
    without a DELETE, a moderator removed the seat, the meeting ended): nothing lingers."""

    def changed() -> None:
        if pc.connectionState not in ("failed", "closed"):
            return
        _end_soon(app, session)

    pc.on("connectionstatechange", changed)
    watchdog = session.watchdog = asyncio.ensure_future(_connect_or_end(app, session, pc))
    app[WATCHDOGS].add(watchdog)
    watchdog.add_done_callback(app[WATCHDOGS].discard)


def _end_soon(app: web.Application, session: Session) -> None:
    if app[SESSIONS].get(session.id) is not session:
        return  # ended already (DELETE)
    del app[SESSIONS][session.id]
    task = asyncio.ensure_future(_end(app, session))
    app[ENDINGS].add(task)
    task.add_done_callback(app[ENDINGS].discard)


async def _connect_or_end(app: web.Application, session: Session, pc: Any) -> None:
    """End the session if its connection has not completed ICE in time: an offer that never
    connects would otherwise hold its sockets while aioice keeps checking (40-65 s)."""
    await asyncio.sleep(app[SETTINGS].ice_connect_timeout)
    if pc.iceConnectionState not in ("connected", "completed"):
        _end_soon(app, session)


# responses


def _fail(request: web.Request, exc: RoomError | MediaError) -> web.Response:
    request.app[METRICS].error(exc.code)
    if isinstance(exc, Busy):
        response = error_response(503, exc.code, exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
    else:
        response = error_response(STATUS.get(exc.code, 400), exc.code, exc.message)
    response.headers.update(CORS)
    return response


def _links(request: web.Request, user: str) -> list[str]:
    """ICE servers as RFC 9725 Link headers (TURN with this client's credentials)."""
    links = []
    for server in client_ice_servers(request.app[SETTINGS], user):
        for url in server["urls"]:
            link = f'<{url}>; rel="ice-server"'
            if "username" in server:
                link += (
                    f'; username="{server["username"]}"; credential="{server["credential"]}"'
                    '; credential-type="password"'
                )
            links.append(link)
    return links


def _with_links(response: web.Response, links: list[str]) -> web.Response:
    for link in links:
        response.headers.add("Link", link)
    return response


async def _options(request: web.Request) -> web.Response:
    response = web.Response(status=204, headers=CORS)
    return _with_links(response, _links(request, "preflight"))


async def _patch(request: web.Request) -> web.Response:
    # RFC 9725 lets a server without trickle or ICE restart refuse PATCH with 405.
    response = error_response(
        405, "method_not_allowed", "trickle and ICE restarts are not supported"
    )
    response.headers.update({**CORS, "Allow": "DELETE, OPTIONS"})
    return response


async def _delete(request: web.Request) -> web.Response:
    sessions = request.app[SESSIONS]
    kind = request.path.split("/")[1]
    session = sessions.get(request.match_info["session"])
    try:
        if (
            session is None
            or session.kind != kind
            or session.meeting_id != request.match_info["meeting"]
            or session.owner != await _identity(request, required=False)
        ):
            raise NotFound("session")
    except RoomError as exc:
        return _fail(request, exc)
    del sessions[session.id]
    await _end(request.app, session)
    return web.Response(status=204, headers=CORS)


async def _end(app: web.Application, session: Session) -> None:
    if session.watchdog is not None and session.watchdog is not asyncio.current_task():
        session.watchdog.cancel()
    if session.place is not None:
        app[CAPS].release(session.place)
        session.place = None
    if session.viewer is not None:
        await session.viewer.close()
    if session.live is not None:
        namespace = app[NAMESPACE]
        await namespace.change_outside(
            session.live, session.seat_id, lambda room, seat: room.leave(seat, "left")
        )


def _created(request: web.Request, session: Session, answer: str, user: str) -> web.Response:
    headers = {
        **CORS,
        "Location": f"/{session.kind}/{session.meeting_id}/{session.id}",
        "ETag": session.etag,
    }
    response = web.Response(status=201, text=answer, content_type=SDP_TYPE, headers=headers)
    return _with_links(response, _links(request, user))


# the request's parts


async def _meeting(request: web.Request) -> Meeting:
    meeting = await request.app[STORE].get_meeting(request.match_info["meeting"])
    if meeting is None:
        raise NotFound("meeting")
    return meeting


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadToken("send the token as Authorization: Bearer <token>")
    return token.strip()


async def _grant(request: web.Request, meeting_id: str) -> Grant | None:
    token = _bearer(request)
    if token is None:
        return None
    grant = request.app[TOKENS].check(token)
    if grant.kind not in ("invite", "guest") or grant.meeting_id != meeting_id:
        raise BadToken("this token is not for this meeting")
    return grant


async def _identity(request: web.Request, *, required: bool) -> str:
    """Who the request's token names: "r:<entry>" or "g:<token hash>" ("" without one)."""
    grant = await _grant(request, request.match_info["meeting"])
    if grant is None:
        if required:
            raise BadToken("a Bearer token is required")
        return ""
    if grant.kind == "invite":
        return "r:" + grant.entry_id
    # A guest link is shared by many: it names the link.
    return "g:" + hashlib.sha256(str(_bearer(request)).encode()).hexdigest()[:16]


async def _offer(request: web.Request) -> str:
    if request.content_type != SDP_TYPE:
        raise RoomError("unsupported_media_type", f"send the offer as {SDP_TYPE}")
    if request.content_length is not None and request.content_length > MAX_SDP:
        raise RoomError("too_large", f"the offer is larger than {MAX_SDP} bytes")
    body = await request.content.read(MAX_SDP + 1)
    if len(body) > MAX_SDP:
        raise RoomError("too_large", f"the offer is larger than {MAX_SDP} bytes")
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise RoomError("bad_sdp", "the offer is not UTF-8 text") from None


# WHIP


async def _whip(request: web.Request) -> web.Response:
    try:
        return await _publish(request)
    except (RoomError, MediaError) as exc:
        return _fail(request, exc)


async def _publish(request: web.Request) -> web.Response:
    app = request.app
    meeting = await _meeting(request)
    grant = await _grant(request, meeting.id)
    if grant is None:
        raise BadToken("a Bearer token is required")
    if grant.kind != "invite":
        raise Forbidden("WHIP needs the personal invite token of a roster member")
    entry = await app[STORE].get_entry(meeting.id, grant.entry_id)
    if entry is None:
        raise BadToken("this invitation was withdrawn")
    if not (can(entry.role, Permission.PUBLISH_AUDIO) or can(entry.role, Permission.PUBLISH_VIDEO)):
        raise Forbidden(f"a {entry.role.value} may not publish")
    offer = await _offer(request)
    sources = _sources(offer)
    visitor = Visitor(
        name=entry.name,
        role=entry.role,
        roster_id=entry.id,
        school=entry.school,
        region=entry.region,
        identity="r:" + entry.id,
    )
    namespace = app[NAMESPACE]
    place = app[CAPS].take(meeting.id, request.remote or "")
    try:
        live, seat_id = await namespace.seat_outside(meeting, visitor)
    except BaseException:
        app[CAPS].release(place)
        raise
    session = Session(
        secrets.token_urlsafe(12), "whip", meeting.id, visitor.identity or "", place=place
    )
    session.live, session.seat_id = live, seat_id
    try:
        seat = live.room.participant(seat_id)

        def current() -> Participant | None:
            if seat_id not in live.outside or namespace.live_meeting(meeting.id) is not live:
                return None
            return next((s for s in live.room.participants() if s.id == seat_id), None)

        answer = await namespace.stage_of(live).publish(seat, offer, sources, current)
    except BaseException:
        await _end(app, session)
        raise
    on = {"mic": "microphone" in sources.values(), "camera": "camera" in sources.values()}
    changes = {name: True for name, value in on.items() if value}
    await namespace.change_outside(live, seat_id, lambda room, me: room.set_state(me, changes))
    publication = namespace.stage_of(live).publication(seat_id)
    if publication is None:  # closed while we were answering
        await _end(app, session)
        raise RoomError("closed", "the publish connection closed")
    app[SESSIONS][session.id] = session
    _end_with(app, session, publication.pc)
    return _created(request, session, answer, seat_id)


def _sources(offer: str) -> dict[str, str]:
    """Each sending section's source: audio the microphone, the first video the camera, a
    second video a screen."""
    sending = sdp.sending(sdp.check(offer, MAX_PUBLISHED_MEDIA))
    sources: dict[str, str] = {}
    for mid, kind in sending.items():
        if kind == "audio" and "microphone" not in sources.values():
            sources[mid] = "microphone"
        elif kind == "video" and "camera" not in sources.values():
            sources[mid] = "camera"
        elif kind == "video" and "screen" not in sources.values():
            sources[mid] = "screen"
        else:
            raise RoomError("too_many_media", "send at most one audio and two video sections")
    if not sources:
        raise RoomError("nothing_published", "the offer sends no audio or video")
    return sources


# WHEP


async def _whep(request: web.Request) -> web.Response:
    try:
        return await _watch(request)
    except (RoomError, MediaError) as exc:
        return _fail(request, exc)


async def _watch(request: web.Request) -> web.Response:
    app = request.app
    meeting = await _meeting(request)
    grant = await _grant(request, meeting.id)
    if grant is None:
        if not meeting.public:
            raise BadToken("this meeting needs a token")
        if not meeting.settings.viewers_allowed:
            raise BadToken("this meeting admits no viewers without a token")
        owner = ""
    elif grant.kind == "invite":
        if await app[STORE].get_entry(meeting.id, grant.entry_id) is None:
            raise BadToken("this invitation was withdrawn")
        owner = "r:" + grant.entry_id
    else:
        owner = await _identity(request, required=True)
    offer = await _offer(request)
    namespace = app[NAMESPACE]
    live = namespace.live_meeting(meeting.id)
    tracks: list[dict[str, Any]] = []
    active = None
    if live is not None and live.stage is not None:
        tracks = live.stage.stage_tracks()  # viewers watch the stage (rooms/onstage.py)
        active = live.stage.lead()
    sfu = app[SFU]
    place = app[CAPS].take(meeting.id, request.remote or "")
    viewer = Viewer(sfu.settings)
    try:
        answer = await viewer.answer(offer, tracks, active, sfu.track)
    except BaseException:
        app[CAPS].release(place)
        raise
    if live is not None and live.stage is not None:
        live.stage.follow(viewer)  # its sections follow the stage where the codecs allow
    session = Session(
        secrets.token_urlsafe(12), "whep", meeting.id, owner, viewer=viewer, place=place
    )
    app[SESSIONS][session.id] = session
    _end_with(app, session, viewer.pc)
    return _created(request, session, answer, session.id)
