"""A subscriber's receive connection never gets stuck: whatever goes wrong with one offer or
answer, the next change is offered and its media arrives; and an answer that rejects a section
(Firefox without H.264) still receives everything else.

Real socket.io clients and aiortc connections on loopback (tests/media_clients.py); faults are
injected where they happen in a meeting: an answer aiortc refuses half-way, an answer lost on
the way, an offer whose making is cut short, an answer to an offer already replaced."""

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from playwright.async_api import expect

import server.stage
from media import ice, sdp
from media.errors import MediaError
from media.sfu import Sfu
from media.subscriber import Subscription
from rooms.meeting import Meeting
from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.media_clients import (
    LOOPBACK,
    ClientViewer,
    Harness,
    MeetingPeer,
    received,
    wait_for,
)
from tests.media_clip import Clip, clip
from tests.sio_client import Client, invite, make_meeting

FIXTURES = Path(__file__).parent / "fixtures" / "sdp"

Joiner = Callable[..., Awaitable[MeetingPeer]]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, settings={"lobby": False})
    return made


class FaultyPeer(MeetingPeer):
    """A participant whose next answers go wrong in a chosen way, then right again."""

    def __init__(self, client: Any, clip: Clip) -> None:
        self.faults: list[str] = []  # "garbled" (aiortc refuses it half-way) or "lost"
        self.offers: list[dict[str, Any]] = []
        super().__init__(client, clip)

    async def _answer(self, data: dict[str, Any]) -> None:
        self.offers.append(data)
        if data.get("fresh"):  # as the browser does: a new connection for the server's new one
            await self.pc.close()
            self.pc = RTCPeerConnection(ice.configuration(LOOPBACK))
            self._by_mid.clear()
            self._track_of.clear()
        fault = self.faults.pop(0) if self.faults else None
        if fault is None:
            await super()._answer(data)
            return
        if fault == "lost":
            return  # the answer never reaches the server
        # Apply the offer, then answer with a video codec aiortc cannot send: it applies the
        # audio section, then fails on the video one (a half-applied answer).
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=data["sdp"], type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        garbled = re.sub(r"VP8/90000", "VP9/90000", str(self.pc.localDescription.sdp))
        ack = await self.client.call(
            "subscribe_answer", {"sdp": garbled, "version": data.get("version")}
        )
        assert ack.get("error", {}).get("code") == "bad_sdp", ack


