"""WHIP and WHEP against a real server on loopback: an aiortc publisher sending a pre-encoded
H.264 + Opus clip the way OBS does (one offer with every candidate), socket.io participants
with aiortc subscribers, and aiortc WHEP viewers counting RTP packets (nothing decodes)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from media import hooks, ice
from rooms.meeting import Meeting
from rooms.roles import Role
from server.config import Settings
from server.signaling import NAMESPACE
from server.whip import SESSIONS
from tests.conftest import LiveServer
from tests.media_clients import LOOPBACK, ClientPublisher, MeetingPeer, Received, wait_for
from tests.media_clip import Clip, clip
from tests.sio_client import Client, invite, make_meeting

SDP = "application/sdp"
TURN = "turn:turn.example.org:3478"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Everything on loopback; a TURN server (never contacted) to see its Link header.
    return replace(settings, rtc_addresses="127.0.0.1", ice_servers=TURN, turn_secret="s3cret")


@pytest.fixture(scope="module")
def h264() -> Clip:
    return clip(codec="h264")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    return await make_meeting(live_server, settings={"lobby": False})


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Closer:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> Any:
        self.items.append(item)
        return item


@pytest.fixture
async def closer() -> AsyncIterator[Closer]:
    c = Closer()
    yield c
    for item in reversed(c.items):
        # Each in a task of its own, bounded: a stuck close must fail the test, not hang it.
        await asyncio.wait_for(item.close(), 5)


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: str | bytes,
    token: str | None = None,
    content_type: str = SDP,
) -> tuple[int, Any, Any]:
    headers = {"Content-Type": content_type, **bearer(token)}
    async with http.post(url, data=body, headers=headers) as response:
        text = await response.text()
        data = text if response.content_type == SDP else await response.json()
        return response.status, response.headers.copy(), data


async def delete(http: aiohttp.ClientSession, url: str, token: str | None) -> tuple[int, Any]:
    async with http.delete(url, headers=bearer(token)) as response:
        body = await response.json() if response.status != 204 else None
        return response.status, body


class Whip:
    """An OBS stand-in: H.264 + Opus, every candidate in the offer, no trickle."""

    def __init__(self, clip: Clip) -> None:
        self.publisher = ClientPublisher(clip, video_codec="video/H264")
        self.location = ""

    async def publish(self, http: aiohttp.ClientSession, url: str, token: str) -> Any:
        status, headers, body = await post(http, url, await self.publisher.offer(), token)
        if status == 201:
            self.location = headers["Location"]
            await self.publisher.accept(body)
        return status, headers, body

    async def close(self) -> None:
        await self.publisher.close()


class WhepViewer:
    """A WHEP player: one recvonly audio and one recvonly video section."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(ice.configuration(LOOPBACK))
        self.received: dict[str, Received] = {}
        self.location = ""
        for kind in ("audio", "video"):
            self.pc.addTransceiver(kind, direction="recvonly")

    async def watch(self, http: aiohttp.ClientSession, url: str, token: str | None) -> Any:
        ice.restrict_candidates(self.pc, LOOPBACK)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, headers, body = await post(http, url, self.pc.localDescription.sdp, token)
        if status != 201:
            return status, headers, body
        self.location = headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        for transceiver in self.pc.getTransceivers():
            codecs = hooks.negotiated_codecs(transceiver)
            got = Received(transceiver.kind, codecs[0].name if codecs else "")
            self.received[transceiver.kind] = got
            hooks.tap_receiver(transceiver.receiver, got.add)
        return status, headers, body

    def frames(self, kind: str) -> int:
        got = self.received.get(kind)
        return got.frames if got else 0

    async def close(self) -> None:
        await self.pc.close()


async def join(live_server: LiveServer, meeting: Meeting, name: str, role: str) -> MeetingPeer:
    client = await Client.open(live_server.url)
    peer = MeetingPeer(client, clip())
    peer.token = await invite(live_server, meeting, name, role)
    assert await client.join(token=peer.token) == {"ok": True, "status": "joined"}
    return peer


