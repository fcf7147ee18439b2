"""The broadcast's HLS over a real server: a live programme (the compositor of a recording in
the catalog, its clock driven frame by frame) served as a sliding playlist whose segments decode
with PyAV, the VOD playlist after the stop, who may watch, and bad names."""

import io
from collections.abc import AsyncIterator
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from yarl import URL

from recording.compositor import Compositor
from rooms.meeting import Meeting, new_id, now
from rooms.recordings import Recording, RecordingStatus
from rooms.roles import Role
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting
from tests.test_recording_compositor import solid

FPS = 25
SEGMENT_FRAMES = 2 * FPS  # a keyframe, and a segment, every 2 s


async def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


def parse(text: str) -> tuple[list[tuple[str, Fraction]], dict[str, str], int]:
    """(segments as (uri, duration), tags, how many PROGRAM-DATE-TIMEs) of a playlist."""
    segments: list[tuple[str, Fraction]] = []
    tags: dict[str, str] = {}
    dates = 0
    duration = None
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            duration = Fraction(line[8:].split(",")[0])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            dates += 1
        elif line.startswith("#"):
            key, _, value = line.partition(":")
            tags[key] = value
        elif line:
            assert duration is not None, text
            segments.append((line, duration))
            duration = None
    return segments, tags, dates


def decode(data: bytes) -> tuple[int, float]:
    """(video frames, seconds of video) of one MPEG-TS segment decoded on its own."""
    with av.open(io.BytesIO(data), mode="r", format="mpegts") as container:
        stamps = [
            float(frame.time or 0.0) for frame in container.decode(container.streams.video[0])
        ]
    return len(stamps), (max(stamps) - min(stamps) + 1 / FPS) if stamps else 0.0


