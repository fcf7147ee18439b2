"""The hall's pages in a real Chromium: the hall station sends the hall's camera and microphone
(a participant receives its video), and the projector plays the remote speakers with their
names, the active speaker large, never the hall itself. Remote speakers are aiortc clients
sending a pre-encoded clip. With VECHE_SCREENSHOTS=<dir> both pages are saved as PNGs."""

from dataclasses import replace

import aiohttp
import pytest
from playwright.async_api import expect

from rooms.roles import Role
from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.sio_client import Client, invite, make_meeting
from tests.test_browser_media import snapshot
from tests.test_pages import admin_cookie, get

pytestmark = pytest.mark.browser

# JS: each projector tile's name and how far its video has played.
TILES = """() => [...document.querySelectorAll('#tiles .tile')].map(t => ({
  name: t.querySelector('.tile-name').textContent,
  lead: t.classList.contains('lead'),
  time: (t.querySelector('video') || {}).currentTime || 0,
  width: (t.querySelector('video') || {}).videoWidth || 0,
}))"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


async def test_the_hall_station_sends_and_the_projector_shows_the_remote_speakers(
    live_server: LiveServer, media_clip: Clip
) -> None:
    meeting = await make_meeting(
        live_server, title="Расширенное совещание", settings={"lobby": False}
    )
    hall_token = await invite(live_server, meeting, "Зал 1", "speaker")
    peers: list[MeetingPeer] = []
    try:
        for name, role, level in (
            ("Ольга Иванова", "host", 127),
            ("Анна Петрова", "participant", 20),  # speaks
            ("Борис Соколов", "participant", 127),
        ):
            peer = MeetingPeer(await Client.open(live_server.url), media_clip, audio_level=level)
            peers.append(peer)
            token = await invite(live_server, meeting, name, role)
            assert (await peer.client.join(token=token))["status"] == "joined"
        host, anna, boris = peers
        for peer in (anna, boris):  # as a browser does: publish, then say what is on
            await peer.publish()
            assert await peer.client.call("state", {"mic": True, "camera": True}) == {"ok": True}

        async with chromium() as browser:
            station_tab, projector_tab = await open_tab(browser), await open_tab(browser)
            station, projector = station_tab.page, projector_tab.page

            # The hall station: a preview and a level, then "Start sending".
            await station.goto(f"{live_server.url}/j/{hall_token}/hall?lang=ru")
            send = station.get_by_role("button", name="Начать передачу")
            await expect(send).to_be_enabled()
            await wait_until(station, "document.getElementById('preview').videoWidth > 0")
            await send.click()
            await expect(station.locator("#hall-status")).to_have_text("Зал в эфире")
            await expect(station.get_by_role("button", name="Остановить передачу")).to_be_visible()
            hall = await host.client.until("participant_joined", lambda p: p["name"] == "Зал 1")

            def hall_video() -> int:
                return sum(
                    got.frames
                    for tid, got in host.received.items()
                    if tid.startswith(hall["id"] + "/") and got.kind == "video"
                )

            await wait_for(hall_video, within=8, explain=hall_video)
            await wait_for(lambda: hall_video() > 10, within=5, explain=hall_video)
            updated = await host.client.until(
                "participant_updated", lambda p: p["id"] == hall["id"] and p["camera"]
            )
            assert updated["mic"] is True

            # The projector: the two remote speakers play, Anna (speaking) large; not the hall.
            await projector.goto(f"{live_server.url}/j/{hall_token}/projector")
            await expect(projector.locator("#tiles .tile")).to_have_count(2)
            await wait_until(
                projector,
                "[...document.querySelectorAll('#tiles video')].every(v => v.videoWidth > 0)",
                8,
            )
            first = await projector.evaluate(TILES)
            await projector.wait_for_timeout(600)
            later = await projector.evaluate(TILES)
            assert sorted(t["name"] for t in later) == ["Анна Петрова", "Борис Соколов"]
            assert all(b["time"] > a["time"] for a, b in zip(first, later, strict=True)), later
            await expect(projector.locator(".tile.lead .tile-name")).to_have_text("Анна Петрова")
            await expect(projector.locator("#sounds audio")).to_have_count(2)
            assert await projector.locator(".topbar").is_hidden()  # nothing but the speakers
            # The projector is no participant: only moderators see it, and may remove it.
            joined = [p["name"] for p in host.client.received["participant_joined"]]
            assert joined == ["Анна Петрова", "Борис Соколов", "Зал 1", "Projector — Зал 1"]
            seen = [p["name"] for p in anna.client.received["participant_joined"]]
            assert seen == ["Борис Соколов", "Зал 1"]
            await snapshot(projector, "projector.png")
            await snapshot(station, "hall.png")

            # Stop sending: the hall's tracks leave the room.
            await station.get_by_role("button", name="Остановить передачу").click()
            await host.client.until(
                "tracks", lambda d: all(t["participant"] != hall["id"] for t in d["tracks"])
            )
            for tab in (station_tab, projector_tab):
                tab.assert_clean()
    finally:
        for peer in peers:
            await peer.close()


async def test_the_hall_pages_need_a_personal_link_that_may_publish(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Совещание")
    viewer = await invite(live_server, meeting, "Зритель", "viewer")
    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    async with aiohttp.ClientSession() as http:
        for token, page, status in (
            (viewer, "hall", 403),
            (guest, "projector", 403),
            ("nonsense", "hall", 401),
        ):
            async with http.get(f"{live_server.url}/j/{token}/{page}?lang=en") as response:
                assert response.status == status
                text = await response.text()
                assert "cannot open the hall" in text or "does not work" in text
        speaker = await invite(live_server, meeting, "Зал 1", "speaker")
        for page in ("hall", "projector"):
            async with http.get(f"{live_server.url}/j/{speaker}/{page}?lang=en") as response:
                assert response.status == 200
        # The meeting's admin page links both pages of each speaker entry.
        cookies = await admin_cookie(live_server)
        status, admin, _ = await get(f"{live_server.url}/meetings/{meeting.id}", cookies=cookies)
        assert status == 200
        assert f"/j/{speaker}/hall" in admin and f"/j/{speaker}/projector" in admin
        assert f"/j/{viewer}/hall" not in admin