def seat_named(client: Client, name: str) -> dict[str, Any]:
    joined = [p for p in client.received["participant_joined"] if p["name"] == name]
    assert joined, f"{name} never joined"
    return dict(joined[-1])


async def test_whip_publisher_appears_as_the_roster_entry_and_whep_viewers_receive_it(
    live_server: LiveServer,
    meeting: Meeting,
    http: aiohttp.ClientSession,
    h264: Clip,
    closer: Closer,
) -> None:
    host = closer.add(await join(live_server, meeting, "Anna", "host"))
    hall_token = await invite(live_server, meeting, "Hall 1", "speaker")
    obs = closer.add(Whip(h264))
    status, headers, answer = await obs.publish(
        http, f"{live_server.url}/whip/{meeting.id}", hall_token
    )
    assert status == 201, answer
    assert headers["Content-Type"].startswith(SDP)
    assert headers["Location"].startswith(f"/whip/{meeting.id}/")
    assert headers["ETag"]
    assert "H264/90000" in answer and "packetization-mode=1" in answer
    assert "a=candidate:" in answer and "127.0.0.1" in answer
    assert f'<{TURN}>; rel="ice-server"; username="' in headers["Link"]

    # The room sees the roster entry as a participant with camera and mic on, and its tracks.
    hall = seat_named(host.client, "Hall 1")
    assert hall["role"] == "speaker" and hall["roster_id"]
    await host.client.until("participant_updated", lambda p: p["mic"] and p["camera"])
    tracks = (await host.client.until("tracks", lambda d: d["tracks"]))["tracks"]
    assert sorted((t["participant"], t["source"]) for t in tracks) == [
        (hall["id"], "camera"),
        (hall["id"], "microphone"),
    ]
    video_id = next(t["id"] for t in tracks if t["kind"] == "video")

    def host_video() -> Received:
        return host.received.get(video_id) or Received("video", "")

    await wait_for(lambda: host_video().frames >= 25, within=8, explain=lambda: host.failure)
    assert host_video().codec == "H264" and host_video().first_is_keyframe

    # A viewer token is enough to watch over WHEP.
    viewer_token = live_server.tokens.guest(meeting.id, Role.VIEWER)
    viewer = closer.add(WhepViewer())
    status, headers, answer = await viewer.watch(
        http, f"{live_server.url}/whep/{meeting.id}", viewer_token
    )
    assert status == 201, answer
    assert headers["Location"].startswith(f"/whep/{meeting.id}/")
    await wait_for(lambda: viewer.frames("video") >= 25 and viewer.frames("audio") >= 25, within=8)
    assert viewer.received["video"].first_is_keyframe and viewer.received["video"].codec == "H264"

    # The same person cannot also join from a browser while OBS publishes as them.
    browser = await Client.open(live_server.url)
    closer.add(browser)
    ack = await browser.join(token=hall_token)
    assert ack["error"]["code"] == "already_joined" and "WHIP" in ack["error"]["message"]

    # Someone else's token cannot end the session; the publisher's own DELETE does.
    url = live_server.url + obs.location
    assert (await delete(http, url, viewer_token))[0] == 404
    assert (await delete(http, url, hall_token)) == (204, None)
    left = await host.client.until("participant_left", lambda d: d["id"] == hall["id"])
    assert left["reason"] == "left"
    await host.client.until("tracks", lambda d: d["tracks"] == [])
    # The WHEP viewer's feed of it went quiet (WHEP has no renegotiation to remove it).
    await asyncio.sleep(0.3)
    packets = viewer.received["video"].packets
    await asyncio.sleep(0.5)
    assert viewer.received["video"].packets == packets
    assert (await delete(http, url, hall_token))[0] == 404  # gone already

    assert (await delete(http, live_server.url + viewer.location, viewer_token))[0] == 204


