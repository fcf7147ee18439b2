"""Who may call the REST API: the admin key, a host's invite token, or the admin session."""

import re
from dataclasses import dataclass

from aiohttp import hdrs, web

from rooms.errors import Forbidden, NotFound, RoomError
from rooms.meeting import Meeting
from rooms.roles import Role
from server.auth import BadToken, Grant, same_secret
from server.context import SETTINGS, STORE, TOKENS

# Set by the /login page: a Tokens.admin_session() JWT, HttpOnly and SameSite=Strict.
ADMIN_COOKIE = "veche_admin"

# Ids Veche issues are url-safe base64; anything else cannot name a meeting or an entry.
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Caller:
    """Whoever a request speaks for: the admin, or the host of one meeting."""

    admin: bool
    meeting_id: str = ""  # for a host: the one meeting the token opens
    entry_id: str = ""


def _unauthorized(message: str) -> RoomError:
    return RoomError("unauthorized", message)


def admin_cookie(request: web.Request) -> bool:
    """Whether the request carries the admin session cookie (False: no cookie; BadToken: a
    cookie that is not a valid session). Only GET/HEAD or a JSON body may use it: a cross-site
    form can send the cookie but cannot send a JSON body without CORS."""
    cookie = request.cookies.get(ADMIN_COOKIE)
    if not cookie:
        return False
    if request.method not in ("GET", "HEAD") and request.content_type != "application/json":
        raise Forbidden("with the admin session, send requests as application/json")
    if request.app[TOKENS].check(cookie).kind != "admin":
        raise BadToken("the admin session is not valid; sign in again")
    return True


def bearer_grant(request: web.Request, credential: str) -> Grant:
    """What a Bearer credential grants: the API key is the admin's; otherwise the token's grant
    (BadToken for one that is not valid)."""
    if same_secret(credential, request.app[SETTINGS].api_key):
        return Grant(kind="admin")
    return request.app[TOKENS].check(credential)


async def caller(request: web.Request) -> Caller:
    """The caller behind a request's credentials; 401 without valid ones."""
    header = request.headers.get(hdrs.AUTHORIZATION)
    if header is not None:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise _unauthorized("use Authorization: Bearer <API key or host token>")
        return await _bearer(request, credential)
    if admin_cookie(request):
        return Caller(admin=True)
    raise _unauthorized("sign in: Authorization: Bearer <API key or host token>")


async def _bearer(request: web.Request, credential: str) -> Caller:
    grant = bearer_grant(request, credential)
    if grant.kind == "admin":
        return Caller(admin=True)
    if grant.kind != "invite":
        raise Forbidden("a guest link does not open the API")
    entry = await request.app[STORE].get_entry(grant.meeting_id, grant.entry_id)
    if entry is None:
        raise _unauthorized("this link's roster entry no longer exists")
    # The role is read now, not from the token: a demoted host loses the API at once.
    if entry.role is not Role.HOST:
        raise Forbidden("only a host's link opens the API")
    return Caller(admin=False, meeting_id=entry.meeting_id, entry_id=entry.id)


async def require_admin(request: web.Request) -> Caller:
    found = await caller(request)
    if not found.admin:
        raise Forbidden("only the admin may do this")
    return found


def valid_id(value: str, what: str) -> str:
    if not _ID.fullmatch(value):
        raise NotFound(what)
    return value


async def require_meeting(request: web.Request) -> Meeting:
    """The meeting in the path, if the caller is the admin or this meeting's host."""
    meeting_id = request.match_info["meeting_id"]
    found = await caller(request)
    if not found.admin and found.meeting_id != meeting_id:
        raise Forbidden("this host link is for another meeting")
    meeting = await request.app[STORE].get_meeting(valid_id(meeting_id, "meeting"))
    if meeting is None:
        raise NotFound("meeting")
    return meeting
