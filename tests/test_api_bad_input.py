"""Bad input to the REST API: each gets a 4xx JSON error naming the problem and changes nothing."""

from datetime import timedelta
from typing import Any

import jwt
import pytest

from rooms.roles import Role
from server.auth import Tokens
from tests.apiclient import bearer, call
from tests.conftest import LiveServer

JSON = {"Content-Type": "application/json"}


async def snapshot(server: LiveServer) -> list[Any]:
    """Everything the store holds, as plain data."""
    state: list[Any] = []
    for meeting in await server.store.list_meetings():
        roster = [e.as_dict() for e in await server.store.list_roster(meeting.id)]
        state.append((meeting.as_dict(), roster))
    return state


@pytest.fixture
async def seeded(live_server: LiveServer) -> tuple[LiveServer, str, str]:
    """A server with one meeting and one roster entry: (server, meeting id, entry id)."""
    status, meeting = await live_server.api("POST", "/api/meetings", json={"title": "Board"})
    assert status == 201
    path = f"/api/meetings/{meeting['id']}/roster"
    status, entry = await live_server.api("POST", path, json={"name": "Olga", "role": "speaker"})
    assert status == 201
    return live_server, meeting["id"], entry["id"]


def assert_error(status: int, body: Any, expected: int, code: str, mentions: str = "") -> None:
    assert status == expected, body
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert mentions in body["error"]["message"], body


