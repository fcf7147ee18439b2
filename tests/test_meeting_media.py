"""The SFU inside live meetings: real socket.io clients with aiortc connections on loopback,
publishing a pre-encoded clip through `publish` / `subscribe_offer` / `subscribe_answer`."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pytest

from media.links import PAUSE_AFTER, WARMUP
from rooms.meeting import Meeting
from server.config import Settings
from server.rtc import client_ice_servers, ice_settings
from server.signaling import SFU
from tests.conftest import LiveServer, start_server
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_media_errors import _client_offer, _many_sections, _unsupported_codecs

Joiner = Callable[..., Awaitable[MeetingPeer]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Everything on loopback: the server's candidates on 127.0.0.1 only.
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    return await make_meeting(live_server, settings={"lobby": False})


@pytest.fixture
async def join(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[Joiner]:
    """Joins a named participant of a role to the meeting; closes them all at the end."""
    peers: list[MeetingPeer] = []

    async def joiner(name: str, role: str = "participant", **kwargs: Any) -> MeetingPeer:
        client = await Client.open(live_server.url)
        peer = MeetingPeer(client, media_clip, **kwargs)
        peers.append(peer)
        peer.token = await invite(live_server, meeting, name, role)
        ack = await client.join(token=peer.token)
        assert ack == {"ok": True, "status": "joined"}, ack
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


def counted(monkeypatch: pytest.MonkeyPatch, module: Any, name: str) -> list[Any]:
    calls: list[Any] = []
    original = getattr(module, name)

    def count(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(module, name, count)
    return calls


def frames(peer: MeetingPeer, owner: MeetingPeer, kind: str) -> int:
    return peer.track(owner, kind).frames


async def test_three_participants_each_receive_the_other_two(
    join: Joiner, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders = counted(monkeypatch, aiortc.rtcrtpreceiver, "get_decoder")
    encoders = counted(monkeypatch, aiortc.rtcrtpsender, "get_encoder")
    peers = [await join("Anna", "host"), await join("Boris"), await join("Vera")]
    for peer in peers:
        ack = await peer.publish()
        assert ack["ok"] is True and ack["sdp"].startswith("v=0"), ack

    def everyone_has_a_second() -> bool:
        return all(
            frames(p, o, "video") >= 25 and frames(p, o, "audio") >= 45
            for p in peers
            for o in peers
            if o is not p
        )

    await wait_for(everyone_has_a_second, within=8, explain=lambda: [p.failure for p in peers])
    for peer in peers:
        assert peer.failure is None
        assert set(peer.received) == {
            f"{o.id}/{mid}" for o in peers if o is not peer for mid in ("0", "1")
        }
        for other in peers:
            if other is not peer:
                video = peer.track(other, "video")
                assert video.codec == "VP8" and video.first_is_keyframe
    assert peers[0].client.snapshot["ice_servers"] == []
    assert peers[2].client.snapshot["tracks"] == []  # nobody published yet when Vera joined
    tracks = peers[0].client.received["tracks"][-1]["tracks"]
    assert sorted((t["participant"], t["source"]) for t in tracks) == sorted(
        (p.id, s) for p in peers for s in ("microphone", "camera")
    )
    # Nothing decodes; the only encoders are the test publishers' packers (2 per publisher).
    assert decoders == []
    assert len(encoders) == 2 * len(peers)


async def flowing(peer: MeetingPeer, owner: MeetingPeer, kind: str, within: float = 2) -> None:
    """More of owner's `kind` packets keep arriving at peer."""
    got = peer.track(owner, kind)
    before = got.packets
    await wait_for(lambda: got.packets > before + 5, within=within)


async def stopped(peer: MeetingPeer, owner: MeetingPeer, kind: str) -> None:
    """No more of owner's `kind` reaches peer (after what was in flight)."""
    got = peer.track(owner, kind)
    await asyncio.sleep(0.3)
    before = got.packets
    await asyncio.sleep(0.5)
    assert got.packets == before, f"{kind} still arrives"


