"""Recordings cut short by a crash are found at startup and rendered again from their tracks;
a failed render shows its reason and can be retried. Real server, SQLite, track files written
by the real capture path (tests/recording_fixtures.py), programmes decoded with PyAV."""

import asyncio
import fcntl
import json
import os
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av

from recording.lifeline import LOCK_FILE
from recording.timeline import FILE_NAME as TIMELINE
from rooms.meeting import new_id, new_meeting
from rooms.recordings import Recording, RecordingStatus
from rooms.roster import new_entry
from rooms.sqlite_store import SqliteStore
from server.auth import Tokens
from server.config import Settings
from tests.conftest import LiveServer, start_server
from tests.media_clients import MeetingPeer
from tests.media_clip import Clip
from tests.recording_fixtures import PEOPLE, people_media, record
from tests.sio_client import Client
from tests.test_cli import clean_env, read_until, veche_script


def crashed(directory: Path, people: int = 3) -> None:
    """A recording directory as a crash leaves it: tracks and a timeline that never says
    `recording_stopped` (nor that anyone left)."""
    record(directory, list(people_media()[:people]))
    timeline = directory / TIMELINE
    lines = timeline.read_text("utf-8").splitlines(keepends=True)
    kept = [line for line in lines if '"recording_stopped"' not in line and '"left"' not in line]
    timeline.write_text("".join(kept), "utf-8")


def decoded(path: Path) -> tuple[int, int, float]:
    """(video frames, audio frames, seconds) of an MP4, every frame decoded."""
    video = audio = 0
    with av.open(str(path)) as container:
        seconds = container.duration / av.time_base if container.duration else 0.0
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video += 1
            else:
                audio += 1
    return video, audio, seconds