MEETING_BODIES = [
    pytest.param({"data": b"{not json", "headers": JSON}, 400, "bad_json", "JSON", id="malformed"),
    pytest.param({"data": b"\xff\xfe", "headers": JSON}, 400, "bad_json", "JSON", id="not-utf8"),
    pytest.param(
        {"data": b'{"title": "x"}', "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "application/json",
        id="content-type",
    ),
    pytest.param(
        {"data": b'{"title": "' + b"x" * 70_000 + b'"}', "headers": JSON},
        413,
        "too_large",
        "larger",
        id="oversize",
    ),
    pytest.param({"json": ["title"]}, 400, "invalid", "JSON object", id="array-body"),
    pytest.param({"json": {}}, 400, "invalid", "title", id="missing-title"),
    pytest.param({"json": {"title": 5}}, 400, "invalid", "title", id="title-type"),
    pytest.param({"json": {"title": "   "}}, 400, "invalid", "title", id="title-blank"),
    pytest.param({"json": {"title": "x" * 201}}, 400, "invalid", "title", id="title-long"),
    pytest.param({"json": {"title": "x", "starts_at": "soon"}}, 400, "invalid", "starts_at"),
    pytest.param({"json": {"title": "x", "visibility": "secret"}}, 400, "invalid", "visibility"),
    pytest.param({"json": {"title": "x", "settings": []}}, 400, "invalid", "settings"),
    pytest.param({"json": {"title": "x", "settings": {"lobby": "yes"}}}, 400, "invalid", "lobby"),
    pytest.param(
        {"json": {"title": "x", "settings": {"x": 1}}}, 400, "invalid", "x", id="unknown-set"
    ),
    pytest.param({"json": {"title": "x", "owner": "me"}}, 400, "invalid", "owner", id="unknown"),
    pytest.param({"json": {"title": "x", "host": "Anna"}}, 400, "invalid", "host", id="host-type"),
    pytest.param({"json": {"title": "x", "host": {}}}, 400, "invalid", "host.name", id="host-name"),
    pytest.param(
        {"json": {"title": "x", "host": {"name": "A", "role": "viewer"}}},
        400,
        "invalid",
        "host.role",
        id="host-role",
    ),
]


@pytest.mark.parametrize(("request_args", "status", "code", "mentions"), MEETING_BODIES)
async def test_bad_new_meeting_is_refused(
    seeded: tuple[LiveServer, str, str],
    request_args: dict[str, Any],
    status: int,
    code: str,
    mentions: str,
) -> None:
    server = seeded[0]
    before = await snapshot(server)
    got, body = await server.api("POST", "/api/meetings", **request_args)
    assert_error(got, body, status, code, mentions)
    assert await snapshot(server) == before


CHANGES = [
    pytest.param("meeting", {"title": None}, "title"),
    pytest.param("meeting", {"starts_at": 1700000000}, "starts_at"),
    pytest.param("meeting", {"id": "other"}, "id"),
    pytest.param("meeting", {"settings": {"recording_notice": 3}}, "recording_notice"),
    pytest.param("meeting", "title", "JSON object"),
    pytest.param("roster", {"name": "Ivan", "role": "king"}, "role"),
    pytest.param("roster", {"name": "x" * 101, "role": "viewer"}, "name"),
    pytest.param("roster", {"name": "Ivan"}, "role"),
    pytest.param("roster", {"role": "viewer"}, "name"),
    pytest.param("roster", {"name": "Ivan", "role": "viewer", "school": 12}, "school"),
    pytest.param("roster", {"name": "Ivan", "role": "viewer", "email": "a@b"}, "email"),
    pytest.param("entry", {"role": ["host"]}, "role"),
    pytest.param("entry", {"meeting_id": "elsewhere"}, "meeting_id"),
    pytest.param("entry", {"region": "r" * 201}, "region"),
    pytest.param("links", {"role": "host"}, "role"),
    pytest.param("links", {}, "role"),
    pytest.param("links", {"role": "viewer", "ttl": 9}, "ttl"),
    pytest.param("link", {"ttl": 9}, "ttl"),
]


@pytest.mark.parametrize(("target", "payload", "mentions"), CHANGES)
async def test_bad_changes_are_refused(
    seeded: tuple[LiveServer, str, str], target: str, payload: Any, mentions: str
) -> None:
    server, mid, eid = seeded
    method, path = {
        "meeting": ("PATCH", f"/api/meetings/{mid}"),
        "roster": ("POST", f"/api/meetings/{mid}/roster"),
        "entry": ("PATCH", f"/api/meetings/{mid}/roster/{eid}"),
        "links": ("POST", f"/api/meetings/{mid}/links"),
        "link": ("POST", f"/api/meetings/{mid}/roster/{eid}/link"),
    }[target]
    before = await snapshot(server)
    status, body = await server.api(method, path, json=payload)
    assert_error(status, body, 400, "invalid", mentions)
    assert await snapshot(server) == before


PATHS = [
    "/api/meetings/..%2F..%2Fetc%2Fpasswd",
    "/api/meetings/%2e%2e",
    "/api/meetings/nope",
    "/api/meetings/x%00y",
    "/api/meetings/" + "a" * 300,
    "/api/meetings/{mid}/roster/..%2F..%2Fetc%2Fpasswd",
    "/api/meetings/{mid}/roster/missing",
    "/api/meetings/{mid}/roster/missing/link",
    "/api/meetings/..%2F{mid}/roster",
    "/api/meetings/nope/attendance.csv",
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE", "POST"])
async def test_unknown_and_traversal_ids_are_404(
    seeded: tuple[LiveServer, str, str], path: str, method: str
) -> None:
    server, mid, _ = seeded
    before = await snapshot(server)
    status, body, _ = await call(
        server.url,
        method,
        path.format(mid=mid),
        headers=server.admin_headers(),
        json={"title": "x"},
    )
    # A path with no such method is 405; anything else must be "not found".
    if status == 405:
        assert body["error"]["code"] == "method_not_allowed"
    else:
        assert_error(status, body, 404, "not_found")
    assert await snapshot(server) == before


def forged(server: LiveServer, mid: str, eid: str) -> dict[str, str]:
    other = Tokens("another-secret-" + "x" * 40, timedelta(days=1))
    expired = Tokens(server.settings.secret_key, timedelta(days=1))
    past = timedelta(seconds=-10)
    good = server.tokens.invite(mid, eid)
    head, payload, signature = good.split(".")
    none_alg = jwt.encode({"kind": "admin", "iss": "veche", "exp": 4_000_000_000}, None, "none")
    return {
        "no header": "",
        "wrong key": "Bearer not-the-api-key",
        "basic auth": f"Basic {server.settings.api_key}",
        "bearer only": "Bearer",
        "other secret admin": f"Bearer {other.admin_session()}",
        "other secret invite": f"Bearer {other.invite(mid, eid)}",
        "expired invite": f"Bearer {expired.invite(mid, eid, ttl=past)}",
        "expired admin": f"Bearer {expired.admin_session(ttl=past)}",
        "tampered": f"Bearer {head}.{payload}x.{signature}",
        "alg none": f"Bearer {none_alg}",
        "huge": "Bearer " + "a" * 5000,
    }


@pytest.mark.parametrize(
    "case",
    [
        "no header",
        "wrong key",
        "basic auth",
        "bearer only",
        "other secret admin",
        "other secret invite",
        "expired invite",
        "expired admin",
        "tampered",
        "alg none",
        "huge",
    ],
)
async def test_bad_credentials_are_401(seeded: tuple[LiveServer, str, str], case: str) -> None:
    server, mid, eid = seeded
    # Make the entry a host so that only the token's flaw can be the reason for refusal.
    await server.api("PATCH", f"/api/meetings/{mid}/roster/{eid}", json={"role": "host"})
    header = forged(server, mid, eid)[case]
    headers = {"Authorization": header} if header else {}
    before = await snapshot(server)
    for method, path in [
        ("GET", "/api/meetings"),
        ("GET", f"/api/meetings/{mid}"),
        ("DELETE", f"/api/meetings/{mid}"),
        ("POST", f"/api/meetings/{mid}/roster"),
    ]:
        status, body, _ = await call(
            server.url, method, path, headers=headers, json={"name": "X", "role": "host"}
        )
        assert status == 401, (case, method, path, body)
        assert body["error"]["code"] in ("unauthorized", "bad_token")
    assert await snapshot(server) == before


async def test_guest_and_forged_cookie_credentials_are_refused(
    seeded: tuple[LiveServer, str, str],
) -> None:
    server, mid, _ = seeded
    before = await snapshot(server)
    guest = server.tokens.guest(mid, Role.PARTICIPANT)
    status, body, _ = await call(server.url, "GET", f"/api/meetings/{mid}", headers=bearer(guest))
    assert_error(status, body, 403, "forbidden")
    invite_as_cookie = server.tokens.guest(mid, Role.VIEWER)
    for cookie in (invite_as_cookie, "forged", Tokens("y" * 48, timedelta(1)).admin_session()):
        headers = {"Cookie": f"veche_admin={cookie}", **JSON}
        status, body, _ = await call(server.url, "DELETE", f"/api/meetings/{mid}", headers=headers)
        assert status == 401, body
    assert await snapshot(server) == before


async def test_unknown_routes_and_methods_answer_json(live_server: LiveServer) -> None:
    status, body = await live_server.api("GET", "/api/nothing")
    assert_error(status, body, 404, "not_found")
    status, body = await live_server.api("PUT", "/api/meetings", json={"title": "x"})
    assert_error(status, body, 405, "method_not_allowed")
    assert await live_server.store.list_meetings() == []