async def test_a_late_joiner_gets_video_within_a_second(join: Joiner) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    await anna.publish()
    await boris.publish()
    await wait_for(lambda: frames(anna, boris, "video") > 40, within=5)  # well past keyframe
    loop = asyncio.get_running_loop()
    start = loop.time()
    vera = await join("Vera")
    for owner in (anna, boris):
        await wait_for(lambda o=owner: frames(vera, o, "video") > 0, within=3)  # type: ignore[misc]
        video = vera.track(owner, "video")
        assert video.first_is_keyframe
        assert video.first_at is not None and video.first_at - start < 1.5
    # ... and the late joiner's own tracks reach the others.
    await vera.publish()
    await wait_for(lambda: frames(anna, vera, "video") > 5 and frames(boris, vera, "video") > 5, 3)


async def test_video_pause_resume_and_audio_only(join: Joiner) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    await anna.publish()
    await wait_for(lambda: frames(boris, anna, "video") > 5, within=5)
    video_id = f"{anna.id}/{anna.publisher.mids()['video']}"  # type: ignore[union-attr]

    assert await boris.client.call("video", {"track": video_id, "on": False}) == {"ok": True}
    await stopped(boris, anna, "video")
    await flowing(boris, anna, "audio")
    moment = asyncio.get_running_loop().time()
    assert await boris.client.call("video", {"track": video_id, "on": True}) == {"ok": True}
    await flowing(boris, anna, "video")
    first = boris.track(anna, "video").first_since(moment)
    assert first is not None and first[1], "resumed video must start with a keyframe"

    assert await boris.client.call("audio_only", {"on": True}) == {"ok": True}
    await stopped(boris, anna, "video")
    await flowing(boris, anna, "audio")
    # A video track published while audio-only is paused from the start.
    vera = await join("Vera")
    await vera.publish()
    await wait_for(lambda: frames(anna, vera, "video") > 5, within=5)
    assert frames(boris, vera, "video") == 0
    await flowing(boris, vera, "audio")
    assert await boris.client.call("audio_only", {"on": False}) == {"ok": True}
    await flowing(boris, anna, "video")
    await flowing(boris, vera, "video")
    # Vera stops publishing: her tracks leave, the others' stay.
    assert await vera.client.call("unpublish", {}) == {"ok": True}
    left = await boris.client.until(
        "tracks", lambda d: all(t["participant"] != vera.id for t in d["tracks"])
    )
    assert {t["participant"] for t in left["tracks"]} == {anna.id}
    await stopped(boris, vera, "audio")
    await flowing(boris, anna, "video")

    refusals = [
        ({"track": "nobody/1", "on": False}, "not_found"),
        ({"track": f"{anna.id}/0", "on": False}, "not_found"),  # audio, not video
        ({"track": video_id}, "invalid"),
    ]
    for payload, code in refusals:
        ack = await boris.client.call("video", payload)
        assert ack["error"]["code"] == code, (payload, ack)


async def test_moderator_mute_stops_the_audio_until_the_mic_is_turned_on(join: Joiner) -> None:
    anna, boris, vera = await join("Anna", "host"), await join("Boris"), await join("Vera")
    await boris.publish()
    await wait_for(lambda: frames(anna, boris, "audio") > 5 and frames(vera, boris, "audio") > 5, 5)
    assert await boris.client.call("state", {"mic": True}) == {"ok": True}

    ack = await vera.client.call("mute", {"id": boris.id})
    assert ack["error"]["code"] == "forbidden"

    assert await anna.client.call("mute", {"id": boris.id}) == {"ok": True}
    assert await boris.client.next("muted") == {"by": "Anna"}
    await anna.client.until("participant_updated", lambda d: d["id"] == boris.id and not d["mic"])
    muted = await vera.client.until(
        "tracks", lambda d: any(t["muted"] for t in d["tracks"] if t["participant"] == boris.id)
    )
    assert [t["kind"] for t in muted["tracks"] if t["muted"]] == ["audio"]
    await stopped(anna, boris, "audio")
    await stopped(vera, boris, "audio")
    await flowing(anna, boris, "video")  # only the microphone is stopped

    assert await boris.client.call("state", {"mic": True}) == {"ok": True}
    await vera.client.until("tracks", lambda d: not any(t["muted"] for t in d["tracks"]))
    await flowing(anna, boris, "audio")
    await flowing(vera, boris, "audio")


