"""The broadcast's HLS programme over a real server: aiortc publishers of known colours in a
live meeting, the programme process (`python -m recording.egress --stage`, started by the first
playlist request) receiving the stage as viewers do, its segments decoded with PyAV showing the
stage and only the stage, following a spotlight, stopped when idle, kept as VOD."""

import asyncio
import io
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from fractions import Fraction
from typing import Any

import aiohttp
import av
import pytest

from rooms.meeting import Meeting
from server.config import Settings
from server.programmes import PROGRAMMES
from tests.conftest import LiveServer
from tests.media_clients import wait_for
from tests.recording_fixtures import PEOPLE, KnownPeer, close_to, known_clip, rgb_at
from tests.sio_client import Client, invite, make_meeting

ANNA, BORIS = PEOPLE[0], PEOPLE[1]  # red (VP8) and green (H.264)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1", hls_size="320x180", hls_fps=15)


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, settings={"lobby": False})
    return made


@pytest.fixture
async def peers(live_server: LiveServer, meeting: Meeting) -> AsyncIterator[list[KnownPeer]]:
    """Anna, the host (on the stage by her role), and Boris, a participant: both publish,
    neither speaks (no audio level), so the auto stage is Anna's alone."""
    made: list[KnownPeer] = []
    for person, role in ((ANNA, "host"), (BORIS, "participant")):
        client = await Client.open(live_server.url)
        peer = KnownPeer(client, known_clip(person))
        made.append(peer)
        peer.token = await invite(live_server, meeting, person.name, role)
        await client.join(token=peer.token)
        await peer.publish()
    yield made
    for peer in made:
        await peer.close()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, await response.text()


async def get_bytes(url: str) -> bytes:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, (url, response.status)
        return await response.read()


def segments(playlist: str) -> list[tuple[str, Fraction]]:
    found, duration = [], Fraction(0)
    for line in playlist.splitlines():
        if line.startswith("#EXTINF:"):
            duration = Fraction(line[8:].split(",")[0])
        elif line and not line.startswith("#"):
            found.append((line, duration))
    return found


def pictures(data: bytes) -> list[Any]:
    with av.open(io.BytesIO(data), format="mpegts") as container:
        return [f.to_rgb() for f in container.decode(container.streams.video[0])]


def shows(frames: list[Any], colour: tuple[int, int, int]) -> bool:
    """Whether any picture has `colour` somewhere on a coarse grid (any tile, any layout)."""
    for frame in frames:
        for gx in range(1, 16):
            for gy in range(1, 9):
                x, y = gx * frame.width // 16, gy * frame.height // 9
                if close_to(rgb_at(frame, x, y), colour, 30):
                    return True
    return False


async def latest_pictures(server: LiveServer, meeting: Meeting, token: str) -> list[Any]:
    status, text = await get(f"{server.url}/hls/{meeting.id}/index.m3u8?token={token}")
    assert status == 200, text
    listed = segments(text)
    assert listed, text
    uri = listed[-1][0]
    return pictures(await get_bytes(f"{server.url}/hls/{meeting.id}/{uri}"))


