"""The REST API through a real server: meetings, roster, links, host tokens, attendance."""

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from rooms.meeting import now
from rooms.roles import Role
from server.api.openapi import document
from server.app import create_app
from server.config import Settings
from server.context import LIVE
from tests.apiclient import bearer, call
from tests.conftest import LiveServer, start_server
from tests.test_openapi import problems


async def make_meeting(server: LiveServer, **fields: Any) -> dict[str, Any]:
    status, body = await server.api("POST", "/api/meetings", json={"title": "Board", **fields})
    assert status == 201, body
    return dict(body)


async def invite(server: LiveServer, meeting_id: str, name: str, role: str) -> dict[str, Any]:
    path = f"/api/meetings/{meeting_id}/roster"
    status, body = await server.api("POST", path, json={"name": name, "role": role})
    assert status == 201, body
    return dict(body)


async def test_meeting_lifecycle(live_server: LiveServer) -> None:
    base = live_server.settings.base_url
    created = await make_meeting(
        live_server,
        title="  Expanded   meeting ",
        starts_at="2026-12-01T10:00:00+03:00",
        visibility="public",
        settings={"lobby": False},
    )
    mid = created["id"]
    assert created["title"] == "Expanded meeting"
    assert created["starts_at"] == "2026-12-01T07:00:00Z"
    assert created["visibility"] == "public"
    assert created["settings"]["lobby"] is False
    assert created["admin_url"] == f"{base}/meetings/{mid}"
    assert created["watch_url"] == f"{base}/watch/{mid}"
    assert "host_url" not in created

    status, listing = await live_server.api("GET", "/api/meetings")
    assert status == 200
    assert [m["id"] for m in listing["meetings"]] == [mid]

    status, got = await live_server.api("GET", f"/api/meetings/{mid}")
    assert status == 200
    assert got["title"] == "Expanded meeting"
    assert got["live"] is None

    changes = {"title": "Renamed", "visibility": "invite", "settings": {"viewers_allowed": False}}
    status, patched = await live_server.api("PATCH", f"/api/meetings/{mid}", json=changes)
    assert status == 200, patched
    assert patched["title"] == "Renamed"
    assert patched["settings"] == {**created["settings"], "viewers_allowed": False}
    stored = await live_server.store.get_meeting(mid)
    assert stored is not None and stored.title == "Renamed" and not stored.public

    status, body = await live_server.api("DELETE", f"/api/meetings/{mid}")
    assert status == 204, body
    assert (await live_server.api("GET", f"/api/meetings/{mid}"))[0] == 404
    assert (await live_server.api("GET", "/api/meetings"))[1] == {"meetings": []}


async def test_create_with_host_returns_a_working_host_link(live_server: LiveServer) -> None:
    created = await make_meeting(live_server, host={"name": "Anna Petrova", "school": "No. 5"})
    token = created["host_url"].rsplit("/j/", 1)[1]
    assert created["host_url"] == f"{live_server.settings.base_url}/j/{token}"
    grant = live_server.tokens.check(token)
    assert grant.kind == "invite" and grant.meeting_id == created["id"]
    entry = await live_server.store.get_entry(created["id"], grant.entry_id)
    assert entry is not None and entry.role is Role.HOST and entry.school == "No. 5"
    status, _, _ = await call(
        live_server.url, "GET", f"/api/meetings/{created['id']}", headers=bearer(token)
    )
    assert status == 200


