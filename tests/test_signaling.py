"""The /meeting namespace end to end: real socket.io clients against a real server."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import aiohttp
import pytest

from rooms.roles import Role
from server.auth import Tokens
from server.context import LIVE
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

Opener = Callable[[], Awaitable[Client]]


@pytest.fixture
async def clients(live_server: LiveServer) -> AsyncIterator[Opener]:
    """Opens clients to the live server and closes them all at the end."""
    opened: list[Client] = []

    async def open_client() -> Client:
        client = await Client.open(live_server.url)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


async def admitted(host: Client, waiting: Client) -> None:
    """The host admits `waiting`, who is the last in the lobby."""
    lobby = await host.until("lobby_updated", lambda d: len(d["lobby"]) > 0)
    assert await host.call("admit", {"id": lobby["lobby"][-1]["id"]}) == {"ok": True}
    await waiting.next("admitted")
    waiting.snapshot = await waiting.next("joined")


async def refused(client: Client, event: str, payload: object, code: str) -> None:
    ack = await client.call(event, payload)
    assert ack["error"]["code"] == code, ack
    error = await client.until("error", lambda d: d["event"] == event)
    assert error["code"] == code


async def test_moderator_admits_two_people_they_chat_and_one_is_removed(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server)
    host = await clients()
    ack = await host.join(token=await invite(live_server, meeting, "Host", "host"))
    assert ack == {"ok": True, "status": "joined"}
    assert host.snapshot["self"]["role"] == "host"
    assert "moderate" in host.snapshot["self"]["permissions"]
    assert host.snapshot["seat"]

    anna, boris = await clients(), await clients()
    boris_token = await invite(live_server, meeting, "Boris", "participant", school="School 12")
    ack = await anna.join(token=await invite(live_server, meeting, "Анна Петрова", "participant"))
    assert ack == {"ok": True, "status": "lobby", "position": 1}
    ack = await boris.join(token=boris_token)
    assert ack == {"ok": True, "status": "lobby", "position": 2}
    lobby = await host.until("lobby_updated", lambda d: len(d["lobby"]) == 2)
    assert [e["name"] for e in lobby["lobby"]] == ["Анна Петрова", "Boris"]
    assert lobby["lobby"][1]["school"] == "School 12" and lobby["lobby"][1]["roster"] is True

    assert await host.call("admit", {"id": lobby["lobby"][0]["id"]}) == {"ok": True}
    await anna.next("admitted")
    anna.snapshot = await anna.next("joined")
    await boris.until("lobby", lambda d: d == {"position": 1})
    await admitted(host, boris)
    assert [p["name"] for p in boris.snapshot["participants"]] == ["Host", "Анна Петрова", "Boris"]
    assert (await anna.next("participant_joined"))["name"] == "Boris"

    text = "Добрый день <b>всем</b>"
    assert await anna.call("chat", {"text": text}) == {"ok": True}
    for client in (host, anna, boris):
        message = await client.next("chat")
        assert message["text"] == text
        assert message["from"] == anna.id
        assert message["name"] == "Анна Петрова"

    # Locked, Boris is removed and cannot come back while it stays locked.
    assert await host.call("lock", {"locked": True}) == {"ok": True}
    for client in (host, anna, boris):
        assert await client.next("locked") == {"locked": True}
    assert await host.call("remove", {"id": boris.id}) == {"ok": True}
    assert (await boris.next("removed"))["message"]
    await asyncio.wait_for(boris.closed.wait(), 5)
    assert await anna.next("participant_left") == {"id": boris.id, "reason": "removed"}
    again = await clients()
    await refused(again, "join", {"token": boris_token}, "locked")

    # Unlocked, he comes back through the lobby.
    assert await host.call("lock", {"locked": False}) == {"ok": True}
    assert await again.call("join", {"token": boris_token}) == {
        "ok": True,
        "status": "lobby",
        "position": 1,
    }
    lobby = await host.until("lobby_updated", lambda d: len(d["lobby"]) == 1)
    assert lobby["lobby"][0]["name"] == "Boris"


async def test_host_and_moderator_never_wait(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    for name, role in (("Mod", "moderator"), ("Host", "host")):
        client = await clients()
        ack = await client.join(token=await invite(live_server, meeting, name, role))
        assert ack == {"ok": True, "status": "joined"}


async def test_viewer_cannot_chat_or_moderate(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, visibility="public")
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    viewer = await clients()
    ack = await viewer.join(meeting=meeting.id, name="Public watcher")
    assert ack == {"ok": True, "status": "joined"}
    assert viewer.snapshot["self"]["role"] == "viewer"
    assert viewer.snapshot["self"]["permissions"] == ["raise_hand"]
    assert viewer.snapshot["lobby"] == []
    await refused(viewer, "chat", {"text": "hello"}, "forbidden")
    await refused(viewer, "remove", {"id": host.id}, "forbidden")
    await refused(viewer, "lock", {"locked": True}, "forbidden")
    await refused(viewer, "end", {}, "forbidden")
    await refused(viewer, "ask_mute", {"id": host.id}, "forbidden")
    await refused(viewer, "set_role", {"id": host.id, "role": "viewer"}, "forbidden")
    await refused(viewer, "state", {"mic": True}, "forbidden")
    assert host.unread("chat") == [] and host.unread("locked") == []

    # Without a token an invite-only meeting, or one without viewers, refuses.
    closed = await make_meeting(live_server)
    await refused(viewer, "join", {"meeting": closed.id, "name": "x"}, "already_joined")
    other = await clients()
    await refused(other, "join", {"meeting": closed.id, "name": "x"}, "bad_token")
    no_viewers = await make_meeting(
        live_server, visibility="public", settings={"viewers_allowed": False}
    )
    await refused(other, "join", {"meeting": no_viewers.id, "name": "x"}, "viewers_not_allowed")
    await refused(other, "join", {"meeting": "nope", "name": "x"}, "not_found")
    await refused(other, "join", {"meeting": meeting.id}, "invalid")


async def test_bad_tokens_are_refused(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    entries = await live_server.store.list_roster(meeting.id)
    assert entries == []
    token = await invite(live_server, meeting, "Anna", "participant")
    [entry] = await live_server.store.list_roster(meeting.id)
    forged = Tokens("not-the-server-secret-but-32-bytes-long!", timedelta(days=1)).invite(
        meeting.id, entry.id
    )
    expired = live_server.tokens.invite(meeting.id, entry.id, ttl=timedelta(seconds=-1))
    client = await clients()
    for bad in (forged, expired, "garbage", "", 42, live_server.tokens.admin_session()):
        await refused(client, "join", {"token": bad}, "bad_token")
    await live_server.store.delete_entry(meeting.id, entry.id)
    await refused(client, "join", {"token": token}, "bad_token")
    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT, ttl=timedelta(seconds=-5))
    await refused(client, "join", {"token": guest, "name": "G"}, "bad_token")


async def test_guest_link_gives_its_role(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, settings={"lobby": False})
    link = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    first, second = await clients(), await clients()
    await first.join(token=link, name="Guest one")
    await second.join(token=link, name="Guest two")  # a shared link seats many
    assert first.snapshot["self"]["role"] == "participant"
    assert second.snapshot["self"]["roster_id"] is None
    assert first.id != second.id
    # A guest resumes with the seat key (the link alone would not say which guest).
    seat_id, key = first.id, first.snapshot["seat"]
    await first.close()
    back = await clients()
    await back.join(token=link, name="Guest one", seat=key)
    assert back.id == seat_id


async def test_hand_queue_order_seen_by_all(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, settings={"lobby": False})
    people = []
    for name in ("Host", "A", "B", "C"):
        client = await clients()
        role = "host" if name == "Host" else "participant"
        await client.join(token=await invite(live_server, meeting, name, role))
        people.append(client)
    host, a, b, c = people
    for client in (c, a, b):
        assert await client.call("hand", {"raised": True}) == {"ok": True}
    expected = [c.id, a.id, b.id]
    for client in people:
        await client.until("hands", lambda d: d["hands"] == expected)
    assert await host.call("hand", {"raised": False, "id": a.id}) == {"ok": True}
    for client in people:
        await client.until("hands", lambda d: d["hands"] == [c.id, b.id])
    await refused(b, "hand", {"raised": False, "id": c.id}, "forbidden")


async def test_promote_and_demote(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host, viewer, anna = await clients(), await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await viewer.join(meeting=meeting.id, name="Watcher")
    anna_token = await invite(live_server, meeting, "Anna", "participant")
    await anna.join(token=anna_token)
    assert await viewer.call("hand", {"raised": True}) == {"ok": True}

    assert await host.call("set_role", {"id": viewer.id, "role": "speaker"}) == {"ok": True}
    you = await viewer.next("you")
    assert you["role"] == "speaker" and "publish_audio" in you["permissions"]
    updated = await anna.until("participant_updated", lambda d: d["role"] == "speaker")
    # Given the floor, the raised hand is answered: everyone sees it come down.
    assert updated["id"] == viewer.id and updated["hand"] is False
    assert await anna.until("hands", lambda d: viewer.id not in d["hands"])
    assert await viewer.call("state", {"mic": True}) == {"ok": True}
    assert await host.call("set_role", {"id": viewer.id, "role": "viewer"}) == {"ok": True}
    you = await viewer.next("you")
    assert you["role"] == "viewer" and you["mic"] is False

    # A roster member keeps a new role for the next visit.
    assert await host.call("set_role", {"id": anna.id, "role": "moderator"}) == {"ok": True}
    you = await anna.next("you")
    assert "moderate" in you["permissions"]
    assert "lobby" in (await anna.next("lobby_updated"))
    [entry] = [e for e in await live_server.store.list_roster(meeting.id) if e.name == "Anna"]
    assert entry.role is Role.MODERATOR
    await refused(anna, "set_role", {"id": host.id, "role": "viewer"}, "forbidden")
    await refused(host, "set_role", {"id": anna.id, "role": "boss"}, "invalid")


async def test_ask_mute_reaches_only_the_target(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, settings={"lobby": False})
    host, anna, boris = await clients(), await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await anna.join(token=await invite(live_server, meeting, "Anna", "participant"))
    await boris.join(token=await invite(live_server, meeting, "Boris", "participant"))
    assert await host.call("ask_mute", {"id": anna.id}) == {"ok": True}
    assert await anna.next("mute_request") == {"by": "Host"}
    assert await boris.call("chat", {"text": "sync"}) == {"ok": True}
    await host.next("chat")
    assert boris.unread("mute_request") == [] and host.unread("mute_request") == []


async def test_end_disconnects_everyone(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    host, anna, waiting = await clients(), await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await anna.join(token=await invite(live_server, meeting, "Anna", "moderator"))
    await waiting.join(token=await invite(live_server, meeting, "Late", "participant"))
    assert await anna.call("end", {}) == {"ok": True}
    for client in (host, anna, waiting):
        assert (await client.next("ended"))["message"]
        await asyncio.wait_for(client.closed.wait(), 5)
    assert live_server.app[LIVE].live(meeting.id) is None
    stays = await live_server.store.list_attendance(meeting.id)
    assert sorted(s.name for s in stays) == ["Anna", "Host"]
    assert all(s.left_at is not None for s in stays)


async def test_grace_period_keeps_the_seat(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    token = await invite(live_server, meeting, "Anna", "participant")
    anna = await clients()
    await anna.join(token=token)
    await admitted(host, anna)
    seat_id = anna.id

    await anna.close()
    dropped = await host.until("participant_updated", lambda d: d["id"] == seat_id)
    assert dropped["connected"] is False
    back = await clients()
    assert await back.join(token=token) == {"ok": True, "status": "joined"}  # no lobby
    assert back.id == seat_id
    assert (await host.until("participant_updated", lambda d: d["id"] == seat_id))["connected"]

    # With the seat key (and no token... the same token here) from another device.
    await back.close()
    await host.until("participant_updated", lambda d: not d["connected"])
    started = asyncio.get_running_loop().time()
    left = await host.next("participant_left", wait=live_server.settings.reconnect_grace + 3)
    assert left == {"id": seat_id, "reason": "timeout"}
    assert asyncio.get_running_loop().time() - started >= live_server.settings.reconnect_grace - 0.5
    later = await clients()
    assert (await later.call("join", {"token": token}))["status"] == "lobby"


async def test_second_join_with_same_token(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server, settings={"lobby": False})
    token = await invite(live_server, meeting, "Anna", "participant")
    first, second, host = await clients(), await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await first.join(token=token)
    await refused(second, "join", {"token": token}, "already_joined")
    await refused(first, "join", {"token": token}, "already_joined")
    assert await first.call("chat", {"text": "still here"}) == {"ok": True}
    assert (await host.next("chat"))["text"] == "still here"

    # With the seat key the second connection takes the seat over.
    assert await second.join(token=token, seat=first.snapshot["seat"]) == {
        "ok": True,
        "status": "joined",
    }
    assert second.id == first.id
    assert (await first.next("replaced"))["message"]
    await asyncio.wait_for(first.closed.wait(), 5)
    assert await second.call("chat", {"text": "moved"}) == {"ok": True}
    assert (await host.next("chat"))["text"] == "moved"
    names = [p["name"] for p in second.snapshot["participants"]]
    assert names == ["Host", "Anna"]


async def test_second_join_while_waiting_in_the_lobby(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server)
    token = await invite(live_server, meeting, "Anna", "participant")
    first, second = await clients(), await clients()
    assert (await first.call("join", {"token": token}))["status"] == "lobby"
    await refused(second, "join", {"token": token}, "already_joined")
    await first.close()  # leaving the lobby frees the token
    for _ in range(100):
        if live_server.app[LIVE].live(meeting.id) is None:
            break
        await asyncio.sleep(0.02)
    assert (await second.call("join", {"token": token}))["status"] == "lobby"


async def test_attendance_rows(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    host, anna = await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await anna.join(token=await invite(live_server, meeting, "Anna", "participant", region="Tver"))
    stays = await live_server.store.list_attendance(meeting.id)
    assert [s.name for s in stays] == ["Host"]  # waiting in the lobby is not attending
    await admitted(host, anna)
    assert await anna.call("leave", {}) == {"ok": True}
    await host.until("participant_left", lambda d: d["reason"] == "left")
    stays = await live_server.store.list_attendance(meeting.id)
    assert [(s.name, s.region, s.role) for s in stays] == [
        ("Host", "", "host"),
        ("Anna", "Tver", "participant"),
    ]
    assert stays[0].left_at is None
    assert stays[1].left_at is not None and stays[1].left_at >= stays[1].joined_at


async def test_live_rooms_and_metrics(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    host, anna = await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await anna.join(token=await invite(live_server, meeting, "Anna", "participant"))
    live = live_server.app[LIVE].live(meeting.id)
    assert live is not None
    assert [p["name"] for p in live["participants"]] == ["Host"]
    assert [e["name"] for e in live["lobby"]] == ["Anna"]
    await refused(anna, "chat", {"text": "from the lobby"}, "not_joined")
    async with aiohttp.ClientSession() as http, http.get(live_server.url + "/metrics") as r:
        text = await r.text()
    assert 'veche_errors_total{kind="not_joined"} 1.0' in text
    assert "veche_meetings_live 1.0" in text
    assert 'veche_participants{state="room"} 1.0' in text
    assert 'veche_participants{state="lobby"} 1.0' in text
    await live_server.app[LIVE].end(meeting.id, "Closed by the administrator.")
    assert (await host.next("ended"))["message"] == "Closed by the administrator."
    assert (await anna.next("ended"))["message"] == "Closed by the administrator."
    assert live_server.app[LIVE].live(meeting.id) is None


async def test_other_origins_are_refused(live_server: LiveServer) -> None:
    path = "/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http:
        async with http.get(live_server.url + path, headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 400
        async with http.get(live_server.url + path, headers={"Origin": live_server.url}) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == live_server.url


async def test_deleting_a_live_meeting_ends_it(live_server: LiveServer, clients: Opener) -> None:
    meeting = await make_meeting(live_server)
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    status, _ = await live_server.api("DELETE", f"/api/meetings/{meeting.id}")
    assert status == 204
    assert (await host.next("ended"))["message"]
    await asyncio.wait_for(host.closed.wait(), 5)


async def test_viewers_are_not_told_of_each_other_but_the_crew_is(
    live_server: LiveServer, clients: Opener
) -> None:
    """A broadcast's audience may be hundreds: a viewer hears of the meeting's participants,
    not of every other viewer (which would be a message per viewer per join)."""
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host, first, second = await clients(), await clients(), await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    await first.join(meeting=meeting.id, name="First viewer")
    await second.join(meeting=meeting.id, name="Second viewer")
    names = {p["name"] for p in second.snapshot["participants"]}
    assert names == {"Host", "Second viewer"}, "a viewer's snapshot has no other viewers"
    # The host hears of both; the first viewer is not told of the second.
    await host.until("participant_joined", lambda d: d["name"] == "Second viewer")
    await asyncio.sleep(0.2)
    assert all(d["name"] != "Second viewer" for d in first.unread("participant_joined"))

    # Given the floor, the second viewer learns of the audience, and the audience of them.
    assert await host.call("set_role", {"id": second.id, "role": "speaker"}) == {"ok": True}
    await second.until("participant_joined", lambda d: d["id"] == first.id)
    await first.until("participant_updated", lambda d: d["id"] == second.id)
    # Back in the audience: the other viewers forget them, and they forget the other viewers.
    assert await host.call("set_role", {"id": second.id, "role": "viewer"}) == {"ok": True}
    await first.until("participant_left", lambda d: d["id"] == second.id)
    await second.until("participant_left", lambda d: d["id"] == first.id)
    await host.until(
        "participant_updated", lambda d: d["id"] == second.id and d["role"] == "viewer"
    )
    # Leaving: only the crew is told of a viewer's departure.
    assert await first.call("leave", {}) == {"ok": True}
    await host.until("participant_left", lambda d: d["id"] == first.id)
    await asyncio.sleep(0.2)
    assert all(d["id"] != first.id for d in second.unread("participant_left"))
