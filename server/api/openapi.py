"""The OpenAPI 3.1 document of /api, served at /api/openapi.json and checked by the tests."""

from typing import Any

from aiohttp import web

from server.context import SETTINGS

Schema = dict[str, Any]

_TIME: Schema = {"type": "string", "format": "date-time"}
_TEXT: Schema = {"type": "string"}
_ROLE: Schema = {
    "type": "string",
    "enum": ["host", "moderator", "speaker", "participant", "viewer"],
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], properties: dict[str, Schema], *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "required": required, "properties": properties}
    if closed:
        schema["additionalProperties"] = False
    return schema


_SETTINGS = _object(
    [],
    {
        "lobby": {"type": "boolean"},
        "viewers_allowed": {"type": "boolean"},
        "recording_notice": {"type": "string", "maxLength": 500},
    },
)
_MEETING_FIELDS: dict[str, Schema] = {
    "title": {"type": "string", "minLength": 1, "maxLength": 200},
    "starts_at": _TIME,
    "visibility": {"type": "string", "enum": ["public", "invite"]},
    "settings": _ref("MeetingSettings"),
}
_ENTRY_FIELDS: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 100},
    "role": _ROLE,
    "school": {"type": "string", "maxLength": 200},
    "region": {"type": "string", "maxLength": 200},
}
_LIVE = _object(
    ["participants", "lobby", "locked"],
    {
        "participants": {"type": "array", "items": {"type": "object"}},
        "lobby": {"type": "array", "items": {"type": "object"}},
        "locked": {"type": "boolean"},
    },
    closed=False,
)

SCHEMAS: dict[str, Schema] = {
    "MeetingSettings": {**_SETTINGS, "required": ["lobby", "viewers_allowed", "recording_notice"]},
    "Meeting": _object(
        ["id", "title", "starts_at", "visibility", "settings", "created_at"],
        {"id": _TEXT, **_MEETING_FIELDS, "created_at": _TIME},
        closed=False,
    ),
    "MeetingUrls": _object(
        ["admin_url", "watch_url"],
        {"admin_url": _TEXT, "watch_url": _TEXT, "host_url": _TEXT},
        closed=False,
    ),
    "MeetingCreated": {"allOf": [_ref("Meeting"), _ref("MeetingUrls")]},
    "MeetingDetail": {
        "allOf": [
            _ref("Meeting"),
            _ref("MeetingUrls"),
            _object(["live"], {"live": {"oneOf": [{"type": "null"}, _LIVE]}}, closed=False),
        ]
    },
    "MeetingList": _object(["meetings"], {"meetings": {"type": "array", "items": _ref("Meeting")}}),
    "NewMeeting": _object(
        ["title"],
        {
            **_MEETING_FIELDS,
            "settings": _SETTINGS,
            "host": _object(["name"], {k: _ENTRY_FIELDS[k] for k in ("name", "school", "region")}),
        },
    ),
    "MeetingChanges": _object([], {**_MEETING_FIELDS, "settings": _SETTINGS}),
    "RosterEntry": _object(
        ["id", "meeting_id", "name", "role", "school", "region", "created_at"],
        {"id": _TEXT, "meeting_id": _TEXT, **_ENTRY_FIELDS, "created_at": _TIME},
        closed=False,
    ),
    "RosterEntryWithUrl": {
        "allOf": [_ref("RosterEntry"), _object(["url"], {"url": _TEXT}, closed=False)]
    },
    "RosterEntryWithLink": {"allOf": [_ref("RosterEntry"), _ref("Link")]},
    "Roster": _object(
        ["roster"], {"roster": {"type": "array", "items": _ref("RosterEntryWithUrl")}}
    ),
    "NewRosterEntry": _object(["name", "role"], _ENTRY_FIELDS),
    "RosterEntryChanges": _object([], _ENTRY_FIELDS),
    "Link": _object(
        ["url", "token", "expires_at"],
        {"url": _TEXT, "token": _TEXT, "expires_at": _TIME},
        closed=False,
    ),
    "NewGuestLink": _object(
        ["role"], {"role": {"type": "string", "enum": ["participant", "viewer"]}}
    ),
    "Stay": _object(
        ["person", "name", "role", "school", "region", "joined_at", "left_at"],
        {
            "person": _TEXT,
            "name": _TEXT,
            "role": _TEXT,
            "school": _TEXT,
            "region": _TEXT,
            "joined_at": _TIME,
            "left_at": {"oneOf": [{"type": "null"}, _TIME]},
        },
    ),
    "Attendance": _object(["attendance"], {"attendance": {"type": "array", "items": _ref("Stay")}}),
    "Recording": _object(
        [
            "id",
            "meeting",
            "title",
            "status",
            "progress",
            "started_at",
            "stopped_at",
            "duration",
            "size",
            "error",
            "keep",
            "expires_at",
            "file",
            "page",
        ],
        {
            "id": _TEXT,
            "meeting": _TEXT,
            "title": _TEXT,
            "status": {
                "type": "string",
                "enum": ["recording", "finishing", "rendering", "ready", "failed"],
            },
            "progress": {"oneOf": [{"type": "null"}, {"type": "integer"}]},
            "started_at": _TIME,
            "stopped_at": {"oneOf": [{"type": "null"}, _TIME]},
            "duration": {"type": "number", "description": "seconds of programme"},
            "size": {"type": "integer", "description": "bytes of programme.mp4"},
            "error": _TEXT,
            "keep": {"type": "boolean"},
            "expires_at": {"oneOf": [{"type": "null"}, _TIME]},
            "file": _TEXT,
            "page": _TEXT,
            "quality": {
                "description": "the live programme checked against the tracks after the stop "
                "(null: not checked)",
                "oneOf": [
                    {"type": "null"},
                    _object(
                        ["seconds", "share", "re_rendered"],
                        {
                            "seconds": {"type": "number", "minimum": 0},
                            "share": {"type": "number", "minimum": 0, "maximum": 1},
                            "re_rendered": {"type": "boolean"},
                        },
                    ),
                ],
            },
        },
        closed=False,
    ),
    "RecordingList": _object(
        ["recordings"], {"recordings": {"type": "array", "items": _ref("Recording")}}
    ),
    "RecordingChanges": _object(["keep"], {"keep": {"type": "boolean"}}),
    "Error": _object(
        ["error"],
        {"error": _object(["code", "message"], {"code": _TEXT, "message": _TEXT})},
    ),
}

