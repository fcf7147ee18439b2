"""A wave of viewers joining at once (issue 4): everyone is seated, told, and counted.

What a meeting's organiser would check: one attendance row per stay, closed when the stay ends,
even when it ends right after the join.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

Opener = Callable[[], Awaitable[Client]]
WAVE = 12


@pytest.fixture
async def clients(live_server: LiveServer) -> AsyncIterator[Opener]:
    opened: list[Client] = []

    async def open_client() -> Client:
        client = await Client.open(live_server.url)
        opened.append(client)
        return client

    yield open_client
    for client in opened:
        await client.close()


async def test_a_wave_of_viewers_is_seated_and_counted(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    viewers = [await clients() for _ in range(WAVE)]

    acks = await asyncio.gather(
        *(v.join(meeting=meeting.id, name=f"Viewer {i}") for i, v in enumerate(viewers))
    )
    assert all(ack == {"ok": True, "status": "joined"} for ack in acks)
    # Each newcomer's snapshot lists itself, and the host hears of every one of them.
    for i, viewer in enumerate(viewers):
        assert viewer.snapshot["self"]["name"] == f"Viewer {i}"
        listed = [p["id"] for p in viewer.snapshot["participants"]]
        assert viewer.id in listed and host.id in listed
    for _ in range(WAVE):
        await host.next("participant_joined")
    stays = await live_server.store.list_attendance(meeting.id)
    assert sorted(s.name for s in stays) == sorted(["Host", *(f"Viewer {i}" for i in range(WAVE))])
    assert all(s.left_at is None for s in stays)

    # Half leave at once, the rest stay until the host ends the meeting: every row is closed.
    await asyncio.gather(*(v.call("leave", {}) for v in viewers[: WAVE // 2]))
    stays = await live_server.store.list_attendance(meeting.id)
    closed = sorted(s.name for s in stays if s.left_at is not None)
    assert closed == sorted(f"Viewer {i}" for i in range(WAVE // 2))
    assert await host.call("end", {}) == {"ok": True}
    stays = await live_server.store.list_attendance(meeting.id)
    assert len(stays) == WAVE + 1 and all(s.left_at is not None for s in stays)


async def test_leaving_right_after_joining_closes_the_row(
    live_server: LiveServer, clients: Opener
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    host = await clients()
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    viewer = await clients()
    # The leave goes out as soon as the join's ack is in, before `joined` comes.
    joined = await viewer.call("join", {"meeting": meeting.id, "name": "Brief"})
    assert joined == {"ok": True, "status": "joined"}
    assert await viewer.call("leave", {}) == {"ok": True}
    await host.until("participant_left", lambda d: d["reason"] == "left")
    stays = await live_server.store.list_attendance(meeting.id)
    brief = [s for s in stays if s.name == "Brief"]
    assert len(brief) == 1 and brief[0].left_at is not None

    # The meeting ending right after a join closes that row too.
    late = await clients()
    joined = await late.call("join", {"meeting": meeting.id, "name": "Late"})
    assert joined == {"ok": True, "status": "joined"}
    assert await host.call("end", {}) == {"ok": True}
    stays = await live_server.store.list_attendance(meeting.id)
    assert [s.name for s in stays] == ["Host", "Brief", "Late"]
    assert all(s.left_at is not None for s in stays)
