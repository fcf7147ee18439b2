"""Re-rendering the programme from track files: layout, colours, tones, sync, speed, progress."""

import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import pytest

from recording.errors import RecordingError
from recording.layout import Participant, layout
from recording.plan import Track, read_plan
from recording.renderer import RenderResult, read_progress, render, start_render
from recording.sources import AudioSource
from recording.timeline import FILE_NAME, Timeline
from recording.trackfile import TrackWriter
from tests.recording_fixtures import (
    LEAD,
    PEOPLE,
    SCREEN,
    SPEAKERS,
    close_to,
    decode_audio,
    decode_video,
    people_media,
    record,
    rgb_at,
    screen_media,
    tone_power,
)

WIDTH, HEIGHT, FPS = 640, 360, 30
COLOURS = {p.id: p.colour for p in PEOPLE}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recording")
    record(directory, list(people_media()), speakers=SPEAKERS)
    return directory


@pytest.fixture(scope="module")
def rendered(recorded: Path) -> tuple[RenderResult, list[int]]:
    seen: list[int] = []
    result = render(recorded, width=WIDTH, height=HEIGHT, fps=FPS, on_progress=seen.append)
    print(
        f"render: {result.duration:.2f} s of 640x360 in {result.elapsed:.2f} s "
        f"= {result.speed:.1f}x real time, peak memory {result.peak_memory_kb} KiB"
    )
    return result, seen


def _top_level_boxes(path: Path) -> list[str]:
    boxes, data, pos = [], path.read_bytes(), 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from("!I4s", data, pos)
        if size == 1:
            size = struct.unpack_from("!Q", data, pos + 8)[0]
        boxes.append(kind.decode())
        if size < 8:
            break
        pos += size
    return boxes


def test_the_programme_is_a_fast_start_mp4_of_the_whole_meeting(
    rendered: tuple[RenderResult, list[int]],
) -> None:
    result, seen = rendered
    output = Path(result.output)
    boxes = _top_level_boxes(output)
    assert boxes.index("moov") < boxes.index("mdat")
    # p3 joined last (0.6 s) and talks for 3 s: the programme lasts until then.
    assert result.duration == pytest.approx(3.6, abs=0.05)
    with av.open(str(output)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].codec_context.sample_rate == 48000
        assert float(container.duration / 1_000_000) == pytest.approx(3.6, abs=0.1)
    frames = decode_video(output)
    assert abs(len(frames) - 3.6 * FPS) <= 1
    assert (frames[0].width, frames[0].height) == (WIDTH, HEIGHT)
    assert seen == sorted(seen) and seen[-1] == 100 and len(seen) > 10
    assert result.peak_memory_kb > 0 and not result.warnings


def _expected(active: str, present: list[str]) -> list[Any]:
    people = [Participant(p, p) for p in present]
    return layout(people, active, None, WIDTH, HEIGHT)


def test_the_active_speaker_is_large_and_the_others_are_in_the_strip(
    rendered: tuple[RenderResult, list[int]],
) -> None:
    frames = decode_video(Path(rendered[0].output))
    # At 1.3 s p1 speaks (0.6-1.5 s); at 2.2 s p2 (1.6-2.5 s); at 3.0 s nobody: p2 stays.
    for t, active in ((1.3, "p1"), (2.2, "p2"), (3.0, "p2")):
        frame = frames[round(t * FPS)]
        tiles = _expected(active, ["p1", "p2", "p3"])
        assert tiles[0].participant == active and tiles[0].large
        for tile in tiles:
            x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // 3
            assert close_to(rgb_at(frame, x, y), COLOURS[tile.participant]), (t, tile)
    # Before p2 joins (0.3 s), p1 alone fills the canvas: their name is in its corner.
    (alone,) = layout([Participant("p1", "Анна")], None, None, WIDTH, HEIGHT)
    label = alone.label

    def corner(t: float) -> int:  # brightest pixel at the left end of that label
        grey = frames[round(t * FPS)].reformat(format="gray").planes[0]
        data = bytes(grey)
        rows = range(label.y, label.y + label.height)
        return max(data[y * grey.line_size + x] for y in rows for x in range(60))

    assert corner(0.2) > 180
    assert corner(1.3) < 60  # three people now: that corner is background