_ERRORS = {
    "400": "a field is missing or invalid; the message names it",
    "401": "no credentials, or a bad or expired key or token",
    "403": "the credentials do not open this meeting or endpoint",
    "404": "no such meeting or roster entry",
    "413": "the body is larger than 64 KiB",
    "415": "the body is not application/json",
    "409": "the recording's state refuses it: already_recording, not_recording, not_live, busy",
    "503": "recording_failed: the recording process could not start",
    "429": "rate_limited: too many wrong keys or tokens from this address (VECHE_GUESS_LIMIT a "
    "minute); try again after Retry-After seconds",
}


def _json(schema: str, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _throttled() -> Schema:
    """The answer to an address that guessed too many keys (server/guesses.py)."""
    return {
        **_json("Error", _ERRORS["429"]),
        "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}},
    }


def _operation(
    summary: str,
    ok: tuple[str, str, str | None],
    *,
    body: str | None = None,
    body_required: bool = True,
    errors: tuple[str, ...] = ("401", "403", "404"),
) -> Schema:
    status, description, schema = ok
    success: Schema = _json(schema, description) if schema else {"description": description}
    responses: Schema = {status: success}
    codes = list(errors) + (["400", "413", "415"] if body else [])
    for code in sorted(set(codes)):
        responses[code] = _json("Error", _ERRORS[code])
    if "401" in responses:
        responses["429"] = _throttled()
    op: Schema = {"summary": summary, "responses": responses}
    if body:
        op["requestBody"] = {
            "required": body_required,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


_MID = {"name": "meeting_id", "in": "path", "required": True, "schema": _TEXT}
_EID = {"name": "entry_id", "in": "path", "required": True, "schema": _TEXT}
_RID = {"name": "recording_id", "in": "path", "required": True, "schema": _TEXT}
_ADMIN = ("401", "403")

# Recordings (docs/api.md, "Recordings"): control by the admin or a moderator's invite token;
# reading is public for public meetings, else for the meeting's roster (an invite token, also
# as ?token= so that a <video> can play it) and the admin.
_CONTROL: list[Schema] = [{"apiKey": []}, {"adminSession": []}, {"meetingToken": []}]
_READ: list[Schema] = [*_CONTROL, {}]


def _recording_op(summary: str, ok: tuple[str, str, str | None], **options: Any) -> Schema:
    read = options.pop("read", False)
    op = _operation(summary, ok, **options)
    op["security"] = _READ if read else _CONTROL
    return op


_TOKEN_QUERY = {
    "name": "token",
    "in": "query",
    "required": False,
    "schema": _TEXT,
    "description": "an invite token of the meeting, instead of the Authorization header",
}
_FILE_RESPONSE = {
    "description": "the programme, H.264 + AAC, fast start",
    "content": {"video/mp4": {}},
}

RECORDING_PATHS: dict[str, Schema] = {
    "/api/meetings/{meeting_id}/recording": {
        "parameters": [_MID],
        "post": _recording_op(
            "Start recording a live meeting (admin, or a moderator's token)",
            ("201", "the new recording", "Recording"),
            errors=("401", "403", "404", "409", "503"),
        ),
        "delete": _recording_op(
            "Stop the meeting's recording; its programme is finished in the background",
            ("200", "the recording, finishing", "Recording"),
            errors=("401", "403", "404", "409"),
        ),
    },
    "/api/recordings": {
        "parameters": [
            {
                "name": "meeting",
                "in": "query",
                "required": False,
                "schema": _TEXT,
                "description": "one meeting's recordings; without it all (admin only)",
            },
            _TOKEN_QUERY,
        ],
        "get": _recording_op(
            "Recordings, newest first", ("200", "recordings", "RecordingList"), read=True
        ),
    },
    "/api/recordings/{recording_id}": {
        "parameters": [_RID],
        "get": _recording_op("One recording", ("200", "the recording", "Recording"), read=True),
        "patch": _recording_op(
            "Keep a recording past retention, or not",
            ("200", "the recording", "Recording"),
            body="RecordingChanges",
        ),
        "delete": _recording_op(
            "Delete a recording and its files (admin, or the meeting's host)",
            ("204", "deleted", None),
            errors=("401", "403", "404", "409"),
        ),
    },
    "/api/recordings/{recording_id}/file": {
        "parameters": [
            _RID,
            _TOKEN_QUERY,
            {
                "name": "download",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["1"]},
                "description": "1: as an attachment (Content-Disposition) named after the title",
            },
        ],
        "get": {
            "summary": "The programme MP4 (Range requests: 206)",
            "security": _READ,
            "responses": {
                "200": _FILE_RESPONSE,
                "206": {**_FILE_RESPONSE, "description": "the requested byte range"},
                "416": {"description": "the range is outside the file"},
                **{c: _json("Error", _ERRORS[c]) for c in ("401", "403", "404")},
                "429": _throttled(),
            },
        },
    },
    "/api/recordings/{recording_id}/render": {
        "parameters": [_RID],
        "post": _recording_op(
            "Render the programme again from the tracks, in the background",
            ("202", "the recording, rendering", "Recording"),
            errors=("401", "403", "404", "409"),
        ),
    },
}

PATHS: dict[str, Schema] = {
    "/api/meetings": {
        "get": _operation(
            "List meetings (admin)", ("200", "meetings", "MeetingList"), errors=_ADMIN
        ),
        "post": _operation(
            "Schedule a meeting (admin); with `host`, also add a host roster entry",
            ("201", "the meeting and its links", "MeetingCreated"),
            body="NewMeeting",
            errors=_ADMIN,
        ),
    },
    "/api/meetings/{meeting_id}": {
        "parameters": [_MID],
        "get": _operation("A meeting, with its live state", ("200", "meeting", "MeetingDetail")),
        "patch": _operation(
            "Change a meeting",
            ("200", "the changed meeting", "MeetingDetail"),
            body="MeetingChanges",
        ),
        "delete": _operation("Delete a meeting; ends its live room", ("204", "deleted", None)),
    },
    "/api/meetings/{meeting_id}/roster": {
        "parameters": [_MID],
        "get": _operation("The roster, each with a fresh invite link", ("200", "roster", "Roster")),
        "post": _operation(
            "Invite someone with a role",
            ("201", "the entry and its personal link", "RosterEntryWithLink"),
            body="NewRosterEntry",
        ),
    },
    "/api/meetings/{meeting_id}/roster/{entry_id}": {
        "parameters": [_MID, _EID],
        "patch": _operation(
            "Change a roster entry", ("200", "the entry", "RosterEntry"), body="RosterEntryChanges"
        ),
        "delete": _operation("Remove a roster entry", ("204", "removed", None)),
    },
    "/api/meetings/{meeting_id}/roster/{entry_id}/link": {
        "parameters": [_MID, _EID],
        "post": _operation("A fresh personal invite link", ("200", "the link", "Link")),
    },
    "/api/meetings/{meeting_id}/links": {
        "parameters": [_MID],
        "post": _operation(
            "A guest link (participant or viewer) without a roster entry",
            ("200", "the link", "Link"),
            body="NewGuestLink",
        ),
    },
    "/api/meetings/{meeting_id}/attendance": {
        "parameters": [_MID],
        "get": _operation("Who was there, one record per stay", ("200", "stays", "Attendance")),
    },
    "/api/meetings/{meeting_id}/attendance.csv": {
        "parameters": [_MID],
        "get": {
            **_operation("Attendance as a CSV download", ("200", "CSV", None)),
            "responses": {
                "200": {"description": "UTF-8 CSV with a BOM", "content": {"text/csv": {}}},
                **{c: _json("Error", _ERRORS[c]) for c in ("401", "403", "404")},
                "429": _throttled(),
            },
        },
    },
    **RECORDING_PATHS,
    "/api/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {
                "200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}
            },
        }
    },
}


