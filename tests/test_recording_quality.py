"""The live programme checked against the tracks (recording/quality.py), the live compositor's
held pictures, and viewers left out of a re-render: real track files written through the
capture path (tests/recording_fixtures.py), real PyAV decoding."""

import asyncio
import json
from pathlib import Path

import av
import pytest

from recording.compositor import Compositor
from recording.errors import RecordingError
from recording.layout import Participant, layout
from recording.quality import CARDS, CardLog, check
from recording.renderer import render
from tests.recording_fixtures import (
    PEOPLE,
    close_to,
    decode_video,
    people_media,
    record,
    rgb_at,
)


def cards(directory: Path, spans: dict[str, list[list[float]]], duration: float = 4.0) -> None:
    (directory / CARDS).write_text(json.dumps({"duration": duration, "cards": spans}))


def test_seconds_shown_without_a_picture_while_the_track_had_one_are_counted(
    tmp_path: Path,
) -> None:
    record(tmp_path, list(people_media()))
    cards(tmp_path, {})
    assert check(tmp_path).seconds == 0.0
    # p1's camera ran the whole time: a card from 1.0 s to 2.0 s is a second lost; p2 and p3
    # shown as cards before their cameras began is no loss.
    cards(tmp_path, {"p1": [[1.0, 2.0]], "p2": [[0.0, 0.3]], "p3": [[0.0, 0.6]]})
    found = check(tmp_path)
    assert 0.8 <= found.seconds <= 1.2, found
    assert found.short and 0.2 < found.share < 0.4, found
    # A programme that ended early misses what the tracks hold after it.
    cards(tmp_path, {}, duration=2.0)
    assert check(tmp_path).seconds >= 0.8
    (tmp_path / CARDS).unlink()
    with pytest.raises(RecordingError) as refused:
        check(tmp_path)
    assert refused.value.code == "no_cards"


def test_the_card_log_keeps_spans_through_frames_not_drawn() -> None:
    log = CardLog()
    log.drawn(0.0, 0.04, {"p1"})
    log.held(0.08)  # the clock ran late: the card stayed up
    log.drawn(0.08, 0.12, {"p1", "p2"})
    log.drawn(0.12, 0.16, {"p2"})
    assert log.spans == {"p1": [[0.0, 0.12]], "p2": [[0.08, 0.16]]}


def test_the_live_programme_holds_a_late_picture_and_shows_a_card_only_when_the_camera_is_off(
    tmp_path: Path,
) -> None:
    colour = PEOPLE[0].colour
    rgb = av.VideoFrame(320, 180, "rgb24")
    rgb.planes[0].update(bytes(colour) * (rgb.planes[0].buffer_size // 3))
    picture = rgb.reformat(format="yuv420p")
    compositor = Compositor(tmp_path, manual=True, hls=False, size=(320, 180), fps=25)
    compositor.join("p1", "Anna")
    compositor.picture("p1", "camera", picture)
    for index in range(100):  # 4 s with no newer picture: a loaded machine decodes late
        if index == 75:
            compositor.camera("p1", False)  # 3 s: the room says the camera is off
        compositor.tick()
    asyncio.run(compositor.finish())
    frames = decode_video(tmp_path / "programme.mp4")
    tile = layout([Participant("p1", "Anna", True)], None, None, 320, 180)[0]
    x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // 5
    assert all(close_to(rgb_at(f, x, y), colour) for f in frames[2:74])  # held, no card
    assert all(not close_to(rgb_at(f, x, y), colour) for f in frames[78:])  # off: a card
    spans = json.loads((tmp_path / CARDS).read_text())["cards"]["p1"]
    assert spans[-1][0] == pytest.approx(3.0, abs=0.1)


def test_a_viewer_is_not_in_a_re_render(tmp_path: Path) -> None:
    record(tmp_path, list(people_media()))
    events = (tmp_path / "timeline.jsonl").read_text().splitlines()
    first = json.loads(events[0])["t"]
    # A viewer in the meeting from the start: joined (as the room listed them) and a viewer.
    extra = [
        {"t": first + 0.01, "event": "joined", "participant": "v1", "name": "Watcher"},
        {"t": first + 0.01, "event": "role", "participant": "v1", "role": "viewer"},
    ]
    lines = [events[0], *(json.dumps(e) for e in extra), *events[1:]]
    (tmp_path / "timeline.jsonl").write_text("\n".join(lines) + "\n")
    result = render(tmp_path, tmp_path / "again.mp4", width=640, height=360, fps=25)
    frames = decode_video(Path(result.output))
    everyone = [Participant(p.id, p.name, True) for p in PEOPLE]
    tiles = layout(everyone, None, None, 640, 360)
    last = next(f for f in frames if f.time >= 2.0)  # everyone's colour is up by then
    for tile, person in zip(tiles, PEOPLE, strict=True):
        x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // 5
        assert close_to(rgb_at(last, x, y), person.colour), (tile, rgb_at(last, x, y))