async def test_roster_crud_and_links(live_server: LiveServer) -> None:
    mid = (await make_meeting(live_server))["id"]
    roster_path = f"/api/meetings/{mid}/roster"
    olga = await invite(live_server, mid, "Olga", "participant")
    assert olga["name"] == "Olga" and olga["role"] == "participant"
    assert olga["url"] == f"{live_server.settings.base_url}/j/{olga['token']}"
    grant = live_server.tokens.check(olga["token"])
    assert (grant.kind, grant.meeting_id, grant.entry_id) == ("invite", mid, olga["id"])
    ivan = await invite(live_server, mid, "Ivan", "moderator")

    status, listing = await live_server.api("GET", roster_path)
    assert status == 200
    by_id = {e["id"]: e for e in listing["roster"]}
    assert set(by_id) == {olga["id"], ivan["id"]}
    for entry_id, entry in by_id.items():
        token = entry["url"].rsplit("/j/", 1)[1]
        assert live_server.tokens.check(token).entry_id == entry_id

    changes = {"role": "speaker", "school": "Lyceum 2", "region": "Tver"}
    status, patched = await live_server.api("PATCH", f"{roster_path}/{olga['id']}", json=changes)
    assert status == 200, patched
    assert (patched["role"], patched["school"], patched["region"]) == (
        "speaker",
        "Lyceum 2",
        "Tver",
    )
    stored = await live_server.store.get_entry(mid, olga["id"])
    assert stored is not None and stored.role is Role.SPEAKER

    status, link = await live_server.api("POST", f"{roster_path}/{olga['id']}/link")
    assert status == 200, link
    assert live_server.tokens.check(link["token"]).entry_id == olga["id"]
    assert link["url"].endswith("/j/" + link["token"])
    assert link["expires_at"] > now().isoformat()[:10]

    status, body = await live_server.api("DELETE", f"{roster_path}/{ivan['id']}")
    assert status == 204, body
    assert [e.id for e in await live_server.store.list_roster(mid)] == [olga["id"]]
    assert (await live_server.api("DELETE", f"{roster_path}/{ivan['id']}"))[0] == 404


async def test_guest_links(live_server: LiveServer) -> None:
    mid = (await make_meeting(live_server))["id"]
    for role in ("viewer", "participant"):
        status, link = await live_server.api(
            "POST", f"/api/meetings/{mid}/links", json={"role": role}
        )
        assert status == 200, link
        grant = live_server.tokens.check(link["token"])
        assert (grant.kind, grant.meeting_id, grant.role) == ("guest", mid, Role(role))
        assert link["url"] == f"{live_server.settings.base_url}/j/{link['token']}"
    assert await live_server.store.list_roster(mid) == []


async def test_host_token_opens_its_own_meeting_only(live_server: LiveServer) -> None:
    mine = (await make_meeting(live_server, title="Mine"))["id"]
    other = (await make_meeting(live_server, title="Other"))["id"]
    host = await invite(live_server, mine, "Host", "host")
    auth = bearer(host["token"])
    url = live_server.url

    assert (await call(url, "GET", f"/api/meetings/{mine}", headers=auth))[0] == 200
    status, added, _ = await call(
        url,
        "POST",
        f"/api/meetings/{mine}/roster",
        headers=auth,
        json={"name": "Guest", "role": "viewer"},
    )
    assert status == 201, added
    status, body, _ = await call(
        url, "PATCH", f"/api/meetings/{mine}", headers=auth, json={"title": "New"}
    )
    assert status == 200 and body["title"] == "New"

    for method, path in [
        ("GET", f"/api/meetings/{other}"),
        ("GET", f"/api/meetings/{other}/roster"),
        ("DELETE", f"/api/meetings/{other}"),
        ("GET", "/api/meetings"),
    ]:
        status, body, _ = await call(url, method, path, headers=auth)
        assert status == 403, (method, path, body)
        assert body["error"]["code"] == "forbidden"
    status, body, _ = await call(url, "POST", "/api/meetings", headers=auth, json={"title": "X"})
    assert status == 403
    assert len(await live_server.store.list_meetings()) == 2
    assert await live_server.store.get_meeting(other) is not None

    # Another roster role's link opens nothing, nor does the host's once demoted.
    assert (await call(url, "GET", f"/api/meetings/{mine}", headers=bearer(added["token"])))[
        0
    ] == 403
    patch = {"role": "participant"}
    await live_server.api("PATCH", f"/api/meetings/{mine}/roster/{host['id']}", json=patch)
    assert (await call(url, "GET", f"/api/meetings/{mine}", headers=auth))[0] == 403
    await live_server.api("DELETE", f"/api/meetings/{mine}/roster/{host['id']}")
    status, body, _ = await call(url, "GET", f"/api/meetings/{mine}", headers=auth)
    assert status == 401 and body["error"]["code"] == "unauthorized"


