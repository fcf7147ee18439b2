"""The live programme: decoded pictures and sound in, one encode out to a fragmented MP4, HLS
segments and, at the end, a fast-start MP4. Real PyAV, real files; the clock is driven by the
test (one frame per tick) except where the wall clock itself is under test."""

import asyncio
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from recording.compositor import FRAGMENTED, Compositor
from recording.errors import RecordingError
from recording.fmp4 import fast_start
from recording.hls import PLAYLIST, read_playlist
from recording.layout import Participant, Tile, layout
from recording.renderer import CARD
from tests.recording_fixtures import close_to, decode_audio, decode_video, rgb_at, tone_power

WIDTH, HEIGHT, FPS = 640, 360, 25
FRAMES = 160  # 6.4 s of programme
PEOPLE = {  # id: (name, colour, tone in Hz)
    "p1": ("Анна", (220, 30, 30), 440),
    "p2": ("Boris", (30, 200, 40), 660),
    "p3": ("Vera", (40, 60, 220), 990),
}
SCREEN = (235, 220, 40)
P2_SPEAKS = 50  # frame 50 = 2.0 s; p1 speaks before
P3_CAMERA_ENDS = 75  # 3.0 s: p3 turns the camera off and shares the screen
# 4.0 s: the room says p3's camera is off (its pictures stopped a second ago, held since).
P3_CAMERA_OFF = 100
SCREEN_ENDS = 115  # 4.6 s
P1_LEAVES = 138  # 5.52 s


