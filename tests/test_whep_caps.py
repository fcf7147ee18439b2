"""WHEP floods (issue 11, row 5): offers that never complete ICE are closed after the ICE
timeout, sessions are capped per meeting, per address and in total (503 + Retry-After), the
open-file limit is raised and /readyz reports its head-room. A real server on loopback and a
real aiortc offer whose peer goes away before connecting."""

import asyncio
import contextlib
import gc
import resource
from collections.abc import AsyncIterator
from dataclasses import replace

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from media import ice
from rooms.meeting import Meeting
from server.config import Settings
from server.open_files import open_files
from server.whip import SESSIONS
from tests.conftest import LiveServer, start_server
from tests.media_clients import LOOPBACK, wait_for
from tests.sio_client import invite, make_meeting

SDP = "application/sdp"
ICE_TIMEOUT = 1.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1", ice_connect_timeout=ICE_TIMEOUT)


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    return await make_meeting(live_server, visibility="public", settings={"lobby": False})


async def offer_of_a_closed_peer(direction: str) -> str:
    """An offer (audio + video) whose peer is closed: ICE never completes."""
    pc = RTCPeerConnection(ice.configuration(LOOPBACK))
    for kind in ("audio", "video"):
        pc.addTransceiver(kind, direction=direction)
    ice.restrict_candidates(pc, LOOPBACK)
    await pc.setLocalDescription(await pc.createOffer())
    offer = str(pc.localDescription.sdp)
    await pc.close()
    return offer


@pytest.fixture(scope="module")
def dead_offer() -> str:
    """A WHEP player's offer that never connects."""
    return asyncio.run(offer_of_a_closed_peer("recvonly"))


def rss_kb() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1])


async def post(
    http: aiohttp.ClientSession, url: str, offer: str
) -> tuple[int, dict[str, str], str]:
    async with http.post(url, data=offer, headers={"Content-Type": SDP}) as response:
        return response.status, dict(response.headers), await response.text()


@contextlib.asynccontextmanager
async def client(local: str = "127.0.0.1", limit: int = 50) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=limit, local_addr=(local, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def test_a_thousand_whep_posts_that_never_connect_leave_nothing_behind(
    live_server: LiveServer, meeting: Meeting, dead_offer: str
) -> None:
    url = f"{live_server.url}/whep/{meeting.id}"
    cap = live_server.settings.webrtc_sessions_per_address

    async def flood() -> float:
        """1,000 POSTs at once; the seconds until every session is gone again."""
        async with client() as http:
            results = await asyncio.gather(*(post(http, url, dead_offer) for _ in range(1000)))
        statuses = [status for status, _, _ in results]
        refused = [headers for status, headers, _ in results if status == 503]
        # The address's cap lets some in; the rest are told when to come back.
        assert statuses.count(201) == cap
        assert len(refused) == 1000 - cap
        assert all(int(headers["Retry-After"]) > 0 for headers in refused)
        assert len(live_server.app[SESSIONS]) == cap
        return await wait_for(
            lambda: not live_server.app[SESSIONS] and open_files() <= files + 2,
            within=15,
            step=0.2,
            explain=lambda: (
                f"{len(live_server.app[SESSIONS])} sessions, {open_files()} files "
                f"(baseline {files})"
            ),
        )

    # The first flood warms the process up (imports, caches, the allocator's arenas) ...
    files = open_files()
    await flood()
    gc.collect()
    files, rss = open_files(), rss_kb()
    # ... the second must leave it as it found it: open files, sessions, memory.
    waited = await flood()
    assert waited < ICE_TIMEOUT + 10
    gc.collect()
    print(f"second flood: gone in {waited:.1f} s, files {open_files()}/{files}")
    print(f"RSS {rss_kb()} kB after, {rss} kB before")
    assert rss_kb() <= rss * 1.10, f"RSS {rss_kb()} kB against {rss} kB before the flood"


async def test_a_player_that_connects_outlives_the_ice_timeout(
    live_server: LiveServer, meeting: Meeting
) -> None:
    pc = RTCPeerConnection(ice.configuration(LOOPBACK))
    try:
        for kind in ("audio", "video"):
            pc.addTransceiver(kind, direction="recvonly")
        ice.restrict_candidates(pc, LOOPBACK)
        await pc.setLocalDescription(await pc.createOffer())
        async with client() as http:
            url = f"{live_server.url}/whep/{meeting.id}"
            status, _, answer = await post(http, url, pc.localDescription.sdp)
        assert status == 201, answer
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await wait_for(lambda: pc.iceConnectionState == "completed", within=5)
        await asyncio.sleep(ICE_TIMEOUT * 2)
        assert len(live_server.app[SESSIONS]) == 1
    finally:
        await pc.close()


async def test_caps_per_meeting_per_address_and_in_total(
    settings: Settings, dead_offer: str
) -> None:
    small = replace(
        settings,
        webrtc_sessions_max=5,
        webrtc_sessions_per_meeting=3,
        webrtc_sessions_per_address=4,
        ice_connect_timeout=30.0,
    )
    server, runner = await start_server(small)
    try:
        first = await make_meeting(server, visibility="public", settings={"lobby": False})
        second = await make_meeting(server, visibility="public", settings={"lobby": False})

        async def statuses(meeting: Meeting, local: str, count: int) -> list[int]:
            async with client(local) as http:
                url = f"{server.url}/whep/{meeting.id}"
                return [(await post(http, url, dead_offer))[0] for _ in range(count)]

        # per meeting: 3
        assert await statuses(first, "127.0.0.1", 4) == [201, 201, 201, 503]
        # per address: 4 (3 in the first meeting + 1 here)
        assert await statuses(second, "127.0.0.1", 2) == [201, 503]
        # in total: 5, from another address
        assert await statuses(second, "127.0.0.2", 2) == [201, 503]
        async with client() as http, http.get(server.url + "/readyz") as response:
            room = (await response.json())["open_files"]
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        assert room["limit"] == soft == (hard if hard != resource.RLIM_INFINITY else soft)
        assert 0 < room["open"] < room["limit"] and room["free"] == room["limit"] - room["open"]
        # An ended session gives its place back.
        session = next(iter(server.app[SESSIONS].values()))
        async with client() as http:
            path = f"/whep/{session.meeting_id}/{session.id}"
            async with http.delete(server.url + path) as response:
                assert response.status == 204
        assert await statuses(second, "127.0.0.2", 1) == [201]
        # WHIP counts against the same caps: refused before anything is made.
        token = await invite(server, second, "Hall 1", "speaker")
        async with client("127.0.0.3") as http:
            headers = {"Content-Type": SDP, "Authorization": f"Bearer {token}"}
            whip_offer = await offer_of_a_closed_peer("sendonly")
            url = f"{server.url}/whip/{second.id}"
            async with http.post(url, data=whip_offer, headers=headers) as response:
                assert response.status == 503 and response.headers["Retry-After"]
                assert (await response.json())["error"]["code"] == "busy"
        status, found = await server.api("GET", f"/api/meetings/{second.id}")
        assert status == 200 and found["live"] is None  # nobody was seated
    finally:
        await runner.cleanup()
