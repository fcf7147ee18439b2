"""Who may watch and who may control recordings: the admin, and the roster of their meeting.

Watching: a public meeting's recordings are public; an invite-only meeting's are for its roster
(a personal invite token) and the admin. Controlling (start, stop, keep, render) takes the admin
or a roster entry whose role may record; deleting takes the admin or the meeting's host. Roles
are read from the roster now, not from the token: a demoted moderator loses control at once.
"""

from dataclasses import dataclass

from aiohttp import hdrs, web

from rooms.errors import Forbidden, RoomError
from rooms.recordings import Recording
from rooms.roles import Permission, can
from rooms.roster import RosterEntry
from server.api.guard import admin_cookie, bearer_grant
from server.context import STORE


@dataclass(frozen=True)
class Credentials:
    """Whom a request speaks for: the admin, or someone of one meeting (entry: a roster
    member; None: a guest link)."""

    admin: bool
    meeting_id: str = ""
    entry: RosterEntry | None = None


def _unauthorized(message: str) -> RoomError:
    return RoomError("unauthorized", message)


async def credentials(request: web.Request) -> Credentials:
    """The credentials of a request: `Authorization: Bearer`, a `token` query parameter (for
    GET, so that a <video> element can play an invite-only recording), or the admin cookie.
    401 without valid ones."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthorized("use Authorization: Bearer <API key or invite token>")
        return await _token(request, credential)
    if request.method in ("GET", "HEAD") and request.query.get("token"):
        return await _token(request, request.query["token"])
    if admin_cookie(request):
        return Credentials(admin=True)
    raise _unauthorized("sign in: Authorization: Bearer <API key or invite token>")


async def _token(request: web.Request, credential: str) -> Credentials:
    grant = bearer_grant(request, credential)
    if grant.kind == "admin":
        return Credentials(admin=True)
    if grant.kind != "invite":
        return Credentials(admin=False, meeting_id=grant.meeting_id)
    entry = await request.app[STORE].get_entry(grant.meeting_id, grant.entry_id)
    if entry is None:
        raise _unauthorized("this link's roster entry no longer exists")
    return Credentials(admin=False, meeting_id=entry.meeting_id, entry=entry)


async def require_reader(request: web.Request, rec: Recording) -> Credentials:
    """Whoever may watch `rec`, else 401 (no or bad credentials) or 403 (not its roster)."""
    meeting = await request.app[STORE].get_meeting(rec.meeting_id)
    if meeting is not None and meeting.public:
        return Credentials(admin=False, meeting_id=rec.meeting_id)
    found = await credentials(request)
    if found.admin or (found.meeting_id == rec.meeting_id and found.entry is not None):
        return found
    raise Forbidden("this recording is for its meeting's roster")


async def require_meeting_reader(request: web.Request, meeting_id: str) -> Credentials:
    """As require_reader, for the list of a meeting's recordings."""
    meeting = await request.app[STORE].get_meeting(meeting_id)
    if meeting is not None and meeting.public:
        return Credentials(admin=False, meeting_id=meeting_id)
    found = await credentials(request)
    if found.admin or (found.meeting_id == meeting_id and found.entry is not None):
        return found
    raise Forbidden("these recordings are for the meeting's roster")


async def require_controller(
    request: web.Request, meeting_id: str, permission: Permission = Permission.RECORD
) -> Credentials:
    """The admin, or a roster member of `meeting_id` whose role has `permission`."""
    found = await credentials(request)
    if found.admin:
        return found
    if found.meeting_id != meeting_id:
        raise Forbidden("this link is for another meeting")
    if found.entry is None or not can(found.entry.role, permission):
        who = "the host" if permission is Permission.MANAGE_MEETING else "moderators"
        raise Forbidden(f"only {who} may do this")
    return found
