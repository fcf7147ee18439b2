"""Chapters by speaker for the playback page, from a recording's timeline.

The speaker of a moment is the one the programme shows large: of those speaking, the one whose
segment began last; when nobody speaks, the last speaker stays. A chapter is a run of one
speaker; a turn shorter than MIN_CHAPTER (a cough, a "yes") is folded into the chapter before
it (or after it, at the start), so the list reads like the meeting's turns rather than its noise.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recording.timeline import FILE_NAME, Event, read_events

MIN_CHAPTER = 2.0  # seconds


@dataclass(frozen=True)
class Chapter:
    """One speaker's turn: `start` and `end` in seconds on the recording's clock (since
    `recording_started`)."""

    start: float
    end: float
    participant: str
    name: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "participant": self.participant,
            "name": self.name,
        }


def chapters(directory: Path, min_length: float = MIN_CHAPTER) -> list[Chapter]:
    """The chapters of the recording in `directory` (empty when nobody spoke or there is no
    timeline)."""
    return chapters_of(read_events(Path(directory) / FILE_NAME), min_length)


def chapters_of(events: list[Event], min_length: float = MIN_CHAPTER) -> list[Chapter]:
    """The chapters of a list of timeline events (see `chapters`)."""
    if not events:
        return []
    zero = next((e["t"] for e in events if e["event"] == "recording_started"), events[0]["t"])
    names: dict[str, str] = {}
    turns = _turns(events, names)
    if not turns:
        return []
    stopped = [e["t"] for e in events if e["event"] == "recording_stopped"]
    end = max(stopped[-1] if stopped else events[-1]["t"], turns[-1][0])
    runs = [
        [start, turns[i + 1][0] if i + 1 < len(turns) else end, who]
        for i, (start, who) in enumerate(turns)
    ]
    runs = _merge(_fold(_merge(runs), min_length))
    return [
        Chapter(
            start=max(0.0, start - zero),
            end=max(0.0, stop - zero),
            participant=who,
            name=names.get(who, ""),
        )
        for start, stop, who in runs
    ]


def _turns(events: list[Event], names: dict[str, str]) -> list[tuple[float, str]]:
    """(time, participant) whenever the shown speaker changes; fills `names` on the way."""
    speaking: dict[str, float] = {}  # participant -> when the current segment began
    shown: str | None = None
    turns: list[tuple[float, str]] = []
    for event in events:
        kind, who = event["event"], event.get("participant")
        if not isinstance(who, str):
            continue
        if kind == "joined" and isinstance(event.get("name"), str):
            names[who] = event["name"]
        elif kind == "speaking" and event.get("on") is True:
            speaking[who] = event["t"]
        elif kind == "left" or (kind == "speaking" and event.get("on") is False):
            speaking.pop(who, None)
        else:
            continue
        if speaking:
            latest = max(speaking, key=lambda p: speaking[p])
            if latest != shown:
                shown = latest
                turns.append((event["t"], latest))
    return turns


def _merge(runs: list[list[Any]]) -> list[list[Any]]:
    merged: list[list[Any]] = []
    for run in runs:
        if merged and merged[-1][2] == run[2]:
            merged[-1][1] = run[1]
        else:
            merged.append(list(run))
    return merged


def _fold(runs: list[list[Any]], min_length: float) -> list[list[Any]]:
    """Short runs join their neighbour: the one before, or for the first, the one after."""
    kept: list[list[Any]] = []
    pending_start: float | None = None  # a short first run waiting for the next one
    for start, end, who in runs:
        if end - start < min_length and (kept or len(runs) > 1):
            if kept:
                kept[-1][1] = end
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        kept.append([start, end, who])
    if not kept and runs:  # every run was short: one chapter for the first speaker
        kept.append([runs[0][0], runs[-1][1], runs[0][2]])
    return kept
