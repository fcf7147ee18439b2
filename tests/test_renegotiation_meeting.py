"""Renegotiation inside a live meeting (real socket.io clients, aiortc on loopback): a refused
re-offer keeps the person's running tracks for everyone; a publication the SFU could not go on
with is announced to the room at once, not left as tracks that carry nothing."""

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from rooms.meeting import Meeting
from server.config import Settings
from server.context import LIVE
from server.namespace import MeetingNamespace
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, settings={"lobby": False})
    return made


@pytest.fixture
async def pair(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[tuple[MeetingPeer, MeetingPeer]]:
    """Anna publishes the clip; Olga, the host, receives it."""
    peers = []
    for name, role in (("Ольга Иванова", "host"), ("Анна Петрова", "participant")):
        peer = MeetingPeer(await Client.open(live_server.url), media_clip)
        peers.append(peer)
        token = await invite(live_server, meeting, name, role)
        assert (await peer.client.join(token=token))["status"] == "joined"
    olga, anna = peers
    assert "sdp" in await anna.publish()
    await wait_for(lambda: olga.track(anna, "video").frames > 5, within=8)
    yield olga, anna
    for peer in peers:
        await peer.close()


def _with_unsupported_screen(offer: str) -> str:
    """The offer with a third section, a screen whose only codec the SFU cannot take."""
    head, _, rest = offer.partition("m=video")
    video = "m=video" + rest
    screen = video.replace("a=mid:1", "a=mid:7").replace("VP8/90000", "x-vp13/90000")
    screen = screen.replace("H264/90000", "x-h266/90000")
    return head.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7") + video + screen


async def test_a_refused_re_offer_keeps_the_running_tracks_for_everyone(
    pair: tuple[MeetingPeer, MeetingPeer],
) -> None:
    olga, anna = pair
    assert anna.publisher is not None
    offer = _with_unsupported_screen(await anna.publisher.offer())
    labels = {"0": "microphone", "1": "camera", "7": "screen"}
    ack = await anna.client.call("publish", {"sdp": offer, "sources": labels})
    assert ack["error"]["code"] == "unsupported_codec"
    before = olga.track(anna, "video").frames
    await wait_for(lambda: olga.track(anna, "video").frames > before + 10, within=3)
    tracks = olga.client.unread("tracks")
    assert all(any(t["participant"] == anna.id for t in d["tracks"]) for d in tracks), tracks


async def test_a_lost_publication_is_announced_to_the_room(
    live_server: LiveServer, meeting: Meeting, pair: tuple[MeetingPeer, MeetingPeer]
) -> None:
    olga, anna = pair
    assert anna.publisher is not None
    namespace = live_server.app[LIVE]
    assert isinstance(namespace, MeetingNamespace)
    live = namespace.live_meeting(meeting.id)
    assert live is not None and live.stage is not None
    publication = live.stage.publication(anna.id)
    assert publication is not None
    offer = await anna.publisher.offer()
    # As when aiortc fails after taking an offer (it cannot roll back): the connection is gone.
    await publication.close()
    olga.client.drain()
    labels = {"0": "microphone", "1": "camera"}
    ack = await anna.client.call("publish", {"sdp": offer, "sources": labels})
    assert ack["error"]["code"] == "closed"
    await olga.client.until(
        "tracks", lambda d: all(t["participant"] != anna.id for t in d["tracks"]), wait=2
    )