async def test_a_viewer_may_not_publish_but_watches(join: Joiner, live_server: LiveServer) -> None:
    anna = await join("Anna", "host")
    await anna.publish()
    viewer = await join("Valentin", "viewer")
    await wait_for(lambda: frames(viewer, anna, "video") > 5, within=5)
    ack = await viewer.publish()
    assert ack["error"]["code"] == "forbidden", ack
    error = await viewer.client.until("error", lambda d: d["event"] == "publish")
    assert error["code"] == "forbidden"
    await asyncio.sleep(0.2)
    assert all(t["participant"] != viewer.id for t in anna.client.received["tracks"][-1]["tracks"])
    assert all(not tid.startswith(viewer.id) for tid in live_server.app[SFU].forwarders)


def _one_section(offer: str) -> str:
    """The offer with its first media section cut to the lines a section needs."""
    keep = ("m=", "c=", "a=mid", "a=sendonly", "a=rtpmap:96", "a=ice-", "a=fingerprint:sha-256")
    head, _, rest = offer.partition("m=")
    section = ("m=" + rest.split("m=")[0]).splitlines()
    return head + "".join(line + "\r\n" for line in section if line.startswith(keep))


async def test_bad_media_input_gets_clear_errors_and_harms_nobody(
    join: Joiner, media_clip: Clip
) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    # Nothing published yet: Boris has no receiving connection to trickle to.
    nowhere = {"pc": "subscribe", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}
    assert (await boris.client.call("ice", nowhere))["error"]["code"] == "not_found"
    await anna.publish()
    await wait_for(lambda: frames(boris, anna, "video") > 5, within=5)
    mallory = await join("Mallory")
    offer = await _client_offer(media_clip)
    labels = {"0": "microphone", "1": "camera"}
    publish_cases: list[tuple[Any, str]] = [
        ({"sdp": "hello", "sources": labels}, "bad_sdp"),
        ({"sdp": offer[:300], "sources": labels}, "bad_sdp"),
        ({"sdp": _many_sections(_one_section(offer), 100), "sources": {}}, "too_many_media"),
        ({"sdp": _unsupported_codecs(offer), "sources": labels}, "unsupported_codec"),
        ({"sdp": offer, "sources": {"0": "microphone"}}, "invalid"),  # video unlabelled
        ({"sdp": offer, "sources": {"0": "camera", "1": "microphone"}}, "invalid"),
        ({"sdp": offer, "sources": "camera"}, "invalid"),
        ({"sdp": 42, "sources": labels}, "bad_sdp"),
        ({"sdp": "v=0\r\n" + "x" * 62_000}, "too_large"),
    ]
    for payload, code in publish_cases:
        ack = await mallory.client.call("publish", payload)
        assert ack["error"]["code"] == code, (str(payload)[:100], ack)
        assert ack["error"]["message"]
    other_cases: list[tuple[str, Any, str]] = [
        (
            "ice",
            {"pc": "publish", "candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"},
            "not_found",
        ),
        ("ice", {"pc": "elsewhere", "candidate": ""}, "invalid"),
        ("subscribe_answer", {"sdp": offer}, "no_offer"),
        ("unpublish", [], "invalid"),
        ("audio_only", {"on": "yes"}, "invalid"),
    ]
    for event, payload, code in other_cases:
        ack = await mallory.client.call(event, payload)
        assert ack["error"]["code"] == code, (event, payload, ack)
    # Anna's candidates for a connection that exists are taken, and checked by media/.
    good = {"pc": "publish", "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host"}
    assert await anna.client.call("ice", {**good, "sdpMid": "0"}) == {"ok": True}
    assert await anna.client.call("ice", {"pc": "publish", "candidate": ""}) == {"ok": True}
    ack = await anna.client.call("ice", {"pc": "publish", "candidate": "candidate:nonsense"})
    assert ack["error"]["code"] == "bad_candidate", ack
    ack = await boris.client.call("subscribe_answer", {"sdp": "v=0"})
    assert ack["error"]["code"] == "no_offer", ack

    # Nothing of Mallory's was published; the others' media never stopped.
    assert all(t["participant"] == anna.id for t in boris.client.received["tracks"][-1]["tracks"])
    await flowing(boris, anna, "video")
    await flowing(boris, anna, "audio")
    # Mallory can still publish properly afterwards.
    assert (await mallory.publish())["ok"] is True
    await wait_for(lambda: frames(boris, mallory, "video") > 5, within=5)


