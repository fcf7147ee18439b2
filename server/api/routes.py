"""REST routes under /api: one table, so the OpenAPI test can compare it with the document."""

from aiohttp import web

from server.api import attendance, meetings, openapi, recordings, roster
from server.errors import Handler

_M = "/api/meetings/{meeting_id}"
_E = _M + "/roster/{entry_id}"

ROUTES: list[tuple[str, str, Handler, str]] = [
    ("GET", "/api/meetings", meetings.list_meetings, "api.meetings"),
    ("POST", "/api/meetings", meetings.create_meeting, "api.meetings"),
    ("GET", _M, meetings.get_meeting, "api.meeting"),
    ("PATCH", _M, meetings.update_meeting, "api.meeting"),
    ("DELETE", _M, meetings.delete_meeting, "api.meeting"),
    ("GET", _M + "/roster", roster.list_roster, "api.roster"),
    ("POST", _M + "/roster", roster.add_entry, "api.roster"),
    ("PATCH", _E, roster.update_entry, "api.entry"),
    ("DELETE", _E, roster.delete_entry, "api.entry"),
    ("POST", _E + "/link", roster.entry_link, "api.entry_link"),
    ("POST", _M + "/links", roster.meeting_link, "api.links"),
    ("GET", _M + "/attendance", attendance.attendance, "api.attendance"),
    ("GET", _M + "/attendance.csv", attendance.attendance_csv, "api.attendance_csv"),
    ("GET", "/api/openapi.json", openapi.openapi_json, "api.openapi"),
    *recordings.ROUTES,
]


def setup_api(app: web.Application) -> None:
    resources: dict[str, web.Resource] = {}
    for method, path, handler, name in ROUTES:
        if name not in resources:
            resources[name] = app.router.add_resource(path, name=name)
        resources[name].add_route(method, handler)
