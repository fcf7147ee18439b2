"""The recordings catalog over REST with a real server and SQLite: list, get, the programme
with Range requests, who may read (public vs invite-only), keep, retention, delete, bad input."""

import functools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import av

from rooms.meeting import Meeting, new_id
from rooms.recordings import Recording, RecordingStatus
from rooms.roles import Role
from server.config import Settings
from server.recordings import service
from tests.apiclient import bearer, call
from tests.conftest import LiveServer, start_server
from tests.sio_client import invite, make_meeting


@functools.cache
def small_mp4() -> bytes:
    """A real one-second H.264 + AAC MP4 (64x64), made once per test process."""
    path = Path(f"/tmp/veche-test-{new_id()}.mp4")
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=10)
        video.width = video.height = 64
        video.pix_fmt = "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for index in range(10):
            frame = av.VideoFrame(64, 64, "yuv420p")
            for plane in frame.planes:
                plane.update(bytes([index * 20]) * plane.buffer_size)
            frame.pts = index
            frame.time_base = Fraction(1, 10)
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for index in range(47):
            sound = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
            for channel in sound.planes:
                channel.update(bytes(channel.buffer_size))
            sound.sample_rate = 48000
            sound.pts = index * 1024
            out.mux(audio.encode(sound))
        out.mux(audio.encode(None))
    data = path.read_bytes()
    path.unlink()
    return data


async def fetch(
    url: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes, Any]:
    """GET as bytes: (status, body, headers)."""
    async with aiohttp.ClientSession() as http, http.get(url + path, headers=headers) as got:
        return got.status, await got.read(), got.headers


async def add(
    server: LiveServer,
    meeting: Meeting,
    *,
    days_ago: float = 1,
    keep: bool = False,
    status: RecordingStatus = RecordingStatus.READY,
    programme: bool = True,
) -> Recording:
    """A catalog row and its directory (with a real programme.mp4 when ready)."""
    stopped = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_ago)
    rec = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=status,
        started_at=stopped - timedelta(minutes=40),
        stopped_at=None if status is RecordingStatus.RECORDING else stopped,
        duration=1.0,
        size=len(small_mp4()) if programme else 0,
        keep=keep,
    )
    directory = server.settings.data_dir / "recordings" / rec.id
    directory.mkdir(parents=True)
    if programme:
        (directory / "programme.mp4").write_bytes(small_mp4())
    await server.store.add_recording(rec)
    return rec


