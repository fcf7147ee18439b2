"""The recorder's seat receives every published track whatever the stage and its own link do:
a loaded recording process reports loss, as a slow participant does, yet its video is never
paused (a paused feed would end the person's track in the recording). Real server, aiortc
peers; the recorder here is a client with a real recorder token."""

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from media.links import PAUSE_AFTER, WARMUP
from rooms.meeting import Meeting, new_id
from rooms.recordings import Recording, RecordingStatus
from server.config import Settings
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


async def test_a_lossy_recorder_keeps_every_track_while_a_lossy_participant_is_paused(
    live_server: LiveServer, media_clip: Clip
) -> None:
    meeting: Meeting = await make_meeting(live_server, settings={"lobby": False})
    recording = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.RECORDING,
        started_at=datetime.now(UTC),
        stopped_at=None,
    )
    await live_server.store.add_recording(recording)
    peers: list[MeetingPeer] = []
    try:
        for name, role in (("Anna", "host"), ("Boris", "participant")):
            peer = MeetingPeer(await Client.open(live_server.url), media_clip)
            peers.append(peer)
            await peer.client.join(token=await invite(live_server, meeting, name, role))
        anna, boris = peers
        recorder = MeetingPeer(await Client.open(live_server.url), media_clip)
        peers.append(recorder)
        token = live_server.tokens.recorder(meeting.id, recording.id)
        assert (await recorder.client.join(token=token))["status"] == "joined"
        await anna.publish()
        # The spotlight moves away from Anna: the stage changes, the recorder's feed does not.
        assert (await anna.client.call("spotlight", {"participant": boris.id}))["ok"] is True
        for peer in (boris, recorder):
            await wait_for(lambda p=peer: p.track(anna, "video").frames > 5, within=5)  # type: ignore[misc]
            peer.report_bandwidth(150_000, loss=0.25)  # a loaded, lossy receiver
        paused = await boris.client.next("video_paused", wait=WARMUP + PAUSE_AFTER + 3)
        assert paused["tracks"] and paused["reason"] == "bandwidth"
        got = recorder.track(anna, "video")
        before = got.packets
        await asyncio.sleep(2.0)
        assert recorder.client.unread("video_paused") == []
        assert got.packets > before + 20, (before, got.packets)
    finally:
        for peer in peers:
            await peer.close()
