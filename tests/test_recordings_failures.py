"""A recording whose files stop being written (the disk full, a file-size limit, EPERM) says so:
the room's moderators and the API see the reason within seconds, without server paths, and the
recording's row keeps it through later renders. Real server, real egress process, an aiortc
publisher; the failure is a real one: a file-size limit put on the egress (RLIMIT_FSIZE, whose
writes past it fail with EFBIG)."""

import asyncio
import json
import re
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rooms.meeting import Meeting
from server.config import Settings
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting

Joiner = Callable[..., Awaitable[MeetingPeer]]
PATH = re.compile(r"(^|[\s'\"(=:])/\w")  # an absolute path in a message


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, settings={"lobby": False})
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
        ack = await client.join(token=await invite(live_server, meeting, name, role))
        assert ack["status"] == "joined", ack
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


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


def egress_error(directory: Path) -> str:
    try:
        return str(json.loads((directory / "egress.json").read_text("utf-8")).get("error", ""))
    except (OSError, ValueError):
        return ""


async def row(server: LiveServer, rid: str) -> dict[str, Any]:
    status, body = await server.api("GET", f"/api/recordings/{rid}")
    assert status == 200, body
    return dict(body)


async def until_final(server: LiveServer, rid: str, within: float = 60) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (found := await row(server, rid))["status"] not in ("ready", "failed"):
        assert loop.time() < deadline, found
        await asyncio.sleep(0.2)
    return found


async def test_files_that_stop_being_written_are_told_within_seconds_and_stay_told(
    live_server: LiveServer, join: Joiner
) -> None:
    moderator = await join("Ольга", "moderator")
    speaker = await join("Pavel")
    await speaker.publish()
    ack = await moderator.client.call("recording_start", {}, wait=20)
    rid = ack["recording"]["id"]
    directory = live_server.settings.data_dir / "recordings" / rid
    await moderator.client.until("recording", lambda d: d["on"] is True)
    await wait_for(lambda: len(list(directory.glob("*-cam.webm"))) == 1, within=15)
    await asyncio.sleep(1.0)
    # From now on no file of the recording may grow (EFBIG, as EPERM or ENOSPC would fail).
    limit = max(p.stat().st_size for p in directory.iterdir() if p.is_file()) + 1
    resource.prlimit(egress_pid(directory), resource.RLIMIT_FSIZE, (limit, limit))
    loop = asyncio.get_running_loop()
    await wait_for(lambda: egress_error(directory) != "", within=10)
    failed_at = loop.time()

    # Moderators see it in the room, the API on the row, within 2 s; the recording goes on
    # with what still works, saying what failed.
    told = await moderator.client.until("recording", lambda d: bool(d["error"]), wait=5)
    assert told["on"] is True, told
    assert loop.time() - failed_at <= 2.0, loop.time() - failed_at
    current = await row(live_server, rid)
    assert current["status"] == "recording" and current["error"], current
    assert loop.time() - failed_at <= 2.5
    for message in (told["error"], current["error"]):
        assert "too large" in message.lower(), message  # EFBIG's "File too large"
        assert not PATH.search(message), message

    stopped = await moderator.client.call("recording_stop", {}, wait=20)
    assert stopped["ok"] is True, stopped
    final = await until_final(live_server, rid)
    assert "too large" in final["error"].lower(), final
    assert not PATH.search(final["error"]), final
    # A later render keeps saying what was lost while recording.
    status, body = await live_server.api("POST", f"/api/recordings/{rid}/render")
    assert status == 202, body
    again = await until_final(live_server, rid)
    assert "-cam.webm" in again["error"] and "too large" in again["error"].lower(), again