async def until_final(server: LiveServer, rid: str, within: float = 40) -> dict[str, Any]:
    """The recording's JSON once it is ready or failed, with every status seen on the way."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        status, body = await server.api("GET", f"/api/recordings/{rid}")
        assert status == 200, body
        if body["status"] in ("ready", "failed"):
            return dict(body)
        assert loop.time() < deadline, f"still {body['status']} after {within} s"
        await asyncio.sleep(0.2)


async def test_recordings_cut_by_a_crash_are_rendered_at_startup(settings: Settings) -> None:
    root = settings.data_dir / "recordings"
    store = await SqliteStore.open(settings.database_path)
    meeting = new_meeting({"title": "Педсовет", "visibility": "public"})
    await store.create_meeting(meeting)
    cut = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.RECORDING,
        started_at=datetime(2025, 11, 20, 10, tzinfo=UTC),
        stopped_at=None,
    )
    await store.add_recording(cut)
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    expired = replace(
        cut, id=new_id(), status=RecordingStatus.READY, started_at=long_ago, stopped_at=long_ago
    )
    await store.add_recording(expired)
    (root / expired.id).mkdir(parents=True)
    await store.close()
    crashed(root / cut.id)
    orphan = new_id()  # the catalog row was never written
    crashed(root / orphan, people=1)
    complete = new_id()  # stopped properly: not a crash, left alone
    record(root / complete, list(people_media()[:1]))

    server, runner = await start_server(settings)
    try:
        listed = {r.id: r for r in await server.store.list_recordings()}
        # Retention swept the expired one at start, files too.
        assert set(listed) == {cut.id, orphan}
        assert not (root / expired.id).exists()
        assert listed[orphan].meeting_id == "m1" and listed[orphan].title == "Test meeting"
        assert listed[orphan].status is RecordingStatus.RENDERING

        ready = await until_final(server, cut.id)
        assert ready["status"] == "ready", ready
        assert ready["stopped_at"] is not None and ready["error"] == ""
        video, audio, seconds = await asyncio.to_thread(decoded, root / cut.id / "programme.mp4")
        longest = max(p.joins for p in PEOPLE) + 3.0  # the clips are 3 s, the last joins late
        assert abs(seconds - longest) < 0.5, seconds
        assert video >= 25 * longest * 0.9 and audio > 100, (video, audio)

        other = await until_final(server, orphan)
        assert other["status"] == "ready", other
        assert (root / orphan / "programme.mp4").stat().st_size == other["size"]
    finally:
        await runner.cleanup()


async def test_a_failed_render_shows_its_reason_and_can_be_retried(
    live_server: LiveServer, tmp_path: Path
) -> None:
    meeting = new_meeting({"title": "Retry"})
    await live_server.store.create_meeting(meeting)
    rec = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.FAILED,
        started_at=datetime.now(UTC).replace(microsecond=0),
        stopped_at=datetime.now(UTC).replace(microsecond=0),
        error="recording stopped: the disk is full",
    )
    directory = live_server.settings.data_dir / "recordings" / rec.id
    record(directory, list(people_media()[:1]))
    await live_server.store.add_recording(rec)
    # The track files are lost (moved away): nothing to render.
    aside = tmp_path / "aside"
    aside.mkdir()
    for track in directory.glob("*.webm"):
        shutil.move(track, aside / track.name)
    url = f"/api/recordings/{rec.id}/render"

    status, body = await live_server.api("POST", url)
    assert status == 202, body
    assert body["status"] == "rendering" and body["progress"] == 0 and body["error"] == ""
    status, again = await live_server.api("POST", url)
    assert (status, again["error"]["code"]) == (409, "busy")
    failed = await until_final(live_server, rec.id)
    assert failed["status"] == "failed" and failed["progress"] is None
    assert failed["error"].startswith(f"nothing to render in {rec.id}"), failed
    assert "p1-cam.webm" in failed["error"], failed  # the missing file is named

    for track in aside.iterdir():
        shutil.move(track, directory / track.name)
    status, body = await live_server.api("POST", url)
    assert status == 202, body
    ready = await until_final(live_server, rec.id)
    assert ready["status"] == "ready" and ready["error"] == "", ready
    video, audio, _ = await asyncio.to_thread(decoded, directory / "programme.mp4")
    assert video > 50 and audio > 50


async def test_a_server_killed_while_recording_recovers_the_recording_at_restart(
    settings: Settings, media_clip: Clip
) -> None:
    """The real `veche serve` killed with SIGKILL in the middle of a recording; the next start
    finds the recording and renders it from its tracks."""
    settings = replace(settings, rtc_addresses="127.0.0.1")
    store = await SqliteStore.open(settings.database_path)
    meeting = new_meeting({"title": "Crash", "settings": {"lobby": False}})
    await store.create_meeting(meeting)
    entry = new_entry(meeting.id, {"name": "Ольга", "role": "moderator"})
    await store.add_entry(entry)
    await store.close()
    tokens = Tokens(settings.secret_key, timedelta(days=1))
    env = clean_env(
        VECHE_DATA_DIR=str(settings.data_dir),
        VECHE_PORT=str(settings.port),
        VECHE_RTC_ADDRESSES="127.0.0.1",
    )
    process = await asyncio.create_subprocess_exec(
        veche_script(),
        "serve",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=env,
    )
    assert process.stdout is not None
    peer = None
    try:
        await asyncio.wait_for(read_until(process.stdout, "Veche is running", []), 30)
        peer = MeetingPeer(await Client.open(settings.base_url), media_clip)
        await peer.client.join(token=tokens.invite(meeting.id, entry.id))
        await peer.publish()
        ack = await peer.client.call("recording_start", {}, wait=20)
        rid = ack["recording"]["id"]
        directory = settings.data_dir / "recordings" / rid
        await until_track(directory)
        await asyncio.sleep(1.5)
        process.kill()  # SIGKILL: no shutdown handler runs
        await process.wait()
        killed = asyncio.get_running_loop().time()
        # The egress is told at once that its server is gone: it closes its tracks and
        # leaves, and writes nothing while the next server recovers the recording.
        await until_unlocked(directory, within=3)
        gone_after = asyncio.get_running_loop().time() - killed
        sizes = {p.name: p.stat().st_size for p in directory.iterdir()}
        await asyncio.sleep(1.0)
        assert {p.name: p.stat().st_size for p in directory.iterdir()} == sizes
        events = [json.loads(line) for line in (directory / TIMELINE).read_text().splitlines()]
        assert events[-1]["event"] == "recording_stopped", events[-1]
        assert events[-1]["reason"] == "server_gone", events[-1]
        assert gone_after < 3, gone_after
    finally:
        if peer is not None:
            await peer.close()
        if process.returncode is None:
            process.kill()
            await process.wait()

    server, runner = await start_server(settings)
    try:
        ready = await until_final(server, rid)
        assert ready["status"] == "ready", ready
        video, audio, seconds = await asyncio.to_thread(decoded, directory / "programme.mp4")
        assert seconds > 1 and video > 25 and audio > 25, (seconds, video, audio)
    finally:
        await runner.cleanup()


async def until_track(directory: Path, within: float = 20) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    timeline = directory / TIMELINE
    while not (timeline.exists() and '"track_started"' in timeline.read_text("utf-8")):
        assert loop.time() < deadline, "no track recorded"
        await asyncio.sleep(0.1)


def unlocked(directory: Path) -> bool:
    """Whether no process holds the recording directory's lock (recording/lifeline.py)."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


async def until_unlocked(directory: Path, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not unlocked(directory):
        assert loop.time() < deadline, f"the recording is still written after {within} s"
        await asyncio.sleep(0.05)
