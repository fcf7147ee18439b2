"""One access rule for a recording's media (issue 11, row 3): the MP4, the HLS VOD playlist,
its segments and the playback page (chapters) answer alike for every role and link kind.
A guest's link (made to watch the live broadcast) opens none of an invite-only meeting's
recordings. A real server on loopback; the recording's files are written as the egress leaves
them."""

from dataclasses import dataclass
from datetime import timedelta

import aiohttp
import pytest

from recording.compositor import HLS_DIRECTORY
from recording.hls import PLAYLIST
from rooms.meeting import Meeting, new_id, now
from rooms.recordings import Recording, RecordingStatus
from rooms.roles import Role
from server.recordings import directory_of, programme_path
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting

VOD = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
VOD += "#EXTINF:2.000,\nsegment-00000.ts\n#EXT-X-ENDLIST\n"


@dataclass
class Made:
    meeting: Meeting
    recording: Recording


async def recorded(server: LiveServer, visibility: str) -> Made:
    """A meeting with a finished recording: its MP4, its HLS playlist and one segment."""
    meeting = await make_meeting(server, visibility=visibility)
    started = now() - timedelta(minutes=5)
    rec = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.READY,
        started_at=started,
        stopped_at=started + timedelta(seconds=2),
        duration=2.0,
        size=4,
    )
    await server.store.add_recording(rec)
    mp4 = programme_path(server.settings, rec)
    hls = directory_of(server.settings, rec.id) / HLS_DIRECTORY
    hls.mkdir(parents=True)
    mp4.write_bytes(b"mp4!")
    (hls / PLAYLIST).write_text(VOD)
    (hls / "segment-00000.ts").write_bytes(b"\x47" * 188)
    return Made(meeting, rec)


async def status_of(url: str, headers: dict[str, str] | None = None) -> int:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as response:
        await response.read()
        return response.status


async def every_way(server: LiveServer, made: Made, token: str | None) -> dict[str, int]:
    """What each way to the recording's media answers to a request with `token` (as a query
    parameter, as players and <video> send it; "admin": the API key as a Bearer header)."""
    rec, base = made.recording, server.url
    headers = {"Authorization": f"Bearer {server.settings.api_key}"} if token == "admin" else {}
    query = f"token={token}" if token and token != "admin" else ""
    hls = f"{base}/hls/{made.meeting.id}"
    ways = {
        "file": f"{base}/api/recordings/{rec.id}/file",
        "playlist": f"{hls}/index.m3u8",
        "playlist of the recording": f"{hls}/index.m3u8?rec={rec.id}",
        "segment": f"{hls}/segment-00000.ts?rec={rec.id}",
        "playback page (chapters)": f"{base}/recordings/{rec.id}",
    }
    answers = {}
    for way, url in ways.items():
        joined = url + (("&" if "?" in url else "?") + query if query else "")
        answers[way] = await status_of(joined, headers)
    return answers


@pytest.mark.parametrize("visibility", ["invite", "public"])
async def test_every_way_to_a_recording_answers_alike_for_every_role_and_link(
    live_server: LiveServer, visibility: str
) -> None:
    made = await recorded(live_server, visibility)
    other = await make_meeting(live_server)
    tokens = live_server.tokens
    people: dict[str, str | None] = {
        "admin": "admin",
        **{
            f"roster {role.value}": await invite(live_server, made.meeting, role.value, role.value)
            for role in Role
        },
        "guest viewer link": tokens.guest(made.meeting.id, Role.VIEWER),
        "guest participant link": tokens.guest(made.meeting.id, Role.PARTICIPANT),
        "another meeting's roster": await invite(live_server, other, "Other", "host"),
        "nobody": None,
    }
    for who, token in people.items():
        answers = await every_way(live_server, made, token)
        allowed = visibility == "public" or who == "admin" or who.startswith("roster ")
        if allowed:
            assert set(answers.values()) == {200}, (who, answers)
        else:
            # Refused everywhere (401 or 403; the page is an HTML 403 for anyone refused).
            assert all(code in (401, 403) for code in answers.values()), (who, answers)
