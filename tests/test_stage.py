"""The broadcast's stage with real socket.io clients and aiortc peers on loopback: viewers
(socket.io and WHEP) receive only the stage, which follows the active speaker, a moderator's
spotlight and floor; participants keep receiving everything; a projector seat receives
everyone but its hall."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from rooms.errors import Invalid
from rooms.meeting import Meeting
from rooms.onstage import MAX_FLOOR, OnStage, Published
from rooms.roles import Role
from server.config import Settings
from server.signaling import NAMESPACE, SFU
from server.whip import SESSIONS
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_whip_whep import WhepViewer

Joiner = Callable[..., Awaitable[MeetingPeer]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    return made


@pytest.fixture
async def join(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[Joiner]:
    peers: list[MeetingPeer] = []

    async def joiner(name: str, role: str = "participant", **kwargs: Any) -> MeetingPeer:
        client = await Client.open(live_server.url)
        peer = MeetingPeer(client, media_clip, **kwargs)
        peers.append(peer)
        peer.token = await invite(live_server, meeting, name, role)
        assert await client.join(token=peer.token) == {"ok": True, "status": "joined"}
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


def live_server_participants(server: LiveServer, meeting: Meeting) -> list[dict[str, Any]]:
    summary = server.app[NAMESPACE].live(meeting.id)
    assert summary is not None
    return list(summary["participants"])


def ids(owner: MeetingPeer) -> list[str]:
    assert owner.publisher is not None
    return [f"{owner.id}/{mid}" for mid in sorted(owner.publisher.mids().values())]


def video_id(owner: MeetingPeer) -> str:
    assert owner.publisher is not None
    return f"{owner.id}/{owner.publisher.mids()['video']}"


async def flowing(peer: MeetingPeer, owner: MeetingPeer, within: float = 3) -> None:
    got = peer.track(owner, "video")
    before = got.frames
    await wait_for(lambda: peer.track(owner, "video").frames > before + 5, within=within)


async def quiet(peer: MeetingPeer, *owners: MeetingPeer) -> None:
    """Nothing more of the owners' video reaches peer (after what was in flight)."""
    await asyncio.sleep(0.3)
    before = [peer.track(o, "video").packets for o in owners]
    await asyncio.sleep(0.5)
    assert [peer.track(o, "video").packets for o in owners] == before


async def stage_of(peer: MeetingPeer, tracks: list[str], **fields: Any) -> dict[str, Any]:
    """The `stage` event peer gets once the stage holds exactly `tracks`."""

    def check(data: dict[str, Any]) -> bool:
        return sorted(data["tracks"]) == sorted(tracks) and all(
            data[k] == v for k, v in fields.items()
        )

    if peer.client.received["stage"] and check(peer.client.received["stage"][-1]):
        return dict(peer.client.received["stage"][-1])
    return dict(await peer.client.until("stage", check, wait=6))