async def test_list_get_and_the_file_with_range_requests(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title="Совет школ", visibility="public")
    rec = await add(live_server, meeting)
    older = await add(live_server, meeting, days_ago=3, programme=False)
    url = live_server.url

    # A public meeting's recordings: anyone.
    status, listed, _ = await call(url, "GET", f"/api/recordings?meeting={meeting.id}")
    assert status == 200
    assert [r["id"] for r in listed["recordings"]] == [rec.id, older.id]  # newest first
    status, one, _ = await call(url, "GET", f"/api/recordings/{rec.id}")
    assert status == 200
    assert one == {
        "id": rec.id,
        "meeting": meeting.id,
        "title": "Совет школ",
        "status": "ready",
        "progress": None,
        "started_at": one["started_at"],
        "stopped_at": one["stopped_at"],
        "duration": 1.0,
        "size": len(small_mp4()),
        "error": "",
        "keep": False,
        "expires_at": one["expires_at"],
        "file": f"/api/recordings/{rec.id}/file",
        "page": f"/recordings/{rec.id}",
        "quality": None,  # never checked: this one was made by hand
    }
    stopped = datetime.fromisoformat(one["stopped_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(one["expires_at"].replace("Z", "+00:00"))
    assert expires - stopped == timedelta(days=30)
    # All meetings' recordings: the admin only.
    status, _, _ = await call(url, "GET", "/api/recordings")
    assert status == 401
    status, everything = await live_server.api("GET", "/api/recordings")
    assert status == 200 and len(everything["recordings"]) == 2

    data = small_mp4()
    status, body, headers = await fetch(url, one["file"])
    assert status == 200 and headers["Content-Type"] == "video/mp4" and body == data
    assert headers["Accept-Ranges"] == "bytes"
    status, body, headers = await fetch(url, one["file"], {"Range": "bytes=100-1099"})
    assert status == 206
    assert headers["Content-Range"] == f"bytes 100-1099/{len(data)}"
    assert body == data[100:1100]
    status, body, headers = await fetch(url, one["file"], {"Range": "bytes=-500"})
    assert status == 206 and body == data[-500:]
    status, _, headers = await fetch(url, one["file"] + "?download=1")
    assert status == 200
    disposition = headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''%D0%A1%D0%BE%D0%B2%D0%B5%D1%82" in disposition

    # No programme yet, unknown ids, ids that try to leave the directory: 404.
    for path in (
        f"/api/recordings/{older.id}/file",
        "/api/recordings/nope",
        "/api/recordings/nope/file",
        "/api/recordings/..%2F..%2Fetc%2Fpasswd",
        "/api/recordings/..%2F..%2Fetc%2Fpasswd/file",
        "/api/recordings/%2E%2E/file",
        "/api/recordings?meeting=..%2F..",
    ):
        status, body, _ = await call(url, "GET", path, headers=live_server.admin_headers())
        assert status == 404, (path, body)
        assert body["error"]["code"] == "not_found", (path, body)


async def test_invite_only_recordings_are_for_the_roster_and_the_admin(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server)  # invite-only by default
    rec = await add(live_server, meeting)
    member = await invite(live_server, meeting, "Viewer", "viewer")
    guest = live_server.tokens.guest(meeting.id, Role.VIEWER)
    other = await make_meeting(live_server)
    outsider = await invite(live_server, other, "Host elsewhere", "host")
    url = live_server.url
    paths = (
        f"/api/recordings/{rec.id}",
        f"/api/recordings/{rec.id}/file",
        f"/api/recordings?meeting={meeting.id}",
    )
    for path in paths:
        for headers, expected in (
            ({}, 401),
            (bearer("forged"), 401),
            ({"Authorization": "Basic eDp5"}, 401),
            (bearer(guest), 403),
            (bearer(outsider), 403),
            (bearer(member), 200),
            (live_server.admin_headers(), 200),
        ):
            status, _, _ = await fetch(url, path, headers)
            assert status == expected, (path, headers)
    # A <video> element cannot send headers: the token may come as ?token=.
    status, body, _ = await fetch(url, f"{paths[1]}?token={member}")
    assert status == 200 and body == small_mp4()
    status, _, _ = await fetch(url, f"{paths[1]}?token={outsider}")
    assert status == 403


async def test_keep_and_retention_delete_only_expired_unkept_recordings(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server)
    expired = await add(live_server, meeting, days_ago=31)
    kept = await add(live_server, meeting, days_ago=31)
    recent = await add(live_server, meeting, days_ago=29)
    running = await add(
        live_server, meeting, days_ago=40, status=RecordingStatus.RENDERING, programme=False
    )
    moderator = await invite(live_server, meeting, "Mod", "moderator")
    participant = await invite(live_server, meeting, "Pupil", "participant")
    path = f"/api/recordings/{kept.id}"

    async def patch(headers: dict[str, str], **kwargs: Any) -> tuple[int, Any]:
        status, body, _ = await call(live_server.url, "PATCH", path, headers=headers, **kwargs)
        return status, body

    # Bad input and the wrong role change nothing.
    cases: tuple[tuple[dict[str, str], dict[str, Any], tuple[int, str]], ...] = (
        (bearer(participant), {"json": {"keep": True}}, (403, "forbidden")),
        (bearer(moderator), {"data": "{keep", "headers": {}}, (415, "unsupported_media_type")),
        (
            bearer(moderator),
            {"data": "{keep", "headers": {"Content-Type": "application/json"}},
            (400, "bad_json"),
        ),
        (bearer(moderator), {"json": {"keep": "yes"}}, (400, "invalid")),
        (bearer(moderator), {"json": {"keep": True, "colour": 1}}, (400, "invalid")),
        (bearer(moderator), {"json": [True]}, (400, "invalid")),
    )
    for headers, kwargs, expected in cases:
        extra = kwargs.pop("headers", {})
        status, body = await patch({**headers, **extra}, **kwargs)
        assert (status, body["error"]["code"]) == expected, body
    assert (await live_server.store.get_recording(kept.id)) == kept

    status, body = await patch(bearer(moderator), json={"keep": True})
    assert status == 200 and body["keep"] is True and body["expires_at"] is None

    gone = await service(live_server.app).expire()
    assert gone == [expired.id]
    listed = await live_server.store.list_recordings(meeting.id)
    assert {r.id for r in listed} == {kept.id, recent.id, running.id}
    root = live_server.settings.data_dir / "recordings"
    assert not (root / expired.id).exists()
    assert (root / kept.id / "programme.mp4").exists() and (root / recent.id).exists()
    status, _ = await live_server.api("GET", f"/api/recordings/{expired.id}")
    assert status == 404


async def test_only_a_host_or_the_admin_deletes_and_not_while_recording(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server)
    rec = await add(live_server, meeting)
    live = await add(live_server, meeting, status=RecordingStatus.RECORDING, programme=False)
    moderator = await invite(live_server, meeting, "Mod", "moderator")
    host = await invite(live_server, meeting, "Host", "host")
    url = live_server.url

    status, body, _ = await call(
        url, "DELETE", f"/api/recordings/{rec.id}", headers=bearer(moderator)
    )
    assert (status, body["error"]["code"]) == (403, "forbidden")
    status, body, _ = await call(url, "DELETE", f"/api/recordings/{live.id}", headers=bearer(host))
    assert (status, body["error"]["code"]) == (409, "busy")
    status, body, _ = await call(
        url, "POST", f"/api/recordings/{live.id}/render", headers=bearer(host)
    )
    assert (status, body["error"]["code"]) == (409, "busy")
    status, _, _ = await call(url, "DELETE", f"/api/recordings/{rec.id}", headers=bearer(host))
    assert status == 204
    assert not (live_server.settings.data_dir / "recordings" / rec.id).exists()
    assert await live_server.store.get_recording(rec.id) is None
    status, body = await live_server.api("DELETE", f"/api/recordings/{rec.id}")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = await live_server.api("POST", "/api/recordings/nope/render")
    assert (status, body["error"]["code"]) == (404, "not_found")


async def test_retention_off_keeps_everything(settings: Settings) -> None:
    server, runner = await start_server(replace(settings, recording_retention_days=0))
    try:
        meeting = await make_meeting(server)
        old = await add(server, meeting, days_ago=400)
        assert await service(server.app).expire() == []
        status, body = await server.api("GET", f"/api/recordings/{old.id}")
        assert status == 200 and body["expires_at"] is None
    finally:
        await runner.cleanup()