class Programme:
    """A recording in the catalog whose programme a manual-clock compositor makes."""

    def __init__(self, server: LiveServer, meeting: Meeting, window: int = 3) -> None:
        self.server = server
        self.recording = Recording(
            id=new_id(),
            meeting_id=meeting.id,
            title=meeting.title,
            status=RecordingStatus.RECORDING,
            started_at=now(),
            stopped_at=None,
        )
        self.directory: Path = server.settings.data_dir / "recordings" / self.recording.id
        self.compositor = Compositor(
            self.directory, size=(160, 90), fps=FPS, manual=True, hls_window=window
        )
        self.compositor.join("p1", "Анна")
        self.picture = solid((200, 30, 30), 160, 90)

    async def start(self) -> "Programme":
        await self.server.store.add_recording(self.recording)
        return self

    def segments(self, count: int) -> None:
        """Make frames until `count` more segments are complete (the next one has begun)."""
        made = round(self.compositor.duration * FPS)
        target = (made // SEGMENT_FRAMES + count) * SEGMENT_FRAMES + 1
        for _ in range(made, target):
            self.compositor.picture("p1", "camera", self.picture)
            self.compositor.tick()

    async def stop(self, status: RecordingStatus = RecordingStatus.READY) -> None:
        await self.compositor.finish()
        self.recording = replace(self.recording, status=status, stopped_at=now())
        await self.server.store.update_recording(self.recording)


@pytest.fixture
async def public(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    return made


@pytest.fixture
async def programmes() -> AsyncIterator[list[Programme]]:
    made: list[Programme] = []
    yield made
    for programme in made:
        await programme.compositor.finish()


async def test_live_playlist_slides_its_segments_decode_and_it_ends_as_vod(
    live_server: LiveServer, public: Meeting, programmes: list[Programme]
) -> None:
    url = f"{live_server.url}/hls/{public.id}"
    status, _, body = await get(f"{url}/index.m3u8")
    assert status == 404 and b'"no_programme"' in body  # not recorded

    programme = await Programme(live_server, public).start()
    programmes.append(programme)
    # The first segment is 2 s away: a live playlist with nothing yet, which players reload.
    status, _, body = await get(f"{url}/index.m3u8")
    assert status == 200 and parse(body.decode())[0] == [], body

    programme.segments(4)
    status, headers, body = await get(f"{url}/index.m3u8")
    assert status == 200, body
    assert headers["Content-Type"].startswith("application/vnd.apple.mpegurl")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["Access-Control-Allow-Origin"] == "*"  # another site may embed it
    segments, tags, dates = parse(body.decode())
    assert tags["#EXT-X-TARGETDURATION"] == "2" and tags["#EXT-X-MEDIA-SEQUENCE"] == "1"
    assert "#EXT-X-ENDLIST" not in tags and dates == len(segments) == 3
    rec = programme.recording.id
    assert [uri for uri, _ in segments] == [f"segment-0000{n}.ts?rec={rec}" for n in (1, 2, 3)]
    for uri, duration in segments:
        assert abs(duration - 2) < Fraction(1, FPS), segments
        status, headers, data = await get(f"{url}/{uri}")
        assert status == 200 and headers["Content-Type"] == "video/mp2t"
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        frames, seconds = decode(data)
        assert frames == SEGMENT_FRAMES and abs(seconds - float(duration)) < 1 / FPS

    # The segment being written is not served until the playlist lists it.
    status, _, body = await get(f"{url}/segment-00004.ts?rec={rec}")
    assert status == 404 and b'"not_found"' in body

    programme.segments(2)
    segments, tags, _ = parse((await get(f"{url}/index.m3u8"))[2].decode())
    assert tags["#EXT-X-MEDIA-SEQUENCE"] == "3"  # the window slid
    assert [uri.split("?")[0] for uri, _ in segments] == [
        "segment-00003.ts",
        "segment-00004.ts",
        "segment-00005.ts",
    ]
    assert (await get(f"{url}/segment-00001.ts?rec={rec}"))[0] == 200  # left the window, kept

    await programme.stop()
    status, _, body = await get(f"{url}/index.m3u8")
    segments, tags, dates = parse(body.decode())
    assert tags["#EXT-X-PLAYLIST-TYPE"] == "VOD" and "#EXT-X-ENDLIST" in tags
    assert tags["#EXT-X-MEDIA-SEQUENCE"] == "0" and dates == len(segments) == 7
    total = sum(duration for _, duration in segments)
    assert abs(float(total) - programme.compositor.duration) <= 1 / FPS
    frames = 0
    for uri, _ in segments:
        status, _, data = await get(f"{url}/{uri}")
        assert status == 200
        frames += decode(data)[0]
    assert frames == round(programme.compositor.duration * FPS)

    # A new recording has begun: its viewers wait for its first segment, not the old VOD.
    newer = await Programme(live_server, public).start()
    programmes.append(newer)
    for _ in range(10):
        newer.compositor.tick()
    segments, tags, _ = parse((await get(f"{url}/index.m3u8"))[2].decode())
    assert segments == [] and "#EXT-X-ENDLIST" not in tags
    # The old recording's segments stay reachable by their URLs.
    assert (await get(f"{url}/segment-00000.ts?rec={rec}"))[0] == 200


async def test_an_egress_that_died_leaves_a_playlist_served_as_ended(
    live_server: LiveServer, public: Meeting, programmes: list[Programme]
) -> None:
    programme = await Programme(live_server, public).start()
    programmes.append(programme)
    programme.segments(2)  # the playlist stays live on disk: the egress never finished
    programme.recording = replace(programme.recording, status=RecordingStatus.RENDERING)
    await live_server.store.update_recording(programme.recording)
    status, _, body = await get(f"{live_server.url}/hls/{public.id}/index.m3u8")
    assert status == 200
    segments, tags, _ = parse(body.decode())
    assert "#EXT-X-ENDLIST" in tags and len(segments) == 2


async def test_invite_only_broadcast_needs_a_token_of_its_meeting(
    live_server: LiveServer, public: Meeting, programmes: list[Programme]
) -> None:
    closed = await make_meeting(live_server, title="Закрытое", visibility="invite")
    programme = await Programme(live_server, closed).start()
    programmes.append(programme)
    programme.segments(1)
    url = f"{live_server.url}/hls/{closed.id}"
    rec = programme.recording.id

    async def status_of(path: str, **headers: str) -> tuple[int, Any]:
        status, _, body = await get(url + path, **headers)
        return status, body

    for path in ("/index.m3u8", f"/segment-00000.ts?rec={rec}"):
        status, body = await status_of(path)
        assert status == 401 and b'"unauthorized"' in body
        assert (await status_of(path + ("&" if "?" in path else "?") + "token=forged"))[0] == 401
    other = await invite(live_server, public, "Чужой", "participant")
    assert (await status_of(f"/index.m3u8?token={other}"))[0] == 403

    token = await invite(live_server, closed, "Зритель", "viewer")
    status, headers, body = await get(f"{url}/index.m3u8?token={token}")
    assert status == 200
    (uri, _), *_ = parse(body.decode())[0]
    assert uri == f"segment-00000.ts?rec={rec}&token={token}"  # any player sends it on
    status, headers, _ = await get(f"{url}/{uri}")
    assert status == 200 and headers["Cache-Control"].startswith("private")
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await status_of("/index.m3u8", **bearer))[0] == 200
    guest = live_server.tokens.guest(closed.id, Role.VIEWER)
    assert (await status_of(f"/index.m3u8?token={guest}"))[0] == 200
    admin = {"Authorization": f"Bearer {live_server.settings.api_key}"}
    assert (await status_of("/index.m3u8", **admin))[0] == 200

    # A public meeting closed to viewers is watched with a link only, as its viewer page.
    hidden = await make_meeting(
        live_server, visibility="public", settings={"viewers_allowed": False}
    )
    assert (await get(f"{live_server.url}/hls/{hidden.id}/index.m3u8"))[0] == 401


async def test_bad_names_and_unknown_meetings_are_404_json(
    live_server: LiveServer, public: Meeting, programmes: list[Programme]
) -> None:
    programme = await Programme(live_server, public).start()
    programmes.append(programme)
    programme.segments(1)
    other = await make_meeting(live_server, visibility="public")
    url = f"{live_server.url}/hls/{public.id}"
    rec = programme.recording.id
    (programme.directory / "hls" / "secret.ts").write_bytes(b"not for you")
    bad = [
        "/../../recordings",
        "/%2e%2e/%2e%2e/data.db",
        "/..%2Ftimeline.jsonl",
        "/timeline.jsonl",
        "/programme.mp4",
        "/secret.ts",
        "/.index.m3u8.1",
        "/segment-1.ts",
        "/segment-00000.ts/x",
        "/segment-00000.mp4",
        f"/segment-00000.ts?rec=../{rec}",
        "/segment-00099.ts",
    ]
    for path in bad:
        async with (
            aiohttp.ClientSession() as http,
            # encoded: sent as written, not tidied by the client
            http.get(URL(url + path, encoded=True), allow_redirects=False) as response,
        ):
            assert response.status == 404, path
            assert (await response.json())["error"]["code"] in ("not_found", "no_programme"), path
    assert (await get(f"{url}/segment-00000.ts?rec={rec}"))[0] == 200
    # A recording of another meeting is not reachable through this one's URL, nor the reverse.
    status, _, body = await get(f"{live_server.url}/hls/{other.id}/segment-00000.ts?rec={rec}")
    assert status == 404 and b'"no_programme"' in body
    status, _, body = await get(f"{live_server.url}/hls/{other.id}/index.m3u8")
    assert status == 404 and b'"no_programme"' in body
    status, _, body = await get(f"{live_server.url}/hls/nosuchmeeting/index.m3u8")
    assert status == 404 and b'"not_found"' in body
