"""A graceful stop: everyone hears `server_stopping`, stays are closed, connections end."""

import asyncio
from dataclasses import replace

from rooms.sqlite_store import SqliteStore
from server.config import Settings
from tests.conftest import start_server
from tests.sio_client import Client, invite, make_meeting


async def test_stop_tells_everyone_closes_stays_and_disconnects(settings: Settings) -> None:
    settings = replace(settings, shutdown_notice=0.3)
    server, runner = await start_server(settings)
    meeting = await make_meeting(server, settings={"lobby": False})
    clients = [await Client.open(server.url), await Client.open(server.url)]
    try:
        await clients[0].join(token=await invite(server, meeting, "Host", "host"))
        await clients[1].join(token=await invite(server, meeting, "Anna", "participant"))
        # aiohttp stops reading from connections once it shuts down, so the server cannot hear
        # clients leave: it waits out the notice, then closes them itself.
        await runner.cleanup()
        for client in clients:
            assert (await client.next("server_stopping"))["message"]
            await asyncio.wait_for(client.closed.wait(), 10)
    finally:
        for client in clients:
            await client.close()
    store = await SqliteStore.open(settings.database_path)
    try:
        stays = await store.list_attendance(meeting.id)
    finally:
        await store.close()
    assert sorted(s.name for s in stays) == ["Anna", "Host"]
    assert all(s.left_at is not None for s in stays)
