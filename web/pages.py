"""Page handlers: login, the host's meetings, the join page, the room and the viewer page."""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from yarl import URL

from rooms.errors import RoomError
from rooms.meeting import Meeting
from rooms.roles import Permission, Role, can
from rooms.roster import RosterEntry
from web.assets import INSTALL_HINT, Assets, vendor_script
from web.backend import BACKEND, Backend
from web.i18n import LANG_COOKIE, LANGUAGES, Catalogs, choose_language

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
ADMIN_COOKIE = "veche_admin"
CATALOGS = web.AppKey("web_catalogs", Catalogs)
ASSETS = web.AppKey("web_assets", Assets)
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}
SOCKETIO_PATH = "/socket.io/"
NAMESPACE = "/meeting"
# Every script is a file of ours: inline scripts and foreign origins are refused, so a name or a
# chat message that slipped past escaping still could not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)


@dataclass(frozen=True)
class Problem:
    """A clear page for a person (bad link, no such meeting), never a traceback."""

    status: int
    title: str  # msgids, translated when rendered
    detail: str


def N_(message: str) -> str:
    """Marks a msgid for extraction; it is translated where it is shown."""
    return message


class PageError(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.title)
        self.problem = problem


BAD_LINK = Problem(
    401,
    N_("This link does not work"),
    N_("The link is not valid or has expired. Ask the meeting's host for a new one."),
)
NO_MEETING = Problem(
    404, N_("Meeting not found"), N_("This meeting does not exist or has been deleted.")
)
WITHDRAWN = Problem(
    401,
    N_("This invitation was withdrawn"),
    N_("You are no longer on this meeting's list. Ask the meeting's host for a new link."),
)
NOT_HOST = Problem(403, N_("Not allowed"), N_("This link does not let you manage this meeting."))
NOT_HALL = Problem(
    403,
    N_("This link cannot open the hall's pages"),
    N_(
        "The hall's station and projector open with the personal link of a roster entry "
        "that may publish, for example Hall 1 with the role speaker."
    ),
)
NEEDS_LINK = Problem(
    401,
    N_("This meeting needs an invitation"),
    N_("Only people with a link may watch this meeting. Ask the meeting's host for one."),
)


@dataclass(frozen=True)
class Invitation:
    """What an invite or guest link opens: the meeting, the role, the roster entry if any."""

    token: str
    meeting: Meeting
    role: Role
    entry: RosterEntry | None


def language(request: web.Request) -> str:
    return choose_language(
        request.query.get("lang"),
        request.cookies.get(LANG_COOKIE),
        request.headers.get("Accept-Language"),
    )


def page_context(request: web.Request) -> dict[str, Any]:
    """What every template gets: _(), the language and its switch, the state of the assets."""
    lang = language(request)
    catalogs = request.app[CATALOGS]
    links = [
        (code, LANGUAGE_NAMES[code], str(request.rel_url.update_query(lang=code)))
        for code in LANGUAGES
    ]
    return {
        "_": lambda message: catalogs.gettext(lang, message),
        "lang": lang,
        "lang_links": links,
        "assets_ready": request.app[ASSETS].ready,
    }


def finish(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    """Remember a language chosen with ?lang= and add the headers every page carries."""
    chosen = request.query.get("lang")
    if chosen in LANGUAGES:
        response.set_cookie(LANG_COOKIE, chosen, max_age=365 * 86400, path="/", samesite="Lax")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # links carry tokens
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    config: dict[str, Any] | None = None,
    status: int = 200,
) -> web.StreamResponse:
    """A template with `config` (what the page's script needs) and the script's strings."""
    strings = request.app[CATALOGS].js_strings[language(request)]
    page_config = {**(config or {}), "lang": language(request), "strings": strings}
    # The shared context is merged here rather than by aiohttp_jinja2's context processors,
    # whose middleware stores request data under a plain string key (a warning in aiohttp 3.14).
    full = {**page_context(request), **context, "config": page_config}
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    return finish(request, response)