async def test_leaving_or_demotion_to_viewer_takes_the_tracks_away(join: Joiner) -> None:
    anna, boris, vera = await join("Anna", "host"), await join("Boris"), await join("Vera")
    for peer in (boris, vera):
        await peer.publish()
    await wait_for(lambda: frames(anna, boris, "video") > 5 and frames(anna, vera, "video") > 5, 5)
    offers = anna.answered

    assert await anna.client.call("set_role", {"id": boris.id, "role": "viewer"}) == {"ok": True}
    await anna.client.until(
        "tracks", lambda d: all(t["participant"] != boris.id for t in d["tracks"])
    )
    await stopped(anna, boris, "video")
    await stopped(vera, boris, "audio")
    await wait_for(lambda: anna.answered > offers, within=3)  # re-offered without them
    assert (await boris.publish())["error"]["code"] == "forbidden"
    await flowing(boris, vera, "video")  # a viewer still watches

    assert await vera.client.call("leave", {}) == {"ok": True}
    await anna.client.until("tracks", lambda d: d["tracks"] == [])
    await stopped(anna, vera, "video")


async def test_speaking_names_the_participant_whose_audio_has_level(join: Joiner) -> None:
    anna = await join("Anna", "host")
    boris = await join("Boris", audio_level=20)  # a clear voice (-20 dBov)
    vera = await join("Vera", audio_level=127)  # silence
    await boris.publish()
    await vera.publish()
    speaking = await anna.client.until("speaking", lambda d: d["speaking"], wait=5)
    assert speaking == {"active": boris.id, "speaking": [boris.id]}
    # Boris falls silent: nobody speaks, Boris stays the active speaker.
    assert boris.publisher is not None
    boris.publisher.audio_level = 127
    quiet = await anna.client.until("speaking", lambda d: not d["speaking"], wait=5)
    assert quiet == {"active": boris.id, "speaking": []}
    # Vera speaks up and takes over.
    assert vera.publisher is not None
    vera.publisher.audio_level = 30
    taken = await anna.client.until("speaking", lambda d: d["speaking"], wait=5)
    assert taken == {"active": vera.id, "speaking": [vera.id]}
    # A speaking event comes at most once per tick, not per packet.
    assert len(anna.client.received["speaking"]) < 10


