"""Signaling with a real redis-server as the socket.io message queue (cluster mode)."""

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from server.config import Settings
from tests.conftest import free_port, start_server
from tests.sio_client import Client, invite, make_meeting

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        REDIS,
        "--save",
        "",
        "--appendonly",
        "no",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = aioredis.Redis.from_url(url)
        for _ in range(100):
            try:
                await client.ping()
                break
            except (ConnectionError, OSError, aioredis.ConnectionError):
                await asyncio.sleep(0.05)
        await client.aclose()
        yield url
    finally:
        process.terminate()
        await process.wait()


async def test_join_and_chat_through_redis(settings: Settings, redis_url: str) -> None:
    server, runner = await start_server(replace(settings, redis_url=redis_url))
    clients: list[Client] = []
    try:
        meeting = await make_meeting(server)
        host, anna = await Client.open(server.url), await Client.open(server.url)
        clients += [host, anna]
        await host.join(token=await invite(server, meeting, "Host", "host"))
        assert (
            await anna.call("join", {"token": await invite(server, meeting, "Anna", "participant")})
        )["status"] == "lobby"
        lobby = await host.until("lobby_updated", lambda d: len(d["lobby"]) == 1)
        assert await host.call("admit", {"id": lobby["lobby"][0]["id"]}) == {"ok": True}
        await anna.next("admitted")
        anna.snapshot = await anna.next("joined")
        assert await anna.call("chat", {"text": "через Redis"}) == {"ok": True}
        for client in (host, anna):
            assert (await client.next("chat"))["text"] == "через Redis"
        # The room's emits went through the queue: this server is subscribed to it.
        probe = aioredis.Redis.from_url(redis_url)
        [(_, subscribers)] = await probe.pubsub_numsub("socketio")
        await probe.aclose()
        assert subscribers == 1
    finally:
        for client in clients:
            await client.close()
        await runner.cleanup()
