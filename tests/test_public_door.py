"""The public door of a meeting (issue 11, rows 2 and 7): a crowd of anonymous viewers cannot
lock the roster out, a viewer's dropped seat is not held against anyone, anonymous joins are
limited per address, and a viewer's hand is not told to the whole audience. Real socket.io
clients against a real server on loopback."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace

import pytest

from server.config import Settings
from server.signaling import NAMESPACE
from server.visitors import AddressBuckets
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

Opener = Callable[[], Awaitable[Client]]
CAP = 40


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(
        settings,
        max_viewers=CAP,
        max_participants=CAP,
        anonymous_joins_burst=2000,
        anonymous_joins_per_second=100.0,
        reconnect_grace=30.0,  # as in production: a dropped seat is held this long
    )


@pytest.fixture
async def clients(live_server: LiveServer) -> AsyncIterator[Opener]:
    opened: list[Client] = []

    async def open_client() -> Client:
        client = await Client.open(live_server.url)
        opened.append(client)
        return client

    yield open_client
    await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)


async def test_a_roster_moderator_enters_while_a_thousand_anonymous_joins_are_attempted(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    crowd = await asyncio.gather(*(clients() for _ in range(100)))
    codes: list[str] = []

    attempts = 0

    async def keep_trying(client: Client) -> None:
        nonlocal attempts
        while attempts < 1000:  # 1,000 joins in all, made by whoever is not seated yet
            attempts += 1
            ack = await client.call("join", {"meeting": meeting.id, "name": "bot"}, wait=20)
            if ack.get("status") == "joined":
                return
            codes.append(ack["error"]["code"])

    async def moderator_enters() -> Client:
        await asyncio.sleep(0.05)  # the crowd is at the door already
        moderator = await clients()
        await moderator.join(token=await invite(live_server, meeting, "Host", "moderator"))
        return moderator

    crowding = asyncio.gather(*(keep_trying(client) for client in crowd))
    moderator, _ = await asyncio.gather(moderator_enters(), crowding)
    assert moderator.ack == {"ok": True, "status": "joined"}
    status, found = await live_server.api("GET", f"/api/meetings/{meeting.id}")
    assert status == 200
    live = found["live"]
    viewers = [p for p in live["participants"] if p["roster_id"] is None]
    assert len(viewers) == CAP
    # Once full, the room stays full: every try after the first CAP seats was refused.
    assert attempts == 1000 and len(codes) == 1000 - CAP
    assert set(codes) == {"full"}

    # A viewer from the roster always fits, and so does a guest of the crew.
    roster_viewer = await clients()
    await roster_viewer.join(token=await invite(live_server, meeting, "Head", "viewer"))
    assert roster_viewer.ack["status"] == "joined"

    # Dropped viewers' seats are held for the grace period but not against newcomers.
    holders = [c for c in crowd if c.received.get("joined")]
    assert len(holders) == CAP
    await asyncio.gather(*(c.close() for c in holders[:10]))
    await asyncio.sleep(0.3)
    newcomers = await asyncio.gather(*(clients() for _ in range(10)))
    for newcomer in newcomers:
        ack = await newcomer.call("join", {"meeting": meeting.id, "name": "late"})
        assert ack == {"ok": True, "status": "joined"}, ack
    extra = await clients()
    ack = await extra.call("join", {"meeting": meeting.id, "name": "one too many"})
    assert ack["error"]["code"] == "full"


async def test_anonymous_joins_are_limited_per_address(
    live_server: LiveServer, clients: Opener
) -> None:
    namespace_limit = Settings().anonymous_joins_burst
    # This server lets crowds in for the test above; give it the default per-address limit.
    live_server.app[NAMESPACE]._anonymous = AddressBuckets(namespace_limit, 2.0)
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    crowd = await asyncio.gather(*(clients() for _ in range(namespace_limit + 5)))
    acks = [await c.call("join", {"meeting": meeting.id, "name": "bot"}) for c in crowd]
    assert [a.get("status") for a in acks].count("joined") == namespace_limit
    assert {a["error"]["code"] for a in acks if "error" in a} == {"rate_limited"}
    # The roster is not an anonymous crowd: its members come in with their links.
    moderator = await clients()
    await moderator.join(token=await invite(live_server, meeting, "Host", "moderator"))
    assert moderator.ack["status"] == "joined"


async def test_a_viewers_hand_is_not_told_to_the_rest_of_the_audience(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    speaker = await clients()
    await speaker.join(token=await invite(live_server, meeting, "Speaker", "speaker"))
    audience = await asyncio.gather(*(clients() for _ in range(30)))
    for viewer in audience:
        await viewer.join(meeting=meeting.id, name="viewer")
    await asyncio.sleep(0.2)
    for client in (host, speaker, *audience):
        client.drain()
        client.received.clear()

    for _ in range(2):  # every viewer raises and lowers their hand twice: 120 toggles
        for viewer in audience:
            assert await viewer.call("hand", {"raised": True}) == {"ok": True}
            assert await viewer.call("hand", {"raised": False}) == {"ok": True}
    await host.until("hands", lambda d: d["hands"] == [] and len(host.received["hands"]) >= 120)
    # Each viewer hears of their own hand only; the crew hears of every one.
    for viewer in audience:
        assert len(viewer.received["hands"]) == 4, viewer.received["hands"]
        assert all(not d["hands"] or d["hands"] == [viewer.id] for d in viewer.received["hands"])
    assert len(host.received["hands"]) == 120
    assert len(speaker.received["hands"]) == 120
    # The button of a viewer's hand still follows the queue.
    await audience[0].call("hand", {"raised": True})
    mine = await audience[0].until("hands", lambda d: audience[0].id in d["hands"])
    assert mine["hands"] == [audience[0].id]

    # A participant's hand is still seen by the whole audience.
    for viewer in audience:
        viewer.drain()
    assert await speaker.call("hand", {"raised": True}) == {"ok": True}
    for viewer in audience:
        seen = await viewer.until("hands", lambda d: speaker.id in d["hands"])
        assert speaker.id in seen["hands"]
