"""/api/meetings/{meeting_id}/roster and links: who is invited, and the links they get."""

from aiohttp import web

from rooms.errors import Invalid, NotFound
from rooms.meeting import Meeting
from rooms.roster import RosterEntry, apply_entry_changes, new_entry
from server.api.bodies import json_object, optional_object
from server.api.guard import require_meeting, valid_id
from server.api.links import guest_link, invite_link, parse_guest_role
from server.context import SETTINGS, STORE, TOKENS


async def _entry(request: web.Request, meeting: Meeting) -> RosterEntry:
    entry_id = valid_id(request.match_info["entry_id"], "roster entry")
    entry = await request.app[STORE].get_entry(meeting.id, entry_id)
    if entry is None:
        raise NotFound("roster entry")
    return entry


async def list_roster(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    settings, tokens = request.app[SETTINGS], request.app[TOKENS]
    entries = await request.app[STORE].list_roster(meeting.id)
    roster = [{**e.as_dict(), "url": invite_link(settings, tokens, e)["url"]} for e in entries]
    return web.json_response({"roster": roster})


async def add_entry(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    entry = new_entry(meeting.id, await json_object(request))
    await request.app[STORE].add_entry(entry)
    link = invite_link(request.app[SETTINGS], request.app[TOKENS], entry)
    return web.json_response({**entry.as_dict(), **link}, status=201)


async def update_entry(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    entry = await _entry(request, meeting)
    updated = apply_entry_changes(entry, await json_object(request))
    await request.app[STORE].update_entry(updated)
    return web.json_response(updated.as_dict())


async def delete_entry(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    entry = await _entry(request, meeting)
    await request.app[STORE].delete_entry(meeting.id, entry.id)
    return web.Response(status=204)


async def entry_link(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    entry = await _entry(request, meeting)
    await optional_object(request, frozenset())
    return web.json_response(invite_link(request.app[SETTINGS], request.app[TOKENS], entry))


async def meeting_link(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    body = await json_object(request)
    unknown = set(body) - {"role"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    if "role" not in body:
        raise Invalid("role is required")
    role = parse_guest_role(body["role"])
    link = guest_link(request.app[SETTINGS], request.app[TOKENS], meeting.id, role)
    return web.json_response(link)