def error_page(request: web.Request, problem: Problem) -> web.StreamResponse:
    context = {"error_title": problem.title, "error_detail": problem.detail}
    return render(request, "error.html", context, status=problem.status)


def found(location: str | URL) -> web.Response:
    # A plain 302: returning (not raising) web.HTTPFound is deprecated, and a raised one
    # would lose the cookies set on it here.
    return web.Response(status=302, headers={"Location": str(location)})


def redirect(request: web.Request, location: str | URL) -> web.StreamResponse:
    response = found(location)
    return finish(request, response)


def url(request: web.Request, name: str, query: dict[str, str] | None = None, **parts: str) -> URL:
    target = request.app.router[name].url_for(**parts)
    return target.with_query(query) if query else target


def is_admin(request: web.Request) -> bool:
    value = request.cookies.get(ADMIN_COOKIE, "")
    return bool(value) and request.app[BACKEND].is_admin_session(value)


def to_login(request: web.Request) -> web.StreamResponse:
    return redirect(request, url(request, "login", {"next": request.path_qs}))


def safe_next(value: str | None) -> str:
    # Only a path on this site: "//evil" or "https://evil" would make login an open redirect.
    if (
        value
        and value.startswith("/")
        and not value.startswith("//")
        and "\\" not in value
        and value.isprintable()  # no CR/LF smuggled into the Location header
    ):
        return value
    return "/meetings"


# --- login ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    if is_admin(request):
        return redirect(request, url(request, "meetings"))
    return redirect(request, url(request, "login"))


async def login_form(request: web.Request) -> web.StreamResponse:
    if is_admin(request):
        return redirect(request, safe_next(request.query.get("next")))
    context = {"next": safe_next(request.query.get("next")), "error": None}
    return render(request, "login.html", context)


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    key = form.get("key")
    target = safe_next(str(form.get("next", "")))
    backend = request.app[BACKEND]
    if not isinstance(key, str) or not backend.api_key_matches(key.strip()):
        context = {"next": target, "error": N_("Wrong API key.")}
        return render(request, "login.html", context, status=401)
    response = found(target)
    response.set_cookie(
        ADMIN_COOKIE,
        backend.new_admin_session(),
        httponly=True,
        samesite="Strict",
        secure=backend.base_url.startswith("https://"),
        path="/",
        max_age=12 * 3600,
    )
    return finish(request, response)


async def logout(request: web.Request) -> web.StreamResponse:
    # A POST (a link could be followed by a prefetcher or another site's <img>), and the
    # session is ended on the server: a copy of the cookie stops working too.
    value = request.cookies.get(ADMIN_COOKIE, "")
    if value:
        await request.app[BACKEND].end_admin_session(value)
    response = found(url(request, "login"))
    response.del_cookie(ADMIN_COOKIE, path="/")
    return finish(request, response)


# --- the host's pages ------------------------------------------------------------------------


async def meetings(request: web.Request) -> web.StreamResponse:
    if not is_admin(request):
        return to_login(request)
    listed = await request.app[BACKEND].meetings()
    listed.sort(key=lambda m: m.starts_at, reverse=True)
    return render(request, "meetings.html", {"meetings": listed}, config={"api": "/api/meetings"})


class SignIn(Exception):
    """The page is the admin's: send the browser to the login page."""


async def host_access(request: web.Request, meeting_id: str) -> str:
    """Who manages `meeting_id` here: "" for the admin (the cookie authorizes the page's API
    calls), or the host's own token from ?token=. Raises SignIn or PageError."""
    if is_admin(request):
        return ""
    token = request.query.get("token", "")
    if not token:
        raise SignIn()
    backend = request.app[BACKEND]
    try:
        claim = backend.check_token(token)
    except RoomError:
        raise PageError(BAD_LINK) from None
    entry = None
    if claim.kind == "invite" and claim.meeting_id == meeting_id:
        entry = await backend.entry(meeting_id, claim.entry_id)
    if entry is None or entry.role is not Role.HOST:
        raise PageError(NOT_HOST)
    return token