def test_the_mix_holds_every_tone(rendered: tuple[RenderResult, list[int]]) -> None:
    samples, start = decode_audio(Path(rendered[0].output))
    window = samples[int((1.6 - start) * 48000) : int((2.4 - start) * 48000)]
    off = max(tone_power(window, f) for f in (550.0, 800.0, 1200.0))
    for person in PEOPLE:
        assert tone_power(window, person.tone) > 100 * off, person
    # Before anyone's lead-in ends there is silence.
    quiet = samples[int((0.1 - start) * 48000) : int((0.4 - start) * 48000)]
    assert max(abs(v) for v in quiet) < 0.01


def test_sound_and_picture_are_in_sync(rendered: tuple[RenderResult, list[int]]) -> None:
    output = Path(rendered[0].output)
    frames = decode_video(output)
    # p1 is large from the start; their picture and tone both begin at LEAD seconds.
    lit = next(
        float(f.time) for f in frames if close_to(rgb_at(f, WIDTH // 2, HEIGHT // 3), COLOURS["p1"])
    )
    samples, start = decode_audio(output)
    step = 240  # 5 ms
    onset = next(
        start + i / 48000
        for i in range(0, len(samples) - step, step)
        if max(abs(v) for v in samples[i : i + step]) > 0.1
    )
    assert abs(lit - LEAD) <= 1 / FPS + 0.001
    assert abs(lit - onset) <= 0.08, (lit, onset)


def test_a_background_render_reports_progress_and_memory(recorded: Path, tmp_path: Path) -> None:
    directory = tmp_path / "copy"
    shutil.copytree(recorded, directory, ignore=shutil.ignore_patterns("programme.mp4"))
    child = start_render(directory, "--size", "320x180")
    states = []
    try:
        while child.poll() is None:
            states.append(read_progress(directory))
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait(30)
    assert child.returncode == 0, (directory / "render.log").read_text()
    assert "programme.mp4" in (directory / "render.log").read_text()
    final = read_progress(directory)
    assert final["state"] == "done" and final["percent"] == 100
    assert final["peak_memory_kb"] > 1000 and final["speed"] > 0
    assert (directory / "programme.mp4").is_file()
    assert not list(directory.glob("*.part"))
    percents = [s["percent"] for s in states if s.get("state") == "rendering"]
    assert percents == sorted(percents)


def test_a_failed_render_says_why(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path / FILE_NAME)
    timeline.track_started("p1", "../../etc/passwd", "camera", "vp8", 0, 90000, t=1.0)
    timeline.close()
    result = subprocess.run(
        [sys.executable, "-m", "recording.render", str(tmp_path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    progress = read_progress(tmp_path)
    assert progress["state"] == "failed" and progress["code"] == "no_tracks"
    assert "etc/passwd" in progress["error"] and "not a plain file name" in progress["error"]
    assert not (tmp_path / "programme.mp4").exists()


def test_bad_recordings_give_clear_errors(recorded: Path, tmp_path: Path) -> None:
    with pytest.raises(RecordingError) as caught:
        render(tmp_path / "missing")
    assert caught.value.code == "not_found"
    with pytest.raises(RecordingError) as caught:
        render(recorded, width=641, height=360)
    assert caught.value.code == "bad_size"
    # Broken track files are skipped, each with its reason; the rest renders.
    directory = tmp_path / "partly"
    shutil.copytree(recorded, directory, ignore=shutil.ignore_patterns("programme.mp4"))
    (directory / "p3-cam.webm").write_bytes(b"")
    (directory / "p2-cam.mkv").write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 4)
    timeline = Timeline(directory / FILE_NAME)
    timeline.track_started("p4", "nothing.webm", "camera", "vp8", 0, 90000, t=1_764_000_001.0)
    timeline.close()
    result = render(directory, width=320, height=180, fps=15, font=tmp_path / "no.ttf")
    assert len(result.warnings) == 4
    assert any("no.ttf" in w and "Cyrillic may not show" in w for w in result.warnings)
    assert any("p3-cam.webm" in w for w in result.warnings)
    assert any("nothing.webm" in w for w in result.warnings)
    frames = decode_video(Path(result.output))
    # p3 has no camera now: a card (plain, not their colour) where their tile is.
    tiles = layout(
        [Participant("p1", "p1"), Participant("p2", "p2", False), Participant("p3", "p3", False)],
        "p2",
        None,
        320,
        180,
    )
    card = tiles[0].box
    assert not close_to(rgb_at(frames[round(2.2 * 15)], *card.centre), COLOURS["p2"], 60)


def test_a_shared_screen_takes_the_large_tile_while_it_is_on(tmp_path: Path) -> None:
    record(tmp_path, list(people_media()), speakers=SPEAKERS, screen=("p3", 1.0, screen_media()))
    result = render(tmp_path, width=320, height=180, fps=15)
    frames = decode_video(Path(result.output))
    people = [Participant(p, p) for p in ("p1", "p2", "p3")]
    # The share runs 1.0-2.8 s; it is yellow after its own lead-in (from 1.6 s).
    during = layout(people, "p2", "p3", 320, 180)
    assert during[0].content == "screen"
    frame = frames[round(2.0 * 15)]
    for tile in during:
        colour = SCREEN.colour if tile.content == "screen" else COLOURS[tile.participant]
        x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // 3
        assert close_to(rgb_at(frame, x, y), colour), tile
    after = layout(people, "p2", None, 320, 180)[0]
    assert close_to(rgb_at(frames[round(3.1 * 15)], *after.box.centre), COLOURS["p2"])


def test_names_are_written_on_the_tiles(rendered: tuple[RenderResult, list[int]]) -> None:
    frame = decode_video(Path(rendered[0].output))[round(1.3 * FPS)]
    for tile in _expected("p1", ["p1", "p2", "p3"]):
        label = tile.label
        picture = frame.reformat(format="gray")
        plane = picture.planes[0]
        data = bytes(plane)
        values = [
            data[y * plane.line_size + x]
            for y in range(label.y, label.y + label.height)
            for x in range(label.x, label.x + min(label.width, 4 * label.height))
        ]
        # White letters on a dark bar: both ends of the grey scale inside the label.
        assert min(values) < 40 and max(values) > 180, tile.participant


def test_a_long_mute_is_silent_and_holds_no_samples(tmp_path: Path) -> None:
    media = people_media()[0]
    writer = TrackWriter(tmp_path / "mute.webm", "opus")
    half = len(media.audio) // 2
    for index, (at, data) in enumerate(media.audio):
        packet = bytearray(data)
        if index >= half:  # a minute of mute: the second half's timestamps a minute later
            timestamp = struct.unpack_from("!I", packet, 4)[0]
            struct.pack_into("!I", packet, 4, (timestamp + 60 * 48000) & 0xFFFFFFFF)
        writer.push_rtp(bytes(packet), arrival=at + (60 if index >= half else 0))
    writer.close()
    track = Track("mute.webm", tmp_path / "mute.webm", "p1", "microphone", "audio", 0.0, 63.0)
    source = AudioSource(track)
    try:
        assert source.read(48000, 1600) is not None  # 1.0 s: the tone
        assert source.read(30 * 48000, 1600) is None  # in the mute
        assert len(source._samples._chunks) <= 2  # the gap is not filled with silence in memory
        again = source.read(62 * 48000, 1600)
        assert again is not None and max(abs(v) for v in again) > 0.1
    finally:
        source.close()


def test_sender_reports_line_up_a_publishers_camera_with_their_microphone(
    tmp_path: Path,
) -> None:
    """Video arriving 200 ms after its sound (a slower path): by arrival alone the picture
    would be 200 ms late; the publisher's sender reports put it back."""
    medias = list(people_media())
    record(tmp_path / "arrival", medias, video_delay=0.2)
    record(tmp_path / "reports", medias, video_delay=0.2, sender_reports=True)
    for name, shift in (("arrival", 0.2), ("reports", 0.0)):
        tracks = {t.file: t for t in read_plan(tmp_path / name).tracks}
        for person in PEOPLE:
            cam = next(t for f, t in tracks.items() if f.startswith(f"{person.id}-cam"))
            mic = tracks[f"{person.id}-mic.webm"]
            assert cam.offset - mic.offset == pytest.approx(shift, abs=0.002), (name, person)