async def test_whip_refused_while_that_person_is_in_the_room_from_a_browser(
    live_server: LiveServer,
    meeting: Meeting,
    http: aiohttp.ClientSession,
    h264: Clip,
    closer: Closer,
) -> None:
    peer = closer.add(await join(live_server, meeting, "Boris", "participant"))
    obs = closer.add(Whip(h264))
    status, _, body = await obs.publish(http, f"{live_server.url}/whip/{meeting.id}", peer.token)
    assert status == 409 and body["error"]["code"] == "conflict"
    await asyncio.sleep(0.1)
    assert peer.client.received["participant_joined"] == []  # nothing was seated
    summary = live_server.app[NAMESPACE].live(meeting.id)
    assert summary is not None and [p["name"] for p in summary["participants"]] == ["Boris"]


async def test_twenty_whep_viewers_all_receive_video(
    live_server: LiveServer, http: aiohttp.ClientSession, h264: Clip, closer: Closer
) -> None:
    meeting = await make_meeting(live_server, visibility="public", settings={"lobby": False})
    obs = closer.add(Whip(h264))
    token = await invite(live_server, meeting, "Hall", "speaker")
    assert (await obs.publish(http, f"{live_server.url}/whip/{meeting.id}", token))[0] == 201
    viewers = [closer.add(WhepViewer()) for _ in range(20)]
    # A public meeting admits viewers without a token.
    results = await asyncio.gather(
        *(v.watch(http, f"{live_server.url}/whep/{meeting.id}", None) for v in viewers)
    )
    assert [r[0] for r in results] == [201] * 20
    await wait_for(
        lambda: all(v.frames("video") >= 15 for v in viewers),
        within=15,
        explain=lambda: [v.frames("video") for v in viewers],
    )
    assert all(v.received["video"].first_is_keyframe for v in viewers)
    for v in viewers:
        assert (await delete(http, live_server.url + v.location, None))[0] == 204


async def test_bad_requests_get_json_errors_and_change_nothing(
    live_server: LiveServer,
    meeting: Meeting,
    http: aiohttp.ClientSession,
    h264: Clip,
    closer: Closer,
) -> None:
    whip = f"{live_server.url}/whip/{meeting.id}"
    whep = f"{live_server.url}/whep/{meeting.id}"
    speaker = await invite(live_server, meeting, "Vera", "speaker")
    viewer = await invite(live_server, meeting, "Gleb", "viewer")
    publisher = closer.add(ClientPublisher(h264, video_codec="video/H264"))
    offer = await publisher.offer()
    other = await make_meeting(live_server)
    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    cases: list[tuple[str, str | bytes, str | None, str, int, str]] = [
        (whip, offer, None, SDP, 401, "bad_token"),
        (whip, offer, "not-a-token", SDP, 401, "bad_token"),
        (whip, offer, live_server.tokens.invite(other.id, "x"), SDP, 401, "bad_token"),
        (whip, offer, viewer, SDP, 403, "forbidden"),
        (whip, offer, guest, SDP, 403, "forbidden"),
        (f"{live_server.url}/whip/nope", offer, speaker, SDP, 404, "not_found"),
        (whip, offer, speaker, "text/plain", 415, "unsupported_media_type"),
        (whip, "v=0\r\n" + "a=x\r\n" * 20000, speaker, SDP, 413, "too_large"),
        (whip, "hello", speaker, SDP, 400, "bad_sdp"),
        (whip, offer.replace("a=fingerprint", "a=fingerprimt"), speaker, SDP, 400, "bad_sdp"),
        (whep, offer, None, SDP, 401, "bad_token"),
        (whep, offer, "junk", SDP, 401, "bad_token"),
        (f"{live_server.url}/whep/nope", offer, viewer, SDP, 404, "not_found"),
        (whep, offer, viewer, "application/json", 415, "unsupported_media_type"),
        (whep, offer, viewer, SDP, 400, "bad_sdp"),  # a WHEP offer must not send
    ]
    for url, body, token, content_type, status, code in cases:
        got, headers, data = await post(http, url, body, token, content_type)
        assert (got, data["error"]["code"]) == (status, code), (url, token, content_type, data)
        assert data["error"]["message"]
        assert headers["Access-Control-Allow-Origin"] == "*"
    assert live_server.app[NAMESPACE].live(meeting.id) is None  # nobody was seated

    # Unknown sessions; PATCH is not supported; CORS preflight with the ICE servers.
    assert (await delete(http, whip + "/nosuch", speaker))[0] == 404
    assert (await delete(http, whep + "/nosuch", viewer))[0] == 404
    async with http.patch(whip + "/nosuch", data="x", headers=bearer(speaker)) as response:
        assert response.status == 405
    async with http.options(whip) as response:
        assert response.status == 204
        allowed = response.headers["Access-Control-Allow-Methods"]
        assert {"POST", "DELETE", "PATCH", "OPTIONS"} <= set(allowed.replace(",", " ").split())
        assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
        assert "Location" in response.headers["Access-Control-Expose-Headers"]
        assert response.headers["Link"].startswith(f'<{TURN}>; rel="ice-server"')