async def test_a_reconnect_replaces_the_peer_connections(
    join: Joiner, live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    await anna.publish()
    await boris.publish()
    await wait_for(lambda: frames(anna, boris, "video") > 5, within=5)
    seat = boris.client.snapshot["seat"]
    await boris.client.close()  # the socket drops; the seat is kept for the grace period
    await anna.client.until("participant_updated", lambda d: not d["connected"])

    # The same seat comes back on a new socket with new peer connections.
    client = await Client.open(live_server.url)
    again = MeetingPeer(client, media_clip)
    try:
        ack = await client.join(token=boris.token, seat=seat)
        assert ack["status"] == "joined"
        assert client.snapshot["self"]["id"] == boris.id
        assert any(t["participant"] == boris.id for t in client.snapshot["tracks"]) is False
        assert (await again.publish())["ok"] is True
        await wait_for(lambda: frames(anna, again, "video") > 5, within=5)
        await wait_for(lambda: frames(again, anna, "video") > 5, within=5)
        assert anna.failure is None and again.failure is None
    finally:
        await again.close()


async def test_a_slow_link_gets_video_paused_and_resumed_with_a_keyframe(join: Joiner) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    await anna.publish()
    await wait_for(lambda: frames(boris, anna, "video") > 5, within=5)
    video_id = f"{anna.id}/{anna.publisher.mids()['video']}"  # type: ignore[union-attr]

    boris.report_bandwidth(150_000, loss=0.25)  # far below the clip's ~800 kbit/s, lossy
    # A new stream is let settle first (WARMUP), then PAUSE_AFTER lossy intervals.
    paused = await boris.client.next("video_paused", wait=WARMUP + PAUSE_AFTER + 3)
    assert paused == {"tracks": [video_id], "reason": "bandwidth"}
    await stopped(boris, anna, "video")
    await flowing(boris, anna, "audio")

    boris.report_bandwidth(5_000_000, loss=0.0)
    moment = asyncio.get_running_loop().time()
    resumed = await boris.client.next("video_paused", wait=8)
    assert resumed == {"tracks": [], "reason": "bandwidth"}
    await flowing(boris, anna, "video")
    first = boris.track(anna, "video").first_since(moment)
    assert first is not None and first[1], "resumed video must start with a keyframe"


async def test_metrics_count_tracks_and_forwarded_packets(
    join: Joiner, live_server: LiveServer
) -> None:
    anna, boris = await join("Anna", "host"), await join("Boris")
    await anna.publish()
    await wait_for(lambda: frames(boris, anna, "video") > 30, within=5)
    await asyncio.sleep(1.1)  # the counters are brought up to date once a second

    def figure(text: str, name: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    status, text = await live_server.api("GET", "/metrics")
    assert status == 200
    assert figure(text, "veche_tracks") == 2
    received = sum(got.packets for got in boris.received.values())
    assert 0.5 * received <= figure(text, "veche_forwarded_packets_total") <= 2 * received
    assert figure(text, "veche_forwarded_bytes_total") > 100_000


def test_ice_settings_and_per_client_turn_credentials(settings: Settings) -> None:
    configured = replace(
        settings,
        ice_servers="stun:stun.example.org:3478, turn:turn.example.org:3478?transport=udp",
        turn_secret="s3cret",
        turn_ttl=600,
        rtc_addresses="127.0.0.1",
        announce_address="203.0.113.7",
        rtc_min_port=40000,
        rtc_max_port=40099,
    )
    sfu_side = ice_settings(configured)
    assert [s.urls for s in sfu_side.servers] == [("stun:stun.example.org:3478",)]  # no TURN
    assert sfu_side.host_addresses == ("127.0.0.1",)
    assert sfu_side.announce_address == "203.0.113.7"
    assert sfu_side.port_range == (40000, 40099)
    stun, turn = client_ice_servers(configured, "p_x1")
    assert stun == {"urls": ["stun:stun.example.org:3478"]}
    assert turn["urls"] == ["turn:turn.example.org:3478?transport=udp"]
    assert turn["username"].endswith(":p_x1") and turn["credential"]
    assert client_ice_servers(settings, "p_x1") == []
    with pytest.raises(ValueError):
        ice_settings(replace(settings, rtc_min_port=5000, rtc_max_port=4000))


async def test_shutdown_closes_every_peer_connection(settings: Settings, media_clip: Clip) -> None:
    server, runner = await start_server(replace(settings, shutdown_notice=0.2))
    meeting = await make_meeting(server, settings={"lobby": False})
    peers = []
    try:
        for name, role in (("Anna", "host"), ("Boris", "participant")):
            peer = MeetingPeer(await Client.open(server.url), media_clip)
            peers.append(peer)
            await peer.client.join(token=await invite(server, meeting, name, role))
            await peer.publish()
        anna, boris = peers
        await wait_for(lambda: frames(anna, boris, "video") > 5, within=5)
        sfu = server.app[SFU]
        await runner.cleanup()  # (about 5 s, signaling's own shutdown: not the SFU's)
        assert sfu.track_count == 0 and sfu.forwarders == {}
        for peer in peers:
            assert peer.publisher is not None
            await wait_for(
                lambda p=peer: (
                    p.publisher.pc.connectionState == "closed"  # type: ignore[misc]
                    and p.pc.connectionState == "closed"
                ),
                within=3,
            )
    finally:
        for peer in peers:
            await peer.close()


async def test_removal_and_the_end_of_the_grace_period_take_the_tracks_away(
    join: Joiner,
) -> None:
    anna, boris, vera = await join("Anna", "host"), await join("Boris"), await join("Vera")
    for peer in (boris, vera):
        await peer.publish()
    await wait_for(lambda: frames(anna, boris, "video") > 5 and frames(anna, vera, "video") > 5, 5)

    assert await anna.client.call("remove", {"id": vera.id}) == {"ok": True}
    await anna.client.until(
        "tracks", lambda d: all(t["participant"] != vera.id for t in d["tracks"])
    )
    await stopped(anna, vera, "video")

    await boris.client.close()  # gone for good: the seat waits out the grace period (2 s)
    await asyncio.sleep(0.5)
    assert any(t["participant"] == boris.id for t in anna.client.received["tracks"][-1]["tracks"])
    gone = await anna.client.until("participant_left", lambda d: d["id"] == boris.id, wait=4)
    assert gone["reason"] == "timeout"
    await anna.client.until("tracks", lambda d: d["tracks"] == [])
    await stopped(anna, boris, "video")