def solid(rgb: tuple[int, int, int], width: int = 320, height: int = 180) -> av.VideoFrame:
    r, g, b = rgb
    yuv = (
        round(16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256),
        round(128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256),
        round(128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256),
    )
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane, value in zip(frame.planes, yuv, strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def tone(frequency: int) -> bytes:
    """One second of a tone, s16 stereo (whole cycles: it loops without a click)."""
    values = [int(9000 * math.sin(2 * math.pi * frequency * n / 48000)) for n in range(48000)]
    return struct.pack(f"<{2 * 48000}h", *(v for v in values for _ in range(2)))


def sound(data: bytes, first: int, count: int = 960) -> av.AudioFrame:
    """`count` samples of `data` from sample `first` (pts), as aiortc's Opus decoder gives."""
    offset = first % 48000
    frame = av.AudioFrame(format="s16", layout="stereo", samples=count)
    frame.planes[0].update(data[offset * 4 : (offset + count) * 4])
    frame.sample_rate = 48000
    frame.pts = first
    frame.time_base = Fraction(1, 48000)
    return frame


def drive(compositor: Compositor, upto: int, start: int = 0) -> None:
    """The meeting of this module, frames [start, upto): everyone sends a picture and 40 ms
    of their tone per frame; p1 speaks, then p2; p3's camera goes off and their screen is
    shared (a still slide: a picture every fifth frame); p1 leaves."""
    pictures = {who: solid(colour) for who, (_, colour, _) in PEOPLE.items()}
    tones = {who: tone(frequency) for who, (_, _, frequency) in PEOPLE.items()}
    slide = solid(SCREEN, 640, 360)
    for index in range(start, upto):
        if index == 0:
            for who, (name, _, _) in PEOPLE.items():
                compositor.join(who, name)
            compositor.speaking("p1")
        if index == P2_SPEAKS:
            compositor.speaking(None)  # a pause: p1 stays large
            compositor.speaking("p2")
        if index == P3_CAMERA_ENDS:
            compositor.screen("p3", True)
        if index == P3_CAMERA_OFF:
            compositor.camera("p3", False)
        if index == SCREEN_ENDS:
            compositor.screen("p3", False)
        if index == P1_LEAVES:
            compositor.leave("p1")
        for who in PEOPLE:
            if who == "p1" and index >= P1_LEAVES:
                continue
            if who != "p3" or index < P3_CAMERA_ENDS:
                compositor.picture(who, "camera", pictures[who])
            for half in (0, 960):
                compositor.sound(f"{who}-mic", sound(tones[who], index * 1920 + half))
        if P3_CAMERA_ENDS <= index < SCREEN_ENDS and index % 5 == 0:
            compositor.picture("p3", "screen", slide)
        compositor.tick()


class Run:
    """What the module's meeting left: the directory, the live playlists seen on the way."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.live: dict[int, tuple[list[tuple[str, Fraction]], dict[str, str]]] = {}
        self.finish_seconds = 0.0

    @property
    def programme(self) -> Path:
        return self.directory / "programme.mp4"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    result = Run(tmp_path_factory.mktemp("programme"))
    compositor = Compositor(result.directory, manual=True, hls_window=2)
    playlist = result.directory / "hls" / PLAYLIST
    for upto in (110, 152, FRAMES):  # look at the live playlist on the way
        drive(compositor, upto, start=round(compositor.duration * FPS))
        result.live[upto] = read_playlist(playlist)

    async def finish() -> None:
        begun = time.monotonic()
        assert await compositor.finish() == result.programme
        result.finish_seconds = time.monotonic() - begun

    asyncio.run(finish())
    return result


def boxes(path: Path) -> list[tuple[str, int]]:
    """The top-level MP4 boxes: (kind, offset)."""
    found, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from("!I4s", data, pos)
        if size == 1:
            size = struct.unpack_from("!Q", data, pos + 8)[0]
        found.append((kind.decode(), pos))
        if size < 8:
            break
        pos += size
    return found


def tiles(active: str, present: dict[str, bool], screen: str | None = None) -> list[Tile]:
    people = [Participant(who, who, has_video) for who, has_video in present.items()]
    return layout(people, active, screen, WIDTH, HEIGHT)


def colour_of(tile: Tile) -> tuple[int, int, int]:
    if tile.content == "screen":
        return SCREEN
    return CARD if tile.content == "card" else PEOPLE[tile.participant][1]


def check(frame: Any, expected: list[Tile]) -> None:
    for tile in expected:
        # Above the label: a card has its name across the middle, a picture along the bottom.
        x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // 5
        assert close_to(rgb_at(frame, x, y), colour_of(tile)), tile


def test_the_programme_is_a_fast_start_mp4_ready_at_once(run: Run) -> None:
    kinds = [kind for kind, _ in boxes(run.programme)]
    assert kinds.index("moov") < kinds.index("mdat")
    assert run.finish_seconds < 3
    with av.open(str(run.programme)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and audio.codec_context.name == "aac"
        assert (video.codec_context.width, video.codec_context.height) == (WIDTH, HEIGHT)
        assert (
            audio.codec_context.sample_rate == 48000 and audio.codec_context.layout.nb_channels == 2
        )
        assert (container.duration or 0) / 1_000_000 == pytest.approx(FRAMES / FPS, abs=0.05)
    frames = decode_video(run.programme)
    assert len(frames) == FRAMES
    keys = [i for i, frame in enumerate(frames) if frame.key_frame]
    assert keys == [0, 50, 100, 150]  # every 2 s: a fragment and a segment each


def test_the_layout_follows_the_speaker_the_share_the_camera_and_who_is_there(run: Run) -> None:
    frames = decode_video(run.programme)
    everyone = {"p1": True, "p2": True, "p3": True}
    check(frames[25], tiles("p1", everyone))  # 1.0 s: p1 speaks
    check(frames[65], tiles("p2", everyone))  # 2.6 s: p2 speaks
    # 3.6 s: p3 shares a slide (large); their camera went off 0.6 s ago: the last picture.
    check(frames[90], tiles("p2", everyone, screen="p3"))
    # 4.3 s: still the slide (no new picture since 4.2 s); p3's camera is off: a card.
    no_camera = {"p1": True, "p2": True, "p3": False}
    during = tiles("p2", no_camera, screen="p3")
    assert [t.content for t in during] == ["screen", "video", "video", "card"]
    check(frames[108], during)
    # 5.0 s: the share is over; the active speaker is large again.
    check(frames[125], tiles("p2", no_camera))
    # 6.0 s: p1 has left; their tile is gone.
    after = tiles("p2", {"p2": True, "p3": False})
    assert [t.participant for t in after] == ["p2", "p3"]
    check(frames[150], after)
    for tile in tiles("p2", no_camera)[1:]:
        if tile.participant == "p1":
            x, y = tile.box.centre
            assert not close_to(rgb_at(frames[150], x, y), PEOPLE["p1"][1])


def test_names_are_on_the_tiles(run: Run) -> None:
    frame = decode_video(run.programme)[25]
    grey = frame.reformat(format="gray").planes[0]
    data = bytes(grey)
    for tile in tiles("p1", {"p1": True, "p2": True, "p3": True}):
        label = tile.label
        values = [
            data[y * grey.line_size + x]
            for y in range(label.y, label.y + label.height)
            for x in range(label.x, label.x + min(label.width, 4 * label.height))
        ]
        assert min(values) < 40 and max(values) > 180, tile.participant


def test_the_mix_holds_every_tone_while_its_speaker_is_there(run: Run) -> None:
    samples, start = decode_audio(run.programme)
    assert start == pytest.approx(0.0, abs=0.001)
    assert len(samples) / 48000 == pytest.approx(FRAMES / FPS, abs=0.05)

    def window(begin: float, end: float) -> list[float]:
        return samples[int(begin * 48000) : int(end * 48000)]

    both = window(1.0, 1.8)
    off = max(tone_power(both, f) for f in (550.0, 800.0, 1200.0))
    for who, (_, _, frequency) in PEOPLE.items():
        assert tone_power(both, frequency) > 100 * off, who
    gone = window(5.8, 6.3)  # p1 left at 5.52 s
    assert tone_power(gone, 440) * 100 < tone_power(gone, 660)
    assert tone_power(gone, 990) > 100 * tone_power(gone, 440)


def test_hls_keeps_a_sliding_window_live_and_every_segment_at_the_end(run: Run) -> None:
    # Live: after 4.4 s two segments are complete; after 6.08 s three, of which the last two
    # are listed (window 2), numbered on; no end.
    segments, tags = run.live[110]
    assert [uri for uri, _ in segments] == ["segment-00000.ts", "segment-00001.ts"]
    segments, tags = run.live[152]
    assert [uri for uri, _ in segments] == ["segment-00001.ts", "segment-00002.ts"]
    assert tags["#EXT-X-MEDIA-SEQUENCE"] == "1" and "#EXT-X-ENDLIST" not in tags
    # Finished: a VOD playlist of all of them.
    segments, tags = read_playlist(run.directory / "hls" / PLAYLIST)
    assert "#EXT-X-ENDLIST" in tags and tags["#EXT-X-PLAYLIST-TYPE"] == "VOD"
    assert tags["#EXT-X-MEDIA-SEQUENCE"] == "0" and tags["#EXT-X-TARGETDURATION"] == "2"
    assert [float(d) for _, d in segments] == pytest.approx([2.0, 2.0, 2.0, 0.4], abs=0.001)
    assert float(sum(d for _, d in segments)) == pytest.approx(FRAMES / FPS, abs=0.001)
    # Each segment decodes on its own: a keyframe first, its share of pictures, sound.
    total = 0
    for uri, duration in segments:
        path = run.directory / "hls" / uri
        frames = decode_video(path)
        assert frames[0].key_frame, uri
        assert len(frames) == round(float(duration) * FPS), uri
        assert float(frames[-1].time - frames[0].time) + 1 / FPS == pytest.approx(
            float(duration), abs=0.001
        )
        samples, _ = decode_audio(path)
        assert len(samples) / 48000 == pytest.approx(float(duration), abs=0.05), uri
        total += len(frames)
    assert total == FRAMES
    # The slide at 3.6 s is in the second segment, where a player would show it.
    frame = decode_video(run.directory / "hls" / "segment-00001.ts")[40]
    check(frame, tiles("p2", {"p1": True, "p2": True, "p3": True}, screen="p3"))


def test_a_fragmented_mp4_cut_anywhere_plays_up_to_its_last_fragment(
    run: Run, tmp_path: Path
) -> None:
    whole = run.directory / FRAGMENTED
    assert len(decode_video(whole)) == FRAMES
    fragments = [offset for kind, offset in boxes(whole) if kind == "moof"]
    assert len(fragments) == 4
    cut = tmp_path / "cut.fmp4"
    # Halfway through the third fragment: the first two (0-4 s) play, and of the third
    # what its index describes and the file still holds.
    cut.write_bytes(whole.read_bytes()[: (fragments[2] + fragments[3]) // 2])
    played = len(decode_video(cut))
    assert 100 <= played < 150
    # And the fast-start MP4 can be made from what is left.
    remade = tmp_path / "remade.mp4"
    assert fast_start(cut, remade) > 100
    kinds = [kind for kind, _ in boxes(remade)]
    assert kinds.index("moov") < kinds.index("mdat")
    assert 100 <= len(decode_video(remade)) <= played


_KILLED = """
import sys, time
from pathlib import Path
from recording.compositor import Compositor
from tests.test_recording_compositor import drive
compositor = Compositor(Path(sys.argv[1]), manual=True)
drive(compositor, 110)
print("ready", flush=True)
time.sleep(60)
"""


def test_a_programme_killed_with_sigkill_plays_up_to_its_last_fragment(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(30)
        if child.stdout is not None:
            child.stdout.close()
    # 4.4 s made: the fragments of 0-2 s and 2-4 s are on disk, the one being filled is not.
    frames = decode_video(tmp_path / FRAGMENTED)
    assert len(frames) == 100
    samples, _ = decode_audio(tmp_path / FRAGMENTED)
    assert len(samples) / 48000 == pytest.approx(4.0, abs=0.1)
    # The live playlist lists the two complete segments, with no end.
    segments, tags = read_playlist(tmp_path / "hls" / PLAYLIST)
    assert len(segments) == 2 and "#EXT-X-ENDLIST" not in tags
    for uri, _ in segments:
        assert len(decode_video(tmp_path / "hls" / uri)) == 50
    assert not (tmp_path / "programme.mp4").exists()


async def test_on_the_wall_clock_the_loop_stays_responsive(tmp_path: Path) -> None:
    compositor = Compositor(tmp_path, size=(320, 180), fps=FPS, hls=False)
    runner = asyncio.create_task(compositor.run())
    red, note = solid(PEOPLE["p1"][1]), tone(440)
    compositor.join("p1", "Анна")
    begun = loop_time = time.monotonic()
    worst = 0.0
    sent = 0
    while (now := time.monotonic()) - begun < 1.6:
        worst = max(worst, now - loop_time)
        compositor.picture("p1", "camera", red)
        while sent < (now - begun) * 48000:  # sound as it would come: 20 ms frames
            compositor.sound("p1-mic", sound(note, sent))
            sent += 960
        loop_time = time.monotonic()
        await asyncio.sleep(0.02)
    stopping = time.monotonic()
    path = await compositor.finish()
    elapsed = time.monotonic() - begun
    assert time.monotonic() - stopping < 2
    await runner
    assert worst < 0.25  # the encoder works in its own thread
    frames = decode_video(path)
    assert len(frames) / FPS == pytest.approx(elapsed, abs=0.3)
    assert close_to(rgb_at(frames[len(frames) // 2], 160, 60), PEOPLE["p1"][1])
    samples, _ = decode_audio(path)
    middle = samples[len(samples) // 4 : len(samples) * 3 // 4]
    assert tone_power(middle, 440) > 100 * tone_power(middle, 800)


async def test_bad_input_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RecordingError) as caught:
        Compositor(tmp_path / "odd", size=(641, 360), manual=True)
    assert caught.value.code == "bad_size"
    with pytest.raises(RecordingError) as caught:
        Compositor(tmp_path / "fast", fps=240, manual=True)
    assert caught.value.code == "bad_rate"
    compositor = Compositor(tmp_path / "ok", size=(320, 180), manual=True, hls=False)
    with pytest.raises(ValueError, match="source"):
        compositor.picture("p1", "../camera", solid((1, 2, 3)))
    with pytest.raises(TypeError):
        compositor.picture("p1", "camera", b"not a picture")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compositor.sound("p1-mic", solid((1, 2, 3)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="participant"):
        compositor.join("", "nobody")
    with pytest.raises(RecordingError) as caught:
        await compositor.run()
    assert caught.value.code == "manual_clock"
    compositor.tick()
    path = await compositor.finish()
    assert path.is_file() and not (tmp_path / "ok" / "hls").exists()
    assert compositor.duration == pytest.approx(1 / FPS)
    wall = Compositor(tmp_path / "wall", size=(320, 180), hls=False)
    with pytest.raises(RecordingError) as caught:
        wall.tick()
    assert caught.value.code == "wall_clock"
    await wall.finish()
    shutil.rmtree(tmp_path / "wall")


async def test_a_full_disk_stops_the_programme_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / FRAGMENTED).symlink_to("/dev/full")
    compositor = Compositor(tmp_path, size=(320, 180), manual=True)
    compositor.join("p1", "Анна")
    for _ in range(3):
        compositor.picture("p1", "camera", solid(PEOPLE["p1"][1]))
        compositor.tick()
    assert compositor.error is not None and compositor.error.code == "write_failed"
    assert compositor.duration == 0  # nothing more is made
    with pytest.raises(RecordingError) as caught:
        await compositor.finish()
    assert caught.value.code == "write_failed"
    assert not (tmp_path / "programme.mp4").exists()