_SDP = {"application/sdp": {"schema": {"type": "string", "maxLength": 65536}}}
_WEBRTC_ERRORS = {
    "400": "the SDP is refused (bad_sdp, unsupported_codec, too_many_media, ...)",
    "401": "no token, or a bad, expired or other meeting's token",
    "403": "the token's role may not publish (WHIP), or it is not a personal invite",
    "404": "no such meeting",
    "409": "that person is already in the room (WHIP)",
    "413": "the offer is larger than 64 KiB",
    "415": "the body is not application/sdp",
}
_CREATED = {
    "description": "the SDP answer, with the server's candidates",
    "headers": {
        "Location": {"schema": _TEXT, "description": "the session; DELETE it to end"},
        "ETag": {"schema": _TEXT},
        "Link": {"schema": _TEXT, "description": 'ICE servers, rel="ice-server" (RFC 9725)'},
    },
    "content": {"application/sdp": {"schema": _TEXT}},
}
_SESSION = {"name": "session", "in": "path", "required": True, "schema": _TEXT}
_MEETING = {"name": "meeting", "in": "path", "required": True, "schema": _TEXT}


def _webrtc(summary: str, codes: tuple[str, ...]) -> Schema:
    return {
        "summary": summary,
        "security": [{"meetingToken": []}],
        "requestBody": {"required": True, "content": _SDP},
        "responses": {
            "201": _CREATED,
            **{c: _json("Error", _WEBRTC_ERRORS[c]) for c in codes},
            "429": _throttled(),
        },
    }


