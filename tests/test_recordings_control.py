"""Starting and stopping a meeting's recording over socket.io and REST, with a real server, the
real egress process, aiortc publishers and socket.io clients; the programme opened with PyAV."""

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import pytest

from rooms.meeting import Meeting
from server.config import Settings
from tests.apiclient import bearer, call
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_cli import clean_env, veche

Joiner = Callable[..., Awaitable[MeetingPeer]]
NOTICE = "Идёт запись: the meeting is recorded for the school council."


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(
        live_server,
        visibility="public",
        settings={"lobby": False, "recording_notice": NOTICE},
    )
    return made


@pytest.fixture
async def join(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[Joiner]:
    peers: list[MeetingPeer] = []

    async def joiner(name: str, role: str = "participant") -> MeetingPeer:
        client = await Client.open(live_server.url)
        peer = MeetingPeer(client, media_clip)
        peers.append(peer)
        peer.token = await invite(live_server, meeting, name, role)
        ack = await client.join(token=peer.token)
        assert ack == {"ok": True, "status": "joined"}, ack
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


async def until_status(
    server: LiveServer, rid: str, wanted: str, within: float = 30
) -> dict[str, Any]:
    """The recording's JSON once its status is `wanted` (failing on another final one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        status, body = await server.api("GET", f"/api/recordings/{rid}")
        assert status == 200, body
        if body["status"] == wanted:
            return dict(body)
        final = {"ready", "failed"} - {wanted}
        assert body["status"] not in final, body
        assert loop.time() < deadline, f"still {body['status']} after {within} s: {body}"
        await asyncio.sleep(0.2)


async def until_tracks(server: LiveServer, rid: str, within: float = 20) -> None:
    """Until the recording's egress has written the start of a track."""
    timeline = server.settings.data_dir / "recordings" / rid / "timeline.jsonl"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (timeline.exists() and '"track_started"' in timeline.read_text("utf-8")):
        assert loop.time() < deadline, f"no track recorded after {within} s"
        await asyncio.sleep(0.1)


def decoded_frames(path: Any) -> tuple[int, int, float]:
    """(video frames, audio frames, seconds) decoded from an MP4."""
    video = audio = 0
    with av.open(str(path)) as container:
        seconds = container.duration / av.time_base if container.duration else 0.0
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
            else:
                audio += 1
    return video, audio, seconds


async def test_a_moderator_records_over_socketio_and_everyone_is_told(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    moderator = await join("Ольга", "moderator")
    participant = await join("Pavel")
    await moderator.publish()
    viewer = await Client.open(live_server.url)
    try:
        assert (await viewer.join(meeting=meeting.id, name="Watcher"))["status"] == "joined"
        off = {"on": False, "id": None, "notice": "", "error": None}
        assert viewer.snapshot["recording"] == off
        assert participant.client.snapshot["recording"] == off

        # A participant may not record: refused, and nothing changes.
        refused = await participant.client.call("recording_start", {})
        assert refused["error"]["code"] == "forbidden", refused
        assert (await live_server.api("GET", "/api/recordings"))[1] == {"recordings": []}
        await asyncio.sleep(0.2)
        assert viewer.unread("recording") == []

        ack = await moderator.client.call("recording_start", {}, wait=20)
        assert ack["ok"] is True, ack
        rec = ack["recording"]
        assert rec["status"] == "recording" and rec["meeting"] == meeting.id
        assert rec["title"] == meeting.title and rec["keep"] is False
        assert rec["file"] == f"/api/recordings/{rec['id']}/file"
        told = {"on": True, "id": rec["id"], "notice": NOTICE, "error": None}
        for client in (moderator.client, participant.client, viewer):
            assert await client.next("recording") == told

        again = await moderator.client.call("recording_start", {})
        assert again["error"]["code"] == "already_recording", again

        late = await Client.open(live_server.url)
        try:
            await late.join(meeting=meeting.id, name="Late")
            assert late.snapshot["recording"] == told
        finally:
            await late.close()

        await until_tracks(live_server, rec["id"])
        await asyncio.sleep(2)  # a little of the meeting to record
        refused = await participant.client.call("recording_stop", {})
        assert refused["error"]["code"] == "forbidden", refused
        stopped = await moderator.client.call("recording_stop", {}, wait=20)
        assert stopped["ok"] is True, stopped
        assert stopped["recording"]["status"] in ("finishing", "ready", "rendering")
        assert stopped["recording"]["stopped_at"] is not None
        for client in (moderator.client, participant.client, viewer):
            told_off = await client.until("recording", lambda d: d["on"] is False)
            assert told_off == {"on": False, "id": None, "notice": "", "error": None}
        not_now = await moderator.client.call("recording_stop", {})
        assert not_now["error"]["code"] == "not_recording", not_now

        ready = await until_status(live_server, rec["id"], "ready")
        assert 1.5 < ready["duration"] < 15, ready
        assert ready["size"] > 10_000 and ready["error"] == ""
        path = live_server.settings.data_dir / "recordings" / rec["id"] / "programme.mp4"
        assert path.stat().st_size == ready["size"]
        video, audio, _ = await asyncio.to_thread(decoded_frames, path)
        assert video > 20 and audio > 20, (video, audio)
    finally:
        await viewer.close()


async def test_rest_control_with_a_moderators_token_and_the_admin_key(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    url = f"/api/meetings/{meeting.id}/recording"
    # Nobody in the meeting yet: nothing to record.
    status, body = await live_server.api("POST", url)
    assert (status, body["error"]["code"]) == (409, "not_live")

    moderator = await join("Ольга", "moderator")
    participant = await join("Pavel")
    await participant.publish()
    moderator_token = moderator.token
    participant_token = await invite(live_server, meeting, "Other", "participant")
    other = await make_meeting(live_server)
    stranger = await invite(live_server, other, "Stranger", "moderator")

    for headers, expected in (
        ({}, 401),
        (bearer("forged"), 401),
        (bearer(participant_token), 403),
        (bearer(stranger), 403),
    ):
        status, body, _ = await call(live_server.url, "POST", url, headers=headers)
        assert status == expected, (headers, body)
    status, body, _ = await call(
        live_server.url, "POST", "/api/meetings/nope/recording", headers=live_server.admin_headers()
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    assert (await live_server.api("GET", f"/api/recordings?meeting={meeting.id}"))[1] == {
        "recordings": []
    }

    status, rec, _ = await call(live_server.url, "POST", url, headers=bearer(moderator_token))
    assert status == 201, rec
    assert rec["status"] == "recording"
    for client in (moderator.client, participant.client):
        assert (await client.next("recording"))["on"] is True
    status, body = await live_server.api("POST", url)
    assert (status, body["error"]["code"]) == (409, "already_recording")

    await until_tracks(live_server, rec["id"])
    await asyncio.sleep(1)
    status, stopped = await live_server.api("DELETE", url)
    assert status == 200, stopped
    assert stopped["id"] == rec["id"] and stopped["status"] != "recording"
    assert (await participant.client.until("recording", lambda d: not d["on"]))["on"] is False
    status, body = await live_server.api("DELETE", url)
    assert (status, body["error"]["code"]) == (409, "not_recording")
    await until_status(live_server, rec["id"], "ready")


async def test_the_cli_records_lists_keeps_and_deletes(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    publisher = await join("Ольга", "moderator")
    await publisher.publish()
    settings = live_server.settings
    env = clean_env(VECHE_DATA_DIR=str(settings.data_dir), VECHE_PORT=str(settings.port))

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(veche, "recording", *args, env=env)

    started = await cli("start", meeting.id, "--json")
    assert started.returncode == 0, started.stderr
    rid = json.loads(started.stdout)["id"]
    assert (await publisher.client.next("recording"))["id"] == rid
    await until_tracks(live_server, rid)
    await asyncio.sleep(1)
    stopped = await cli("stop", meeting.id)
    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped recording {rid}" in stopped.stdout
    again = await cli("stop", meeting.id)
    assert again.returncode == 1 and "not being recorded" in again.stderr
    await until_status(live_server, rid, "ready")

    listed = await cli("list", "--meeting", meeting.id)
    assert listed.returncode == 0 and rid in listed.stdout and "ready" in listed.stdout
    kept = await cli("keep", rid)
    assert kept.returncode == 0, kept.stderr
    status, body = await live_server.api("GET", f"/api/recordings/{rid}")
    assert body["keep"] is True and body["expires_at"] is None
    deleted = await cli("delete", rid)
    assert deleted.returncode == 0, deleted.stderr
    status, _ = await live_server.api("GET", f"/api/recordings/{rid}")
    assert status == 404
    assert not (settings.data_dir / "recordings" / rid).exists()
    missing = await cli("show", rid)
    assert missing.returncode == 1 and "not found" in missing.stderr
    unreachable = await asyncio.to_thread(
        veche, "recording", "start", meeting.id, "--url", "http://127.0.0.1:9", env=env
    )
    assert unreachable.returncode == 1 and "cannot reach the server" in unreachable.stderr


def egress_pid(directory: Path) -> int:
    """The pid of the recording process writing `directory` (from /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"recording.egress" in argv and str(directory).encode() in argv:
            return int(proc.name)
    raise AssertionError(f"no egress process for {directory}")


async def test_a_failed_egress_stops_the_recording_with_an_error_not_the_meeting(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    moderator = await join("Ольга", "moderator")
    participant = await join("Pavel")
    await participant.publish()
    ack = await moderator.client.call("recording_start", {}, wait=20)
    rid = ack["recording"]["id"]
    await participant.client.next("recording")
    await until_tracks(live_server, rid)
    await asyncio.sleep(1)
    directory = live_server.settings.data_dir / "recordings" / rid
    os.kill(egress_pid(directory), signal.SIGKILL)

    for client in (moderator.client, participant.client):
        told = await client.until("recording", lambda d: d["on"] is False, wait=10)
        assert told["error"] == "recording stopped: the recording process stopped", told
    # The meeting goes on; the recording is rendered from the tracks written so far.
    assert (await participant.client.call("chat", {"text": "still here"}))["ok"] is True
    ready = await until_status(live_server, rid, "ready")
    assert ready["error"] == "recording stopped: the recording process stopped"
    assert ready["duration"] > 0.5 and ready["size"] > 0
    # And it can be recorded again.
    again = await moderator.client.call("recording_start", {}, wait=20)
    assert again["ok"] is True and again["recording"]["id"] != rid


@pytest.mark.parametrize("how", ["end", "leave"])
async def test_ending_or_leaving_the_meeting_stops_its_recording(
    live_server: LiveServer, meeting: Meeting, join: Joiner, how: str
) -> None:
    """`end` ends the meeting; `leave` by the last one in it empties the room."""
    host = await join("Host", "host")
    await host.publish()
    status, rec = await live_server.api("POST", f"/api/meetings/{meeting.id}/recording")
    assert status == 201, rec
    await until_tracks(live_server, rec["id"])
    await asyncio.sleep(1)
    assert (await host.client.call(how, {}))["ok"] is True
    ready = await until_status(live_server, rec["id"], "ready")
    assert ready["stopped_at"] is not None and ready["duration"] > 0.5


async def test_when_the_recording_cannot_start_the_meeting_is_told_and_a_failed_row_says_why(
    live_server: LiveServer, meeting: Meeting
) -> None:
    moderator = await Client.open(live_server.url)
    try:
        refused = await moderator.call("recording_start", {})
        assert refused["error"]["code"] == "not_joined", refused
        await moderator.join(token=await invite(live_server, meeting, "Mod", "moderator"))
        # The recordings directory cannot be made (here: a file is in its way; a full disk
        # or a read-only mount fail the same way).
        (live_server.settings.data_dir / "recordings").write_text("in the way")
        refused = await moderator.call("recording_start", {})
        assert refused["error"]["code"] == "recording_failed", refused
        assert "directory" in refused["error"]["message"]
        status, body = await live_server.api("POST", f"/api/meetings/{meeting.id}/recording")
        assert (status, body["error"]["code"]) == (503, "recording_failed")
        # Each try left a failed row saying why; no message tells where the server keeps data.
        rows = (await live_server.api("GET", "/api/recordings"))[1]["recordings"]
        assert [row["status"] for row in rows] == ["failed", "failed"], rows
        data = str(live_server.settings.data_dir)
        for message in [refused["error"]["message"], body["error"]["message"]] + [
            row["error"] for row in rows
        ]:
            assert "directory" in message and data not in message, message
            assert "/" not in message, message
        assert moderator.unread("recording") == []
        assert (await moderator.call("chat", {"text": "the meeting goes on"}))["ok"] is True
    finally:
        await moderator.close()