async def test_admin_session_cookie(live_server: LiveServer) -> None:
    cookie = {"Cookie": f"veche_admin={live_server.tokens.admin_session()}"}
    url = live_server.url
    status, body, _ = await call(url, "GET", "/api/meetings", headers=cookie)
    assert status == 200, body
    status, created, _ = await call(
        url, "POST", "/api/meetings", headers=cookie, json={"title": "C"}
    )
    assert status == 201, created
    # Without a JSON content type a cookie-signed change is refused (cross-site forms).
    path = f"/api/meetings/{created['id']}"
    status, body, _ = await call(url, "DELETE", path, headers=cookie)
    assert status == 403, body
    assert await live_server.store.get_meeting(created["id"]) is not None
    json_cookie = {**cookie, "Content-Type": "application/json"}
    assert (await call(url, "DELETE", path, headers=json_cookie))[0] == 204


async def test_attendance_json_and_csv(live_server: LiveServer) -> None:
    mid = (await make_meeting(live_server))["id"]
    store = live_server.store
    start = now() - timedelta(minutes=30)
    stay = await store.record_join(mid, "e1", "=Anna", "host", "School 5", "Tver", start)
    await store.record_leave(stay, start + timedelta(minutes=12))
    await store.record_join(mid, "g1", "Пётр", "viewer", "", "", start + timedelta(minutes=5))

    status, body = await live_server.api("GET", f"/api/meetings/{mid}/attendance")
    assert status == 200, body
    stays = body["attendance"]
    assert [s["name"] for s in stays] == ["=Anna", "Пётр"]
    assert stays[0]["left_at"] is not None and stays[1]["left_at"] is None

    status, text, response = await call(
        live_server.url,
        "GET",
        f"/api/meetings/{mid}/attendance.csv",
        headers=live_server.admin_headers(),
    )
    assert status == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == f'attachment; filename="attendance-{mid}.csv"'
    lines = text.lstrip("\ufeff").splitlines()
    assert lines[0] == "name,school,region,role,joined_at,left_at,minutes"
    assert lines[1].startswith("'=Anna,School 5,Tver,host,") and lines[1].endswith(",12.0")
    assert lines[2].startswith("Пётр,,,viewer,")


@dataclass
class RecordingLive:
    """Stands in for the signaling module's live rooms, recording what REST asks of them."""

    ended: list[tuple[str, str]] = field(default_factory=list)

    def live(self, meeting_id: str) -> dict[str, Any] | None:
        return {"participants": [{"name": "Anna"}], "lobby": [], "locked": False}

    async def end(self, meeting_id: str, message: str) -> None:
        self.ended.append((meeting_id, message))


async def test_live_state_and_delete_ends_the_room(settings: Settings) -> None:
    live = RecordingLive()
    app = create_app(settings)
    app[LIVE] = live
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    try:
        server = LiveServer(url=settings.base_url, app=app, settings=settings)
        mid = (await make_meeting(server))["id"]
        status, got = await server.api("GET", f"/api/meetings/{mid}")
        assert status == 200
        assert got["live"] == {"participants": [{"name": "Anna"}], "lobby": [], "locked": False}
        detail = {"$ref": "#/components/schemas/MeetingDetail"}
        assert problems(document(settings.base_url), detail, got) == []
        assert (await server.api("DELETE", f"/api/meetings/{mid}"))[0] == 204
        assert [m for m, _ in live.ended] == [mid]
    finally:
        await runner.cleanup()


async def test_state_survives_a_restart(settings: Settings) -> None:
    server, runner = await start_server(settings)
    try:
        mid = (await make_meeting(server, title="Kept"))["id"]
        entry = await invite(server, mid, "Olga", "host")
    finally:
        await runner.cleanup()
    server, runner = await start_server(settings)
    try:
        status, got = await server.api("GET", f"/api/meetings/{mid}")
        assert status == 200 and got["title"] == "Kept"
        status, roster = await server.api("GET", f"/api/meetings/{mid}/roster")
        assert [e["name"] for e in roster["roster"]] == ["Olga"]
        # Links handed out before the restart still open the meeting.
        assert (
            await call(server.url, "GET", f"/api/meetings/{mid}", headers=bearer(entry["token"]))
        )[0] == 200
    finally:
        await runner.cleanup()
