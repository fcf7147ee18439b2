"""/api/meetings/{meeting_id}/attendance: who was there and for how long, as JSON or CSV."""

from aiohttp import web

from rooms.attendance import to_csv
from rooms.meeting import now
from server.api.guard import require_meeting
from server.context import STORE


async def attendance(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    stays = await request.app[STORE].list_attendance(meeting.id)
    return web.json_response({"attendance": [s.as_dict() for s in stays]})


async def attendance_csv(request: web.Request) -> web.Response:
    meeting = await require_meeting(request)
    stays = await request.app[STORE].list_attendance(meeting.id)
    return web.Response(
        text=to_csv(stays, now()),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="attendance-{meeting.id}.csv"'},
    )
