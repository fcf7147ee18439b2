"""A hall's projector seat obeys the rules its roster entry obeys (issue 11, row 1): it needs an
entry that may run the hall, waits in the lobby like that entry, is listed for moderators and
removable, and stays out when locked out or removed. Real socket.io clients on loopback."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from rooms.roles import Role
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

Opener = Callable[[], Awaitable[Client]]


@pytest.fixture
async def clients(live_server: LiveServer) -> AsyncIterator[Opener]:
    opened: list[Client] = []

    async def open_client() -> Client:
        client = await Client.open(live_server.url)
        opened.append(client)
        return client

    yield open_client
    await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)


async def test_only_an_entry_that_may_run_the_hall_opens_a_projector(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    for role in ("viewer", "participant"):
        projector = await clients()
        token = await invite(live_server, meeting, f"A {role}", role)
        ack = await projector.call("join", {"token": token, "projector": True})
        assert ack["error"]["code"] == "forbidden", ack
        assert not projector.received.get("joined")
    # A guest's link is no roster entry at all.
    guest = live_server.tokens.guest(meeting.id, Role.VIEWER)
    projector = await clients()
    ack = await projector.call("join", {"token": guest, "projector": True})
    assert ack["error"]["code"] == "bad_token", ack
    status, found = await live_server.api("GET", f"/api/meetings/{meeting.id}")
    assert status == 200 and found["live"]["projectors"] == []


async def test_a_projector_waits_in_the_lobby_is_listed_for_moderators_and_can_be_removed(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server)  # invite-only, with a lobby
    host = await clients()
    host_token = await invite(live_server, meeting, "Host", "host")
    await host.join(token=host_token)
    anna = await clients()
    anna_token = await invite(live_server, meeting, "Anna", "moderator")
    await anna.join(token=anna_token)  # a moderator: no lobby
    boris = await clients()
    await boris.join(token=await invite(live_server, meeting, "Boris", "speaker"))
    assert boris.ack["status"] == "lobby"
    waiting = await host.until("lobby_updated", lambda d: len(d["lobby"]) == 1)
    await host.call("admit", {"id": waiting["lobby"][0]["id"]})
    await boris.next("joined")
    hall_token = await invite(live_server, meeting, "Hall 1", "speaker")

    # It knocks as the hall's entry (a speaker) would, and the moderators see who knocks.
    projector = await clients()
    ack = await projector.call("join", {"token": hall_token, "projector": True})
    assert ack["status"] == "lobby", ack
    lobby = await host.until("lobby_updated", lambda d: len(d["lobby"]) == 1)
    (entry,) = lobby["lobby"]
    assert (entry["name"], entry["kind"]) == ("Projector — Hall 1", "projector")
    assert projector.unread("joined") == []
    await host.call("admit", {"id": entry["id"]})
    await projector.next("admitted")
    joined = await projector.next("joined")
    seat = joined["self"]["id"]
    assert joined["self"]["kind"] == "projector" and seat.startswith("prj-")

    # Listed for moderators (the host and Anna), never for Boris; not in the attendance.
    for moderator in (host, anna):
        listed = await moderator.until("participant_joined", lambda d: d["id"] == seat)
        assert (listed["name"], listed["kind"]) == ("Projector — Hall 1", "projector")
    await asyncio.sleep(0.2)
    assert all(p["id"] != seat for p in boris.received["participant_joined"])
    # A moderator who comes later finds it in the list too.
    carla = await clients()
    await carla.join(token=await invite(live_server, meeting, "Carla", "moderator"))
    assert [p["kind"] for p in carla.snapshot["participants"] if p["id"] == seat] == ["projector"]
    status, found = await live_server.api("GET", f"/api/meetings/{meeting.id}")
    assert [p["name"] for p in found["live"]["projectors"]] == ["Projector — Hall 1"]
    # The meeting's admin page lists it under "Live now".
    page = f"{live_server.url}/meetings/{meeting.id}?token={host_token}"
    async with aiohttp.ClientSession() as http, http.get(page) as response:
        assert response.status == 200
        assert "Projector — Hall 1" in await response.text()
    assert all(p["id"] != seat for p in found["live"]["participants"])

    # A moderator removes it: it is told, disconnected, and the moderators see it go.
    assert await anna.call("remove", {"id": seat}) == {"ok": True}
    assert (await projector.next("removed"))["message"]
    await asyncio.wait_for(projector.closed.wait(), 5)
    gone = await host.until("participant_left", lambda d: d["id"] == seat)
    assert gone["reason"] == "removed"
    status, found = await live_server.api("GET", f"/api/meetings/{meeting.id}")
    assert status == 200 and found["live"]["projectors"] == []

    # Locked: the removed projector stays out; unlocked, it comes back through the lobby.
    assert await host.call("lock", {"locked": True}) == {"ok": True}
    again = await clients()
    ack = await again.call("join", {"token": hall_token, "projector": True})
    assert ack["error"]["code"] == "locked", ack
    assert await host.call("lock", {"locked": False}) == {"ok": True}
    ack = await again.call("join", {"token": hall_token, "projector": True})
    assert ack["status"] == "lobby", ack


async def test_a_projector_of_a_removed_entry_is_kept_out(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, settings={"lobby": False})
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    hall_token = await invite(live_server, meeting, "Hall 1", "speaker")
    station = await clients()
    await station.join(token=hall_token)
    projector = await clients()
    ack = await projector.call("join", {"token": hall_token, "projector": True})
    assert ack == {"ok": True, "status": "joined"}, ack
    seat = (await projector.next("joined"))["self"]["id"]
    listed = await host.until("participant_joined", lambda d: d["id"] == seat)
    assert listed["kind"] == "projector"

    # The hall is removed and the room locked: a new projector on its link is refused.
    assert await host.call("remove", {"id": station.id}) == {"ok": True}
    assert await host.call("lock", {"locked": True}) == {"ok": True}
    another = await clients()
    ack = await another.call("join", {"token": hall_token, "projector": True})
    assert ack["error"]["code"] == "locked", ack
    # Unlocked, with the lobby off: it still waits for a moderator, as its entry would.
    assert await host.call("lock", {"locked": False}) == {"ok": True}
    ack = await another.call("join", {"token": hall_token, "projector": True})
    assert ack["status"] == "lobby", ack