async def test_the_programme_starts_for_a_player_shows_the_stage_and_follows_a_spotlight(
    live_server: LiveServer, meeting: Meeting, peers: list[KnownPeer]
) -> None:
    anna, boris = peers
    token = anna.token
    base = f"{live_server.url}/hls/{meeting.id}/index.m3u8?token={token}"
    asked = time.monotonic()
    status, text = await get(base)
    waited = time.monotonic() - asked
    assert status == 200, text
    # The first request waited for the first segment (the process joins, then 2 s).
    listed = segments(text)
    assert listed and all("?prg=" in uri and f"token={token}" in uri for uri, _ in listed), text
    assert "#EXT-X-ENDLIST" not in text
    assert waited < 8.0, waited
    programmes = live_server.app[PROGRAMMES]
    session = programmes.running(meeting.id)
    assert session is not None

    # The stage is Anna's: her colour, never Boris's (he is not on it).
    await asyncio.sleep(2.5)  # a later segment: the picture has settled
    frames = await latest_pictures(live_server, meeting, token)
    assert frames and shows(frames, ANNA.colour)
    assert not shows(frames, BORIS.colour)

    # The hidden seat is not in anyone's list.
    status, info = await live_server.api("GET", f"/api/meetings/{meeting.id}")
    assert status == 200
    assert all("prg-" not in str(p) for p in info.get("live", {}).get("participants", []))

    # A moderator spotlights Boris: the programme follows the stage within a segment or two.
    ack = await anna.client.call("spotlight", {"participant": boris.id})
    assert ack.get("ok") is True, ack
    deadline = time.monotonic() + 12
    while True:
        await asyncio.sleep(2.0)
        frames = await latest_pictures(live_server, meeting, token)
        if shows(frames, BORIS.colour):
            break
        assert time.monotonic() < deadline, "the programme did not follow the stage"
    # Still one process for the meeting, however many players ask.
    results = await asyncio.gather(*(get(base) for _ in range(5)))
    assert all(status == 200 for status, _ in results)
    assert programmes.running(meeting.id) is session

    # The meeting ends (everyone leaves): the process stops by itself and the playlist is the
    # VOD of the broadcast, every segment decodable, durations adding up.
    for peer in peers:
        await peer.client.call("leave", {})
    await wait_for(lambda: not session.live, within=20)
    status, text = await get(base)
    assert status == 200, text
    assert "#EXT-X-ENDLIST" in text and "#EXT-X-PLAYLIST-TYPE:VOD" in text, text
    listed = segments(text)
    assert len(listed) >= 3, text
    for uri, duration in listed[:-1]:  # the last one may be short
        assert abs(duration - 2) < Fraction(1, 5), text
        frames = pictures(await get_bytes(f"{live_server.url}/hls/{meeting.id}/{uri}"))
        assert abs(len(frames) - duration * 15) <= 2
    assert (session.directory / "programme.mp4").is_file()


async def test_an_idle_programme_stops_and_a_new_player_starts_another(
    live_server: LiveServer, meeting: Meeting, peers: list[KnownPeer]
) -> None:
    anna = peers[0]
    programmes = live_server.app[PROGRAMMES]
    programmes._settings = replace(live_server.settings, hls_idle=1.0)
    url = f"{live_server.url}/hls/{meeting.id}/index.m3u8?token={anna.token}"
    status, text = await get(url)
    assert status == 200 and segments(text), text
    first = programmes.running(meeting.id)
    assert first is not None
    await asyncio.sleep(1.5)  # nobody asks
    await programmes.sweep()
    await wait_for(lambda: not first.live, within=15)
    assert programmes.running(meeting.id) is None
    # Its playlist stays, ended; the next player starts a new programme.
    status, text = await get(f"{url}&prg={first.id}")
    assert status == 200 and "#EXT-X-ENDLIST" in text, text
    status, text = await get(url)
    assert status == 200 and segments(text), text
    second = programmes.running(meeting.id)
    assert second is not None and second.id != first.id


async def test_programme_ids_that_are_not_ours_are_404(
    live_server: LiveServer, meeting: Meeting
) -> None:
    token = await invite(live_server, meeting, "Анна", "host")
    base = f"{live_server.url}/hls/{meeting.id}"
    for query in ("prg=../../etc", "prg=20261128T000000-abcd", "prg="):
        status, text = await get(f"{base}/index.m3u8?token={token}&{query}")
        assert status == 404, (query, text)
        assert "error" in text
    # Nobody is in the meeting: no programme starts, nothing was recorded.
    status, text = await get(f"{base}/index.m3u8?token={token}")
    assert status == 404 and "no_programme" in text
    assert live_server.app[PROGRAMMES].running(meeting.id) is None


async def test_seats_outside_the_roster_are_told_when_everyone_has_left(
    live_server: LiveServer, meeting: Meeting
) -> None:
    """The programme's (or a recorder's, a projector's) seat is not a participant: when the
    last participant leaves, the meeting has ended for it and it is let go, whatever it was
    doing (an answer to an offer in flight used to leave it waiting for a minute)."""
    host = await Client.open(live_server.url)
    programme = await Client.open(live_server.url)
    try:
        await host.join(token=await invite(live_server, meeting, "Анна", "host"))
        token = live_server.tokens.programme(meeting.id, "20261128T000000-abcd")
        assert (await programme.join(token=token))["status"] == "joined"
        assert programme.snapshot["self"] == {"id": "prg-20261128T000000-abcd", "kind": "programme"}
        assert "stage" in programme.snapshot
        assert "prg-" not in str(host.unread("participant_joined"))
        await host.call("leave", {})
        ended = await programme.next("ended")
        assert ended == {"message": "everyone has left"}
        await asyncio.wait_for(programme.closed.wait(), 5)
    finally:
        await host.close()
        await programme.close()
