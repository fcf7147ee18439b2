"""Chapters by speaker read from a real timeline file, as the playback page lists them."""

from pathlib import Path

import pytest

from recording.chapters import Chapter, chapters
from recording.timeline import FILE_NAME, Timeline

T0 = 1_800_000_000.0  # the recording's wall-clock start


def write_timeline(directory: Path, steps: list[tuple[float, str, dict[str, object]]]) -> None:
    timeline = Timeline(directory / FILE_NAME)
    timeline.recording_started("m1", "Совещание", t=T0)
    for at, event, fields in steps:
        timeline.append(event, t=T0 + at, **fields)
    timeline.close()


def speak(who: str, on: bool) -> dict[str, object]:
    return {"participant": who, "on": on}


def test_turns_become_chapters_with_names_on_the_recording_clock(tmp_path: Path) -> None:
    write_timeline(
        tmp_path,
        [
            (0.5, "joined", {"participant": "p1", "name": "Анна Петрова"}),
            (0.7, "joined", {"participant": "p2", "name": "Boris"}),
            (3.0, "speaking", speak("p1", True)),
            (9.0, "speaking", speak("p1", False)),
            # a pause: Анна stays the speaker shown until Boris begins
            (12.0, "speaking", speak("p2", True)),
            (20.0, "speaking", speak("p2", False)),
            (20.5, "speaking", speak("p1", True)),
            (30.0, "recording_stopped", {"reason": ""}),
        ],
    )
    assert chapters(tmp_path) == [
        Chapter(3.0, 12.0, "p1", "Анна Петрова"),
        Chapter(12.0, 20.5, "p2", "Boris"),
        Chapter(20.5, 30.0, "p1", "Анна Петрова"),
    ]


def test_short_interjections_fold_and_the_same_speaker_merges(tmp_path: Path) -> None:
    write_timeline(
        tmp_path,
        [
            (0.0, "joined", {"participant": "p1", "name": "Анна"}),
            (0.0, "joined", {"participant": "p2", "name": "Boris"}),
            (0.0, "joined", {"participant": "p3", "name": "Vera"}),
            # Vera coughs first (under 2 s): folded into the next chapter, which starts at her.
            (1.0, "speaking", speak("p3", True)),
            (1.5, "speaking", speak("p3", False)),
            (2.0, "speaking", speak("p1", True)),
            # Boris says "yes" over Анна for a second: Анна's turn goes on as one chapter.
            (6.0, "speaking", speak("p2", True)),
            (7.0, "speaking", speak("p2", False)),
            (7.0, "speaking", speak("p1", False)),
            (7.2, "speaking", speak("p1", True)),
            (15.0, "speaking", speak("p1", False)),
            # Vera speaks at length; Boris overlaps at her end and then holds the floor.
            (15.0, "speaking", speak("p3", True)),
            (25.0, "speaking", speak("p2", True)),
            (25.5, "speaking", speak("p3", False)),
            (27.0, "left", {"participant": "p2"}),  # leaving ends a segment
            (28.0, "recording_stopped", {"reason": ""}),
        ],
    )
    found = chapters(tmp_path)
    assert [(c.start, c.end, c.name) for c in found] == [
        (1.0, 15.0, "Анна"),
        (15.0, 25.0, "Vera"),
        (25.0, 28.0, "Boris"),
    ]
    assert found[0].as_dict() == {"start": 1.0, "end": 15.0, "participant": "p1", "name": "Анна"}


def test_a_timeline_cut_by_a_crash_ends_at_its_last_event(tmp_path: Path) -> None:
    write_timeline(
        tmp_path,
        [
            (0.0, "joined", {"participant": "p1", "name": "Анна"}),
            (4.0, "speaking", speak("p1", True)),
            (11.0, "chat", {"participant": "p1", "name": "Анна", "text": "…"}),
        ],
    )
    with (tmp_path / FILE_NAME).open("a", encoding="utf-8") as file:
        file.write('{"t": 1800000012, "event": "speak')  # the line being written at the crash
    assert chapters(tmp_path) == [Chapter(4.0, 11.0, "p1", "Анна")]


@pytest.mark.parametrize(
    "steps",
    [
        [],
        [(1.0, "joined", {"participant": "p1", "name": "Анна"})],
        [(1.0, "speaking", {"participant": 7, "on": True})],  # garbled fields are skipped
    ],
)
def test_no_speech_no_chapters(
    tmp_path: Path, steps: list[tuple[float, str, dict[str, object]]]
) -> None:
    write_timeline(tmp_path, steps)
    assert chapters(tmp_path) == []


def test_no_timeline_no_chapters(tmp_path: Path) -> None:
    assert chapters(tmp_path / "missing") == []