@pytest.fixture
async def join(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[Joiner]:
    peers: list[MeetingPeer] = []

    async def joiner(name: str, role: str = "participant", faulty: bool = False) -> MeetingPeer:
        client = await Client.open(live_server.url)
        peer = FaultyPeer(client, media_clip) if faulty else MeetingPeer(client, media_clip)
        peers.append(peer)
        ack = await client.join(token=await invite(live_server, meeting, name, role))
        assert ack == {"ok": True, "status": "joined"}, ack
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


async def sees(peer: MeetingPeer, owner: MeetingPeer, within: float = 8) -> None:
    """owner's camera frames keep arriving at peer."""
    await wait_for(
        lambda: peer.track(owner, "video").frames >= 10 and peer.track(owner, "audio").frames > 10,
        within=within,
        explain=lambda: (peer.failure, sorted(peer.received)),
    )


async def test_an_answer_aiortc_refuses_half_way_is_offered_again_and_later_tracks_arrive(
    join: Joiner, caplog: pytest.LogCaptureFixture
) -> None:
    anna = await join("Anna", "host")
    await anna.publish()
    boris = await join("Boris", faulty=True)
    assert isinstance(boris, FaultyPeer)
    boris.faults.append("garbled")
    with caplog.at_level(logging.WARNING, logger="server.stage"):
        await sees(boris, anna)  # the refused answer's offer came again, and was answered
    assert "refused" in caplog.text and "offering again" in caplog.text
    vera = await join("Vera")
    await vera.publish()
    await sees(boris, vera)
    assert boris.failure is None


async def test_an_offer_without_an_answer_is_given_up_and_the_next_change_arrives(
    join: Joiner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(server.stage, "ANSWER_TIMEOUT", 1.0)
    anna = await join("Anna", "host")
    await anna.publish()
    boris = await join("Boris", faulty=True)
    assert isinstance(boris, FaultyPeer)
    boris.faults.append("lost")
    await wait_for(lambda: len(boris.offers) == 1, within=5)
    with caplog.at_level(logging.WARNING, logger="server.stage"):
        await sees(boris, anna)
    assert "no answer from" in caplog.text
    vera = await join("Vera")
    await vera.publish()
    await sees(boris, vera)


async def test_an_answer_to_a_replaced_offer_is_refused_as_stale(
    join: Joiner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.stage, "ANSWER_TIMEOUT", 1.0)
    anna = await join("Anna", "host")
    await anna.publish()
    boris = await join("Boris", faulty=True)
    assert isinstance(boris, FaultyPeer)
    boris.faults.append("lost")
    await sees(boris, anna)  # the lost answer's offer was replaced by a later one
    first = boris.offers[0]
    assert boris.offers[-1]["version"] > first["version"]
    ack = await boris.client.call(
        "subscribe_answer", {"sdp": str(boris.pc.localDescription.sdp), "version": first["version"]}
    )
    assert ack["error"]["code"] in ("stale_answer", "no_offer"), ack
    vera = await join("Vera")
    await vera.publish()
    await sees(boris, vera)


async def test_an_offer_cut_short_does_not_stop_later_offers(
    join: Joiner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The meeting-day failure: the server's connection is left with an offer of its own that
    nobody waits for (`have-local-offer`, no offer outstanding); every later change then
    failed with "the previous offer has no answer yet"."""
    made = Subscription.offer
    cut: list[Subscription] = []

    async def cut_short(subscription: Subscription, replace: bool = False) -> str:
        text = await made(subscription, replace)
        if subscription.track_ids and not cut:
            cut.append(subscription)
            raise asyncio.CancelledError  # after aiortc took the offer as its own
        return text

    monkeypatch.setattr(Subscription, "offer", cut_short)
    boris = await join("Boris")
    anna = await join("Anna", "host")
    with caplog.at_level(logging.WARNING, logger="server.stage"):
        await anna.publish()
        await wait_for(lambda: bool(cut), within=5)
        vera = await join("Vera")
        await vera.publish()
        await sees(boris, vera)
        await sees(boris, anna)
    assert "waits for no offer" in caplog.text


# --- an answer that rejects a section ------------------------------------------------------


def test_a_firefox_answer_rejecting_h264_is_read_as_one_rejected_section() -> None:
    offer = (FIXTURES / "server_offer_with_h264.sdp").read_text()
    text = (FIXTURES / "firefox_answer_rejected_h264.sdp").read_text()
    answer = sdp.check_answer(text, offer)
    assert answer.rejected == {"3"}
    applied = sdp.check(answer.for_aiortc())
    assert [s.mid for s in applied.sections] == ["0", "1", "2", "3"]
    assert all(s.accepted for s in applied.sections)  # every section on the one transport
    assert set(applied.bundle) == {"0", "1", "2", "3"} and applied.bundle[0] == "0"
    rejected = applied.description.media[3]
    assert rejected.direction == "inactive"
    assert [c.name for c in rejected.rtp.codecs if c.name != "rtx"] == ["H264"]


def test_an_answer_with_other_sections_than_the_offer_is_refused() -> None:
    offer = (FIXTURES / "server_offer_with_h264.sdp").read_text()
    text = (FIXTURES / "firefox_answer_rejected_h264.sdp").read_text()
    fewer = text[: text.index("m=video 0")]
    with pytest.raises(MediaError) as refused:
        sdp.check_answer(fewer, offer)
    assert refused.value.code == "bad_sdp"


def reject_like_firefox(answer: str, mid: str) -> str:
    """The answer as a Firefox that cannot decode the section `mid` writes it: port 0, its
    own favourite codec, inactive, no transport attributes, out of the BUNDLE group."""
    head, *sections = re.split(r"(?=\r\nm=)", answer)
    out = []
    for section in sections:
        if f"\r\na=mid:{mid}\r\n" not in section + "\r\n":
            out.append(section)
            continue
        kind = section.split("m=", 1)[1].split(" ", 1)[0]
        out.append(
            f"\r\nm={kind} 0 UDP/TLS/RTP/SAVPF 120\r\nc=IN IP4 0.0.0.0\r\na=inactive"
            f"\r\na=mid:{mid}\r\na=rtpmap:120 VP8/90000"
        )
    group = re.search(r"a=group:BUNDLE ([^\r\n]*)", head)
    assert group is not None
    kept = " ".join(m for m in group.group(1).split() if m != mid)
    head = head.replace(group.group(0), f"a=group:BUNDLE {kept}")
    return head + "".join(out)


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


async def test_a_subscriber_that_rejects_h264_still_gets_the_rest(room: Harness) -> None:
    ann = await room.publish("ann")
    ipad = await room.publish("ipad", clip(codec="h264"), video_codec="video/H264")
    tracks = [*ann.track_ids(), *ipad.track_ids()]
    subscription = room.sfu.subscribe()
    for track_id in tracks:
        subscription.add(track_id)
    viewer = ClientViewer()
    room._clients.append(viewer)
    h264 = ipad.track_id("video")
    answer = await viewer.answer(await subscription.offer())
    h264_mid = subscription.mid(h264)
    assert h264_mid is not None
    await subscription.accept(reject_like_firefox(answer, h264_mid))
    assert subscription.refused == {h264}
    arriving = [received(subscription, viewer, t) for t in tracks if t != h264]
    await wait_for(lambda: all(got.packets > 20 for got in arriving), within=5)
    assert subscription.feed(h264).packets == 0, "nothing goes to a rejected section"


async def test_a_connection_aiortc_closed_by_itself_is_replaced_by_a_new_one(
    join: Joiner, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The meeting-day failure: on a starved machine the server's side of a subscribe
    connection ended (aiortc closes a connection whose DTLS transports have all ended), the
    browser did not count it as failed, and no later change could be offered to it."""
    anna = await join("Anna", "host")
    await anna.publish()
    made: list[Subscription] = []
    subscribe = Sfu.subscribe

    def recorded(sfu: Sfu) -> Subscription:
        made.append(subscribe(sfu))
        return made[-1]

    monkeypatch.setattr(Sfu, "subscribe", recorded)
    boris = await join("Boris", faulty=True)
    assert isinstance(boris, FaultyPeer)
    await sees(boris, anna)
    old = made[0]
    with caplog.at_level(logging.WARNING, logger="server.stage"):
        dtls = old.pc.getTransceivers()[0].sender.transport
        await dtls.stop()  # its DTLS ends; aiortc closes the connection
        await wait_for(lambda: old.pc.signalingState == "closed", within=5)
        vera = await join("Vera")
        await vera.publish()
        await sees(boris, vera)
        await sees(boris, anna)
    assert "closed by itself: offering a new one" in caplog.text
    assert any(o.get("fresh") for o in boris.offers)


# --- in Chromium -----------------------------------------------------------------------------

SCREEN_SHOWN = "(document.querySelector('#screen video') || {}).videoWidth > 0"
CAMERA_SHOWN = (
    "[...document.querySelectorAll('#tiles .tile')].some(t => t.textContent.includes({name!r})"
    " && (t.querySelector('video') || {{}}).videoWidth > 0)"
)


@pytest.mark.browser
async def test_a_browser_whose_connection_the_server_lost_sees_a_later_screen_share(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moderator's receiving connection ends on the server's side (as it did on a starved
    machine); the presenter's screen share that starts afterwards still reaches her."""
    made: list[Subscription] = []
    subscribe = Sfu.subscribe

    def recorded(sfu: Sfu) -> Subscription:
        made.append(subscribe(sfu))
        return made[-1]

    monkeypatch.setattr(Sfu, "subscribe", recorded)
    meeting = await make_meeting(live_server, title="Expanded meeting", settings={"lobby": False})
    olga = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna = await invite(live_server, meeting, "Анна Петрова", "participant")
    room = f"{live_server.url}/j/{{}}/room?lang=en"
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, presenter = host_tab.page, anna_tab.page
        await host.goto(room.format(olga))
        await expect(host.locator("#connection")).to_have_text("Connected")
        await wait_for(lambda: len(made) == 1, within=5)
        await presenter.goto(room.format(anna))
        await expect(presenter.locator("#connection")).to_have_text("Connected")
        await wait_until(host, CAMERA_SHOWN.format(name="Анна Петрова"), 10)
        lost = made[0]
        await lost.pc.getTransceivers()[0].sender.transport.stop()
        await wait_for(lambda: lost.pc.signalingState == "closed", within=5)
        await presenter.locator("#screen-toggle").click()
        await expect(presenter.locator("#screen-toggle")).to_have_text("Stop sharing")
        await wait_until(host, SCREEN_SHOWN, 10)
        await wait_until(host, CAMERA_SHOWN.format(name="Анна Петрова"), 10)
        host_tab.assert_clean()