async def test_a_removed_publisher_is_gone_with_its_session(
    live_server: LiveServer,
    meeting: Meeting,
    http: aiohttp.ClientSession,
    h264: Clip,
    closer: Closer,
) -> None:
    host = closer.add(await join(live_server, meeting, "Anna", "host"))
    # Nothing published yet: a WHEP viewer's sections are answered inactive.
    early = closer.add(WhepViewer())
    status, _, answer = await early.watch(http, f"{live_server.url}/whep/{meeting.id}", host.token)
    assert status == 201 and "a=inactive" in answer and "a=sendonly" not in answer

    token = await invite(live_server, meeting, "Hall 2", "participant")
    obs = closer.add(Whip(h264))
    assert (await obs.publish(http, f"{live_server.url}/whip/{meeting.id}", token))[0] == 201
    hall = seat_named(host.client, "Hall 2")
    assert await host.client.call("remove", {"id": hall["id"]}) == {"ok": True}
    await host.client.until("participant_left", lambda d: d["id"] == hall["id"])
    await host.client.until("tracks", lambda d: d["tracks"] == [])
    # Its connection closed with the seat, and so did the session.
    assert (await delete(http, live_server.url + obs.location, token))[0] == 404
    again = closer.add(Whip(h264))
    status, _, body = await again.publish(http, f"{live_server.url}/whip/{meeting.id}", token)
    assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_sessions_end_when_the_publisher_or_viewer_goes_away_without_delete(
    live_server: LiveServer,
    meeting: Meeting,
    http: aiohttp.ClientSession,
    h264: Clip,
    closer: Closer,
) -> None:
    host = closer.add(await join(live_server, meeting, "Anna", "host"))
    token = await invite(live_server, meeting, "Hall 3", "speaker")
    obs = closer.add(Whip(h264))
    assert (await obs.publish(http, f"{live_server.url}/whip/{meeting.id}", token))[0] == 201
    viewer = closer.add(WhepViewer())
    assert (await viewer.watch(http, f"{live_server.url}/whep/{meeting.id}", token))[0] == 201
    await wait_for(lambda: viewer.frames("video") >= 5, within=8)
    sessions = live_server.app[SESSIONS]
    assert len(sessions) == 2

    await viewer.close()  # a player closed (DTLS close_notify), no DELETE
    await wait_for(lambda: len(sessions) == 1, within=5)
    await obs.close()  # OBS quit, no DELETE
    hall = seat_named(host.client, "Hall 3")
    await host.client.until("participant_left", lambda d: d["id"] == hall["id"])
    await host.client.until("tracks", lambda d: d["tracks"] == [])
    assert sessions == {}