def _end_session(summary: str) -> Schema:
    return {
        "summary": summary,
        "security": [{"meetingToken": []}, {}],
        "responses": {
            "204": {"description": "ended"},
            "401": _json("Error", "a bad token"),
            "404": _json("Error", "no such session, or another's"),
            "429": _throttled(),
        },
    }


# WHIP and WHEP (docs/whip-whep.md): OPTIONS answers CORS preflights with the ICE servers in
# Link headers; PATCH (trickle, ICE restart) answers 405.
WEBRTC_PATHS: dict[str, Schema] = {
    "/whip/{meeting}": {
        "parameters": [_MEETING],
        "post": _webrtc(
            "Publish into the room as the token's roster entry (WHIP, RFC 9725)",
            ("400", "401", "403", "404", "409", "413", "415"),
        ),
    },
    "/whip/{meeting}/{session}": {
        "parameters": [_MEETING, _SESSION],
        "delete": _end_session("Stop publishing; the seat leaves the room"),
    },
    "/whep/{meeting}": {
        "parameters": [_MEETING],
        "post": _webrtc(
            "Watch the room (WHEP): a recvonly offer; no token for a public meeting",
            ("400", "401", "404", "413", "415"),
        ),
    },
    "/whep/{meeting}/{session}": {
        "parameters": [_MEETING, _SESSION],
        "delete": _end_session("Stop watching"),
    },
}
MEETING_TOKEN: Schema = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "an invite or guest token of the meeting (WHIP: a roster entry that publishes)",
}


