"""The standby egress: a recording process started ahead by the server, its imports done, takes
the next recording (which then joins sooner after the click), and the next standby is started;
a standby that died is replaced by a fresh process, and the recording still happens."""

import asyncio
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rooms.meeting import Meeting
from server.config import Settings
from server.recorder import STANDBY, Egress
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_recording_egress import add_recording, recording, state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1", egress_standby=True)


def standby_pid() -> int | None:
    process = STANDBY._process
    return None if process is None or process.returncode is not None else process.pid


async def record_once(server: LiveServer, meeting: Meeting) -> tuple[Egress, Path, float]:
    """Start a recording as the service does; (egress, directory, seconds until it records)."""
    rec = await add_recording(server, meeting)
    directory = server.settings.data_dir / "recordings" / rec.id
    clicked = time.monotonic()
    egress = await Egress.start(server.settings, server.tokens, meeting.id, rec.id, directory)
    await recording(egress, directory)
    return egress, directory, time.monotonic() - clicked


async def test_a_recording_takes_the_standby_process_and_another_waits(
    live_server: LiveServer, media_clip: Clip
) -> None:
    meeting: Meeting = await make_meeting(live_server, settings={"lobby": False})
    host = MeetingPeer(await Client.open(live_server.url), media_clip)
    try:
        await host.client.join(token=await invite(live_server, meeting, "Анна", "host"))
        await host.publish()
        await wait_for(lambda: standby_pid() is not None, within=10)
        await asyncio.sleep(2.0)  # its imports done: it waits on stdin
        warm = standby_pid()
        egress, directory, warm_start = await record_once(live_server, meeting)
        assert egress.pid == warm, "the recording ran in the standby process"
        await wait_for(lambda: standby_pid() not in (None, warm), within=10)
        assert await egress.stop(timeout=20) == 0
        assert state(directory)["state"] == "done"
        assert (directory / "programme.mp4").is_file()
        assert "recording done" in (directory / "egress.log").read_text()

        # A standby that died: the recording starts a fresh process the usual way.
        dead = STANDBY._process
        assert dead is not None
        dead.kill()
        await dead.wait()
        egress, directory, cold_start = await record_once(live_server, meeting)
        assert egress.pid != dead.pid
        assert await egress.stop(timeout=20) == 0
        assert state(directory)["state"] == "done"
        print(f"\nrecording from the click: warm {warm_start:.2f} s, cold {cold_start:.2f} s")
        assert warm_start < cold_start
    finally:
        await host.close()
