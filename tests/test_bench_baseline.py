"""The MediaRelay baseline refuses bad WHIP/WHEP requests clearly and keeps running."""

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bench.baseline.app import create_app
from bench.servers import free_port


@pytest.fixture
async def baseline() -> AsyncIterator[str]:
    runner = web.AppRunner(create_app())
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_bad_requests(baseline: str) -> None:
    sdp = {"Content-Type": "application/sdp"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{baseline}/whep/nothing", data=b"v=0\r\n", headers=sdp) as r:
            assert r.status == 404
            assert "nothing is published" in await r.text()
        async with http.post(f"{baseline}/whip/p0", json={"sdp": "v=0"}) as r:
            assert r.status == 415
        big = b"v=0\r\n" + b"a=x\r\n" * 20000
        async with http.post(f"{baseline}/whip/p0", data=big, headers=sdp) as r:
            assert r.status == 413
        async with http.delete(f"{baseline}/resource/unknown") as r:
            assert r.status == 404
        # Still serving: the same refusal again.
        async with http.post(f"{baseline}/whep/nothing", data=b"v=0\r\n", headers=sdp) as r:
            assert r.status == 404