def _pointer(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


# What a created resource opens next (OpenAPI links): clients and the stateful fuzzer
# (tests/test_fuzz_api.py) follow them from a new meeting to its roster and back.
LINKS: dict[tuple[str, str, str], dict[str, tuple[str, dict[str, str]]]] = {
    ("/api/meetings", "post", "201"): {
        f"{method}{name}": (
            _pointer(path, method),
            {"meeting_id": "$response.body#/id"},
        )
        for path, name in (
            ("/api/meetings/{meeting_id}", "Meeting"),
            ("/api/meetings/{meeting_id}/roster", "Roster"),
            ("/api/meetings/{meeting_id}/links", "GuestLink"),
            ("/api/meetings/{meeting_id}/attendance", "Attendance"),
        )
        for method in ("get", "patch", "delete", "post")
        if method in PATHS[path]
    },
    ("/api/meetings/{meeting_id}/roster", "post", "201"): {
        f"{method}{name}": (
            _pointer(path, method),
            {"meeting_id": "$response.body#/meeting_id", "entry_id": "$response.body#/id"},
        )
        for path, name in (
            ("/api/meetings/{meeting_id}/roster/{entry_id}", "Entry"),
            ("/api/meetings/{meeting_id}/roster/{entry_id}/link", "EntryLink"),
        )
        for method in ("patch", "delete", "post")
        if method in PATHS[path]
    },
}


def _linked(paths: dict[str, Schema]) -> dict[str, Schema]:
    """`paths` with LINKS in the responses they start from."""
    linked = {path: dict(item) for path, item in paths.items()}
    for (path, method, status), links in LINKS.items():
        operation = linked[path][method] = dict(linked[path][method])
        responses = operation["responses"] = dict(operation["responses"])
        responses[status] = {
            **responses[status],
            "links": {
                name: {"operationRef": ref, "parameters": parameters}
                for name, (ref, parameters) in links.items()
            },
        }
    return linked


def document(server_url: str) -> Schema:
    """The document: the REST API under /api, and WHIP and WHEP."""
    doc = _api_document(server_url)
    doc["paths"] = _linked({**PATHS, **WEBRTC_PATHS})
    doc["components"]["securitySchemes"]["meetingToken"] = MEETING_TOKEN
    return doc


def _api_document(server_url: str) -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Veche REST API",
            "version": "1",
            "description": "Meetings, roster, links, attendance and recordings. See docs/api.md.",
        },
        "servers": [{"url": server_url}],
        "security": [{"apiKey": []}, {"hostToken": []}, {"adminSession": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "VECHE_API_KEY (or data_dir/api_key): everything",
                },
                "hostToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "invite token of a roster entry whose role is host: its meeting",
                },
                "adminSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "veche_admin",
                    "description": "set by /login; non-GET requests must be application/json",
                },
            },
        },
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(document(request.app[SETTINGS].base_url))