async def test_viewers_watch_the_active_speaker_then_the_spotlight_and_the_floor(
    join: Joiner, live_server: LiveServer
) -> None:
    mira = await join("Mira", "host")  # moderates; publishes nothing
    boris = await join("Boris", audio_level=127)
    anna = await join("Anna", audio_level=127)
    vera = await join("Vera", audio_level=127)
    viewer = await join("Valentin", "viewer")
    assert viewer.client.snapshot["stage"] == {
        "mode": "auto",
        "spotlight": None,
        "floor": [],
        "tracks": [],
    }
    for peer in (boris, anna, vera):
        assert (await peer.publish())["ok"] is True
    # Nobody speaks yet: the broadcast shows the first publisher rather than nothing.
    await stage_of(viewer, ids(boris), mode="auto")
    await flowing(viewer, boris)
    # Anna speaks: the stage follows the active speaker.
    assert anna.publisher is not None
    anna.publisher.audio_level = 20
    await stage_of(viewer, ids(anna), mode="auto")
    await flowing(viewer, anna)
    await quiet(viewer, boris, vera)
    assert viewer.track(vera, "video").packets == 0
    # Participants keep receiving everyone.
    for peer, others in ((boris, (anna, vera)), (vera, (anna, boris))):
        for other in others:
            await flowing(peer, other)

    # A participant may not choose the stage; nothing changes.
    told = len(viewer.client.received["stage"])
    ack = await vera.client.call("spotlight", {"participant": vera.id})
    assert ack["error"]["code"] == "forbidden", ack
    ack = await vera.client.call("floor", {"participant": vera.id, "on": True})
    assert ack["error"]["code"] == "forbidden", ack
    # Bad payloads from a moderator: clear errors, nothing changes.
    bad: list[tuple[str, Any, str]] = [
        ("spotlight", {"participant": "p_nobody"}, "not_found"),
        ("spotlight", {"participant": 5}, "invalid"),
        ("spotlight", {}, "invalid"),
        ("spotlight", [], "invalid"),
        ("floor", {"participant": boris.id, "on": "yes"}, "invalid"),
        ("floor", {"participant": boris.id}, "invalid"),
        ("floor", {"participant": "p_nobody", "on": True}, "not_found"),
        ("floor", {"participant": "x" * 65, "on": True}, "invalid"),
    ]
    for event, payload, code in bad:
        ack = await mira.client.call(event, payload)
        assert ack["error"]["code"] == code, (event, payload, ack)
    await asyncio.sleep(0.2)
    assert len(viewer.client.received["stage"]) == told
    assert sorted(viewer.client.received["stage"][-1]["tracks"]) == sorted(ids(anna))

    # The spotlight on Boris: the viewer is re-offered Boris and no longer gets Anna.
    offers = viewer.answered
    ack = await mira.client.call("spotlight", {"participant": boris.id})
    assert ack["ok"] is True and ack["stage"]["spotlight"] == boris.id, ack
    state = await stage_of(viewer, ids(boris), mode="manual", spotlight=boris.id)
    assert state["floor"] == []
    await wait_for(lambda: viewer.answered > offers, within=3)
    await flowing(viewer, boris)
    await quiet(viewer, anna)
    # One forwarded copy per receiver: the viewer costs Boris one feed, Anna none.
    sfu = live_server.app[SFU]
    assert [len(sfu.track(video_id(p)).feeds) for p in (anna, boris)] == [3, 4]
    # Vera gets the floor: her tracks join the stage; taken back, they leave it.
    ack = await mira.client.call("floor", {"participant": vera.id, "on": True})
    assert ack["ok"] is True, ack
    await stage_of(viewer, ids(boris) + ids(vera), floor=[vera.id])
    await flowing(viewer, vera)
    await flowing(viewer, boris)
    assert await mira.client.call("floor", {"participant": vera.id, "on": False}) == {
        "ok": True,
        "stage": {"mode": "manual", "spotlight": boris.id, "floor": [], "tracks": ids(boris)},
    }
    await stage_of(viewer, ids(boris), floor=[])
    await quiet(viewer, vera)
    # Everyone in the room is told, and a newcomer's snapshot has the stage.
    assert mira.client.received["stage"][-1]["spotlight"] == boris.id
    late = await join("Lev", "viewer")
    assert late.client.snapshot["stage"]["spotlight"] == boris.id
    await flowing(late, boris)
    # Spotlight off: back to the active speaker.
    await mira.client.call("spotlight", {"participant": None})
    await stage_of(viewer, ids(anna), mode="auto", spotlight=None)
    await flowing(viewer, anna)
    # The spotlit participant leaving takes the spotlight with them.
    await mira.client.call("spotlight", {"participant": vera.id})
    await stage_of(viewer, ids(vera), spotlight=vera.id)
    assert await vera.client.call("leave", {}) == {"ok": True}
    await stage_of(viewer, ids(anna), mode="auto", spotlight=None)