async def meeting_admin(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    meeting_id = request.match_info["meeting_id"]
    try:
        token = await host_access(request, meeting_id)
    except SignIn:
        return to_login(request)
    except PageError as error:
        return error_page(request, error.problem)
    meeting = await backend.meeting(meeting_id)
    if meeting is None:
        return error_page(request, NO_MEETING)
    roster = await backend.roster(meeting_id)
    links = {
        entry.id: f"{backend.base_url}/j/{backend.invite_token(meeting_id, entry.id)}"
        for entry in roster
    }
    context = {
        "meeting": meeting,
        "roster": roster,
        "links": links,
        "roles": [role.value for role in Role],
        "attendance": await backend.attendance(meeting_id),
        "live": backend.live(meeting_id),
        "watch_url": f"{backend.base_url}/watch/{meeting_id}",
        "hls_url": f"{backend.base_url}/hls/{meeting_id}/index.m3u8",
        "whep_url": f"{backend.base_url}/whep/{meeting_id}",
        "admin_mode": not token,
        "room_url": str(url(request, "room", token=token)) if token else None,
        "recordings_url": str(
            url(
                request,
                "meeting_recordings",
                {"token": token} if token else None,
                meeting_id=meeting_id,
            )
        ),
    }
    config = {
        "api": f"/api/meetings/{meeting_id}",
        "token": token or None,
        "meeting": meeting.as_dict(),
        "meetings_url": str(url(request, "meetings")),
    }
    return render(request, "meeting.html", context, config=config)


# --- the join page, the room and the viewer page ------------------------------------------------


async def open_invitation(request: web.Request, token: str) -> Invitation:
    backend = request.app[BACKEND]
    try:
        claim = backend.check_token(token)
    except RoomError:
        raise PageError(BAD_LINK) from None
    if claim.kind not in ("invite", "guest"):
        raise PageError(BAD_LINK)
    meeting = await backend.meeting(claim.meeting_id)
    if meeting is None:
        raise PageError(NO_MEETING)
    if claim.kind == "guest":
        return Invitation(token, meeting, claim.role or Role.VIEWER, None)
    entry = await backend.entry(meeting.id, claim.entry_id)
    if entry is None:
        raise PageError(WITHDRAWN)
    return Invitation(token, meeting, entry.role, entry)


def watch_redirect(request: web.Request, invitation: Invitation) -> web.StreamResponse:
    target = url(request, "watch", {"token": invitation.token}, meeting_id=invitation.meeting.id)
    return redirect(request, target)


def room_config(request: web.Request, invitation: Invitation) -> dict[str, Any]:
    backend = request.app[BACKEND]
    admin_url = None
    if invitation.entry is not None and invitation.role is Role.HOST:
        admin_url = str(
            url(request, "meeting", {"token": invitation.token}, meeting_id=invitation.meeting.id)
        )
    return {
        "token": invitation.token,
        "meeting_id": invitation.meeting.id,
        "title": invitation.meeting.title,
        "name": invitation.entry.name if invitation.entry else "",
        "guest": invitation.entry is None,
        "role": invitation.role.value,
        "socket_path": SOCKETIO_PATH,
        "namespace": NAMESPACE,
        "join_url": str(url(request, "join", token=invitation.token)),
        "room_url": str(url(request, "room", token=invitation.token)),
        "admin_url": admin_url,
        "base_url": backend.base_url,
    }


async def join(request: web.Request) -> web.StreamResponse:
    return await _invited_page(request, "join.html")


async def room(request: web.Request) -> web.StreamResponse:
    return await _invited_page(request, "room.html")


async def hall(request: web.Request) -> web.StreamResponse:
    return await _hall_page(request, "hall.html")


async def projector(request: web.Request) -> web.StreamResponse:
    return await _hall_page(request, "projector.html")


async def _hall_page(request: web.Request, template: str) -> web.StreamResponse:
    """The hall's station (its camera and microphone) and its projector (the remote speakers):
    both open with the personal link of the hall's roster entry (docs/hall.md)."""
    try:
        invitation = await open_invitation(request, request.match_info["token"])
    except PageError as error:
        return error_page(request, error.problem)
    if invitation.entry is None or not can(invitation.role, Permission.PUBLISH_VIDEO):
        return error_page(request, NOT_HALL)
    context = {"meeting": invitation.meeting, "invitation": invitation}
    return render(request, template, context, config=room_config(request, invitation))


async def _invited_page(request: web.Request, template: str) -> web.StreamResponse:
    """A page opened with an invite link: viewers go to the viewer page, bad links get a page
    that says why."""
    try:
        invitation = await open_invitation(request, request.match_info["token"])
    except PageError as error:
        return error_page(request, error.problem)
    if invitation.role is Role.VIEWER:
        return watch_redirect(request, invitation)
    context = {"meeting": invitation.meeting, "invitation": invitation}
    return render(request, template, context, config=room_config(request, invitation))


async def watch(request: web.Request) -> web.StreamResponse:
    backend = request.app[BACKEND]
    meeting_id = request.match_info["meeting_id"]
    token = request.query.get("token", "")
    if token:
        try:
            invitation = await open_invitation(request, token)
        except PageError as error:
            return error_page(request, error.problem)
        if invitation.meeting.id != meeting_id:
            return error_page(request, BAD_LINK)
        config = room_config(request, invitation)
        meeting = invitation.meeting
    else:
        found = await backend.meeting(meeting_id)
        if found is None:
            return error_page(request, NO_MEETING)
        if not (found.public and found.settings.viewers_allowed):
            return error_page(request, NEEDS_LINK)
        meeting = found
        config = {
            "token": None,
            "meeting_id": meeting.id,
            "title": meeting.title,
            "name": "",
            "guest": True,
            "role": Role.VIEWER.value,
            "socket_path": SOCKETIO_PATH,
            "namespace": NAMESPACE,
            "admin_url": None,
        }
    config["watch"] = True
    # Guests (no roster entry) and anonymous viewers name themselves before watching.
    context = {"meeting": meeting, "ask_name": config["guest"]}
    return render(request, "watch.html", context, config=config)


# --- assets --------------------------------------------------------------------------------------


async def socketio_client(request: web.Request) -> web.StreamResponse:
    assets = request.app[ASSETS]
    if assets.socketio is None:
        return web.Response(
            status=404,
            text=f"// socket.io client is not installed: {INSTALL_HINT}\n",
            content_type="application/javascript",
        )
    return web.FileResponse(assets.socketio, headers={"Cache-Control": "public, max-age=3600"})


def setup_web(app: web.Application, backend: Backend, assets: Assets) -> None:
    """Mount the pages, their static files and translations on `app`."""
    app[BACKEND] = backend
    app[ASSETS] = assets
    app[CATALOGS] = Catalogs.load()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        undefined=jinja2.StrictUndefined,
    )
    # tojson still escapes <, >, & and ' (safe inside <script>); plain UTF-8 keeps pages small.
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": True}
    router = app.router
    router.add_get("/", index, name="index")
    router.add_get("/login", login_form, name="login")
    router.add_post("/login", login, name="login_submit")
    router.add_post("/logout", logout, name="logout")
    router.add_get("/meetings", meetings, name="meetings")
    router.add_get("/meetings/{meeting_id}", meeting_admin, name="meeting")
    router.add_get("/j/{token}", join, name="join")
    router.add_get("/j/{token}/room", room, name="room")
    router.add_get("/j/{token}/hall", hall, name="hall")
    router.add_get("/j/{token}/projector", projector, name="projector")
    router.add_get("/watch/{meeting_id}", watch, name="watch")
    router.add_get("/vendor/socket.io.min.js", socketio_client, name="socketio_client")
    router.add_get("/vendor/hls.min.js", vendor_script(assets.hls, "hls.js"), name="hls_client")
    router.add_static("/static/", HERE / "static", name="static", append_version=True)
