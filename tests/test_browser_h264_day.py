"""Safari and iPads send H.264, and cannot run here: a Chromium participant forced to H.264
(`?codec=H264`) stands in for them through a meeting day with VP8 participants. Her camera is
forwarded as she sends it (a VP8 participant decodes H.264 frames), it is in the broadcast's
HLS, in the recording's MP4 and in a re-render from the tracks: her picture (a red camera, where
the VP8 participants' Chromium shows green), never the grey name card. The server's candidates
on loopback."""

import asyncio
import re
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from recording.layout import Participant, layout
from server.config import Settings
from server.recordings import programme_path
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting
from tests.test_browser_media import enter, received, tile_video

pytestmark = pytest.mark.browser

RECORD_SECONDS = 4.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


def tile_colours(frame: av.VideoFrame, people: int) -> list[tuple[int, int, int]]:
    """The mean colour in the middle of each tile of a layout of `people` (clear of the name
    label), in a frame of the programme."""
    rgb = frame.reformat(format="rgb24")
    plane, stride = bytes(rgb.planes[0]), rgb.planes[0].line_size
    sx, sy = frame.width / 1280, frame.height / 720
    colours = []
    for tile in layout([Participant(str(i), str(i)) for i in range(people)]):
        box = tile.box
        xs = range(int((box.x + box.width / 4) * sx), int((box.x + box.width * 3 / 4) * sx), 4)
        ys = range(int((box.y + box.height / 4) * sy), int((box.y + box.height * 3 / 4) * sy), 4)
        pixels = [plane[y * stride + 3 * x : y * stride + 3 * x + 3] for y in ys for x in xs]
        colours.append(
            (
                round(statistics.mean(p[0] for p in pixels)),
                round(statistics.mean(p[1] for p in pixels)),
                round(statistics.mean(p[2] for p in pixels)),
            )
        )
    return colours


def seen(colours: list[tuple[int, int, int]]) -> list[str]:
    """What each tile shows, in order: "red" (her camera), "green" (Chromium's own fake camera,
    the VP8 participants') or "card" (a grey name card, or anything else)."""

    def one(r: int, g: int, b: int) -> str:
        if r > 100 and r > g + 40 and r > b + 40:
            return "red"
        if g > 100 and g > r + 40 and g > b + 40:
            return "green"
        return "card"

    return [one(*colour) for colour in colours]