async def test_a_whep_player_gets_the_stage_and_a_projector_everyone_but_its_hall(
    join: Joiner, live_server: LiveServer, meeting: Meeting
) -> None:
    mira = await join("Mira", "host")
    hall = await join("Hall 1", "speaker", audio_level=127)  # on stage by its role
    anna = await join("Anna", audio_level=127)
    boris = await join("Boris", audio_level=127)
    await anna.publish()
    await hall.publish()
    await boris.publish()
    await stage_of(mira, ids(hall))  # the hall, not the first publisher
    await mira.client.call("spotlight", {"participant": boris.id})
    await stage_of(mira, ids(hall) + ids(boris))

    async with aiohttp.ClientSession() as http:
        player = WhepViewer()
        try:
            status, _, answer = await player.watch(
                http, f"{live_server.url}/whep/{meeting.id}", None
            )
            assert status == 201, answer
            # One audio and one video section, filled from the stage, the spotlit first
            # (a section's msid names its publisher).
            assert boris.id in answer
            assert anna.id not in answer and hall.id not in answer
            await wait_for(lambda: player.frames("video") > 10, within=5)
            # The spotlight moves to Anna: the player's sections follow without renegotiation
            # (same codecs), restarting at Anna's next keyframe on the same stream.
            (session,) = [s for s in live_server.app[SESSIONS].values() if s.kind == "whep"]
            assert session.viewer is not None
            assert sorted(session.viewer.track_ids) == sorted(ids(boris))
            video = player.received["video"]
            moment = asyncio.get_running_loop().time()
            await mira.client.call("spotlight", {"participant": anna.id})
            await wait_for(lambda: sorted(session.viewer.track_ids) == sorted(ids(anna)), 3)
            await wait_for(lambda: video.packets_since(moment) > 20, within=5)
            assert video.keyframe_starts >= 2 and len(video.ssrcs) == 1
            # Anna stops publishing: the stage falls back to Hall 1 and the player with it.
            await anna.client.call("unpublish", {})
            await wait_for(lambda: sorted(session.viewer.track_ids) == sorted(ids(hall)), 3)
            moment = asyncio.get_running_loop().time()
            await wait_for(lambda: video.packets_since(moment) > 20, within=5)
        finally:
            await player.close()

    # A projector: the hall's own link, a hidden seat receiving everyone but the hall.
    projector = MeetingPeer(await Client.open(live_server.url), hall.clip)
    try:
        ack = await projector.client.join(token=hall.token, projector=True)
        assert ack == {"ok": True, "status": "joined"}, ack
        me = projector.client.snapshot["self"]
        assert me["kind"] == "projector" and me["id"].startswith("prj-")
        assert projector.client.snapshot["stage"]["spotlight"] == anna.id
        await flowing(projector, boris)
        assert {t["participant"] for t in projector.client.snapshot["tracks"]} == {
            hall.id,
            boris.id,
        }
        assert projector.track(hall, "video").packets == 0
        # Listed for moderators only (issue 11: they may remove it), never for the others.
        listed = [p for p in mira.client.received["participant_joined"] if p["id"] == me["id"]]
        assert [(p["kind"], p["name"]) for p in listed] == [("projector", "Projector — Hall 1")]
        assert not [p for p in anna.client.received["participant_joined"] if p["id"] == me["id"]]
        assert all(p["id"] != me["id"] for p in live_server_participants(live_server, meeting))
    finally:
        await projector.close()

    # A projector needs a roster member's personal link, and a live meeting.
    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    for token in (None, "nonsense", guest):
        client = await Client.open(live_server.url)
        try:
            ack = await client.join(token=token, projector=True)
            assert ack["error"]["code"] == "bad_token", ack
        finally:
            await client.close()
    other = await make_meeting(live_server, settings={"lobby": False})
    hall2 = await invite(live_server, other, "Hall 2", "speaker")
    client = await Client.open(live_server.url)
    try:
        ack = await client.join(token=hall2, projector=True)
        assert ack["error"]["code"] == "not_live", ack
    finally:
        await client.close()


def test_the_stage_rule() -> None:
    onstage = OnStage()
    tracks = [
        Published("b/0", "b", "microphone"),
        Published("b/1", "b", "camera"),
        Published("a/0", "a", "microphone"),
        Published("h/1", "h", "camera"),
        Published("c/2", "c", "screen"),
    ]
    assert onstage.tracks(tracks[:3], [], None) == ["b/0", "b/1"]  # the first publisher
    assert onstage.tracks(tracks, [], "a") == ["a/0", "c/2"]  # the speaker and any screen
    assert onstage.tracks(tracks, ["h"], "a") == ["a/0", "h/1", "c/2"]  # and the hall
    assert onstage.set_spotlight("b") and not onstage.set_spotlight("b")
    assert onstage.set_floor("a", True) and not onstage.set_floor("a", True)
    assert onstage.mode == "manual"
    assert onstage.tracks(tracks, [], "h") == ["b/0", "b/1", "a/0", "c/2"]
    assert onstage.forget("b") and onstage.forget("a") and onstage.mode == "auto"
    assert onstage.tracks([], [], None) == []
    for n in range(MAX_FLOOR):
        onstage.set_floor(f"p{n}", True)
    with pytest.raises(Invalid):
        onstage.set_floor("one-too-many", True)
