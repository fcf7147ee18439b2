"""The standby egress: a recording process started ahead by the server, its imports done, takes
the next recording (which then joins sooner after the click), and the next standby is started;
a standby that died is replaced by a fresh process, and the recording still happens."""

import asyncio
import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rooms.meeting import Meeting
from server.config import Settings
from server.recorder import STANDBY, Egress, Standby
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_recording_egress import add_recording, recording, state


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1", egress_standby=True)


async def record_once(
    server: LiveServer, meeting: Meeting, standby: Standby
) -> tuple[Egress, Path, float]:
    """Start a recording as the service does; (egress, directory, seconds until it records)."""
    rec = await add_recording(server, meeting)
    directory = server.settings.data_dir / "recordings" / rec.id
    clicked = time.monotonic()
    egress = await Egress.start(
        server.settings, server.tokens, meeting.id, rec.id, directory, standby
    )
    await recording(egress, directory)
    return egress, directory, time.monotonic() - clicked


async def test_a_recording_takes_the_standby_process_and_another_waits(
    live_server: LiveServer, media_clip: Clip
) -> None:
    standby = live_server.app[STANDBY]
    meeting: Meeting = await make_meeting(live_server, settings={"lobby": False})
    host = MeetingPeer(await Client.open(live_server.url), media_clip)
    try:
        await host.client.join(token=await invite(live_server, meeting, "Анна", "host"))
        await host.publish()
        await wait_for(lambda: standby.pid is not None, within=10)
        await asyncio.sleep(2.0)  # its imports done: it waits on stdin
        warm = standby.pid
        egress, directory, warm_start = await record_once(live_server, meeting, standby)
        assert egress.pid == warm, "the recording ran in the standby process"
        await wait_for(lambda: standby.pid not in (None, warm), within=10)
        assert await egress.stop(timeout=20) == 0
        assert state(directory)["state"] == "done"
        assert (directory / "programme.mp4").is_file()
        assert "recording done" in (directory / "egress.log").read_text()

        # A standby that died: the recording starts a fresh process the usual way.
        dead = standby.pid
        assert dead is not None
        os.kill(dead, signal.SIGKILL)
        await wait_for(lambda: standby.pid is None, within=5)
        egress, directory, cold_start = await record_once(live_server, meeting, standby)
        assert egress.pid != dead
        assert await egress.stop(timeout=20) == 0
        assert state(directory)["state"] == "done"
        # The server's end closes the waiting process: nothing outlives it.
        await wait_for(lambda: standby.pid is not None, within=10)
        waiting = standby.pid
        await standby.close()
        assert waiting is not None
        with pytest.raises(ProcessLookupError):  # it read the end of its stdin and exited
            os.kill(waiting, 0)
        print(f"\nrecording from the click: warm {warm_start:.2f} s, cold {cold_start:.2f} s")
        assert warm_start < cold_start
    finally:
        await host.close()