def red_camera(path: Path) -> list[str]:
    """Chromium's arguments for a fake camera playing a red picture with a moving white bar
    (a Y4M file written here, 320x240 at 30 fps, one second looped)."""
    width, height, rate = 320, 240, 30
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(rate):
            luma = bytearray([76] * (width * height))  # red: Y 76, U 85, V 255
            bar = n * width // rate
            for y in range(height):
                luma[y * width + bar : y * width + min(width, bar + 8)] = b"\xff" * min(
                    8, width - bar
                )
            out.write(b"FRAME\n" + bytes(luma))
            out.write(bytes([85] * (width * height // 4)) + bytes([255] * (width * height // 4)))
    return [f"--use-file-for-fake-video-capture={path}"]


def last_frame(path: str, before_end: float = 0.0) -> av.VideoFrame:
    """The last picture of a video file, or the one `before_end` seconds before its end (a
    recording's last moments may show people whose tracks ended with the stop)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        base = stream.time_base
        assert base is not None
        end = float(stream.duration * base) if stream.duration else None
        if end is not None and before_end > 0:
            at = max(0.0, end - before_end)
            container.seek(int(max(0.0, at - 2.0) / base), stream=stream)
            for frame in container.decode(stream):
                if frame.time is not None and frame.time >= at:
                    return frame
        found = None
        for found in container.decode(stream):  # noqa: B007 (the last one is wanted)
            pass
        assert found is not None, f"{path} has no picture"
        return found


def shown(path: Path, people: int) -> list[str]:
    """What the tiles of a recorded programme show a second before its end, sorted."""
    return sorted(seen(tile_colours(last_frame(str(path), 1.0), people)))


async def hls_shows(server: LiveServer, meeting_id: str, wanted: list[str], tmp: str) -> None:
    """The meeting's HLS programme shows the tiles `wanted` (as `seen` names them, sorted): the
    last frame of its newest segment, read as segments come (its first ones may show name cards
    while the first keyframes are on their way)."""
    people = len(wanted)
    base = f"{server.url}/hls/{meeting_id}/"
    deadline = time.monotonic() + 20
    tried: list[Any] = []
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(base + "index.m3u8") as response:
                playlist = await response.text() if response.status == 200 else ""
            segments = [line for line in playlist.splitlines() if line and line[0] != "#"]
            if segments and segments[-1] not in [name for name, _ in tried]:
                data = b""
                init = re.search(r'#EXT-X-MAP:URI="([^"]+)"', playlist)
                for name in ([init.group(1)] if init else []) + [segments[-1]]:
                    async with http.get(base + name) as response:
                        assert response.status == 200, name
                        data += await response.read()
                with open(tmp, "wb") as out:  # noqa: ASYNC230 (a small file)
                    out.write(data)
                colours = tile_colours(await asyncio.to_thread(last_frame, tmp), people)
                tried.append((segments[-1], seen(colours)))
                if sorted(seen(colours)) == wanted:
                    return
            await asyncio.sleep(0.5)
    raise AssertionError(f"not {wanted} in the HLS programme's segments: {tried}")


async def until_status(server: LiveServer, rec_id: str, wanted: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        status, recording = await server.api("GET", f"/api/recordings/{rec_id}")
        assert status == 200, recording
        if recording["status"] in (wanted, "failed") or time.monotonic() > deadline:
            assert recording["status"] == wanted, recording
            return recording
        await asyncio.sleep(0.2)


async def test_an_h264_participant_is_forwarded_broadcast_recorded_and_rendered(
    live_server: LiveServer, tmp_path: Path
) -> None:
    meeting = await make_meeting(
        live_server, title="Expanded meeting", visibility="public", settings={"lobby": False}
    )
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    # A speaker is on the broadcast's stage by role (docs/protocol.md), as the host is.
    ipad_token = await invite(live_server, meeting, "Анна Петрова", "speaker")
    petr_token = await invite(live_server, meeting, "Пётр Смирнов", "participant")
    async with chromium() as browser, chromium(red_camera(tmp_path / "red.y4m")) as ipad:
        host_tab, petr_tab, ipad_tab = [await open_tab(b) for b in (browser, browser, ipad)]
        room = f"{live_server.url}/j/{{}}/room?lang=en"
        await enter(host_tab, room.format(host_token), None, "")
        await enter(ipad_tab, room.format(ipad_token) + "&codec=H264", None, "")
        await enter(petr_tab, room.format(petr_token), None, "")

        # Forwarded as sent: the VP8 participants decode her H.264; she decodes their VP8.
        for page in (host_tab.page, petr_tab.page):
            await wait_until(page, tile_video("Анна Петрова"), 5)
        await wait_until(ipad_tab.page, tile_video("Пётр Смирнов"), 5)
        petr = petr_tab.page
        before = await received(petr)
        assert sorted(before["codecs"]) == ["video/H264", "video/VP8"], before
        assert (await received(ipad_tab.page))["codecs"] == ["video/VP8", "video/VP8"]

        status, recording = await live_server.api("POST", f"/api/meetings/{meeting.id}/recording")
        assert status == 201, recording
        started = time.monotonic()

        # In the broadcast's HLS programme: the stage, the host and her, both pictures.
        await hls_shows(live_server, meeting.id, ["green", "red"], str(tmp_path / "segment.mp4"))
        assert (await received(petr))["frames"] > before["frames"]

        await asyncio.sleep(max(0.0, started + RECORD_SECONDS - time.monotonic()))
        status, _ = await live_server.api("DELETE", f"/api/meetings/{meeting.id}/recording")
        assert status == 200
        ready = await until_status(live_server, recording["id"], "ready", 30)
        stored = await live_server.store.get_recording(ready["id"])
        assert stored is not None
        path = programme_path(live_server.settings, stored)

        # In the recording: three people, three pictures, hers among them.
        assert await asyncio.to_thread(shown, path, 3) == ["green", "green", "red"]

        recorded_at = path.stat().st_mtime_ns
        # In a render from the tracks, too: her H.264 track file decodes.
        status, rendering = await live_server.api(
            "POST", f"/api/recordings/{recording['id']}/render"
        )
        assert status == 202, rendering
        await until_status(live_server, recording["id"], "ready", 60)
        assert path.stat().st_mtime_ns != recorded_at, "the programme was not rendered again"
        assert await asyncio.to_thread(shown, path, 3) == ["green", "green", "red"]
        for tab in (host_tab, ipad_tab, petr_tab):
            tab.assert_clean()
