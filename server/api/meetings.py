"""/api/meetings and /api/meetings/{meeting_id}: schedule, read, edit and delete meetings."""

from typing import Any

from aiohttp import web

from rooms.errors import Invalid
from rooms.meeting import Meeting, apply_changes, new_meeting
from rooms.roster import RosterEntry, new_entry
from server.api.bodies import json_object
from server.api.guard import require_admin, require_meeting
from server.api.links import invite_link, meeting_urls
from server.context import LIVE, SETTINGS, STORE, TOKENS


def _reply(request: web.Request, meeting: Meeting) -> dict[str, Any]:
    return {**meeting.as_dict(), **meeting_urls(request.app[SETTINGS], meeting)}


def _live(request: web.Request, meeting_id: str) -> dict[str, Any] | None:
    live = request.app.get(LIVE)
    return live.live(meeting_id) if live is not None else None


async def list_meetings(request: web.Request) -> web.Response:
    await require_admin(request)
    meetings = await request.app[STORE].list_meetings()
    return web.json_response({"meetings": [m.as_dict() for m in meetings]})


def _host_entry(meeting_id: str, host: object) -> RosterEntry:
    if not isinstance(host, dict):
        raise Invalid("host must be an object with a name")
    if "role" in host:
        raise Invalid("host.role is always 'host'; leave it out")
    try:
        return new_entry(meeting_id, {**host, "role": "host"})
    except Invalid as exc:
        raise Invalid(f"host.{exc.message}") from None


async def create_meeting(request: web.Request) -> web.Response:
    await require_admin(request)
    fields = await json_object(request)
    host = fields.pop("host", None)
    meeting = new_meeting(fields)
    # Check the host entry before writing anything: a bad request changes nothing.
    entry = _host_entry(meeting.id, host) if host is not None else None
    store = request.app[STORE]
    await store.create_meeting(meeting)
    reply = _reply(request, meeting)
    if entry is not None:
        await store.add_entry(entry)
        reply["host_url"] = invite_link(request.app[SETTINGS], request.app[TOKENS], entry)["url"]
    return web.json_response(reply, status=201)


async def get_meeting(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    return web.json_response({**_reply(request, meeting), "live": _live(request, meeting.id)})


async def update_meeting(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    updated = apply_changes(meeting, await json_object(request))
    await request.app[STORE].update_meeting(updated)
    return web.json_response({**_reply(request, updated), "live": _live(request, meeting.id)})


async def delete_meeting(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    live = request.app.get(LIVE)
    if live is not None:
        await live.end(meeting.id, "the meeting was deleted")
    await request.app[STORE].delete_meeting(meeting.id)
    return web.Response(status=204)
