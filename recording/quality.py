"""The live programme checked against its tracks after the stop: the seconds in which a person
whose camera track held pictures was shown as a name card.

The compositor logs, as it draws, who it showed without a picture (`CardLog`, written to
cards.json beside the programme). The track files are the truth: a camera counts as sending at
a moment when its file holds a frame at most STALE seconds before it (the renderer's rule) and
at least GRACE before it (a picture takes a moment to reach the live programme: the jitter
buffer, the decoder). Only the packets' times are read, nothing is decoded: the check of a long
recording takes a second or so.
"""

import bisect
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av

from recording.errors import RecordingError
from recording.plan import read_plan
from recording.sources import STALE

logger = logging.getLogger(__name__)

CARDS = "cards.json"  # the compositor's log of name cards (programme seconds)
QUALITY = "quality.json"  # the check's result, kept beside the recording
GRACE = 0.5  # seconds a new picture may take to reach the live programme
STEP = 0.1  # the check's resolution in seconds
LIMIT = 0.01  # beyond this share of the duration without pictures, render from the tracks


@dataclass(frozen=True)
class Quality:
    """What the check found: `seconds` (and `share` of the recording) in which someone
    sending pictures was shown without one; `re_rendered` once the MP4 was made again from the
    tracks because of it."""

    seconds: float
    share: float
    re_rendered: bool = False

    @property
    def short(self) -> bool:
        """The live programme fell short: it must be rendered from the tracks."""
        return self.share > LIMIT

    def as_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "share": round(self.share, 4)} | {
            "re_rendered": self.re_rendered
        }


class CardLog:
    """Who the live programme showed as a card, as spans of programme seconds."""

    def __init__(self) -> None:
        self.spans: dict[str, list[list[float]]] = {}
        self._open: dict[str, list[float]] = {}  # participant -> the span still growing
        self.duration = 0.0

    def drawn(self, t: float, end: float, cards: set[str]) -> None:
        """A frame shown from `t` to `end` with `cards` (participants without a picture)."""
        for who in list(self._open):
            if who not in cards:
                del self._open[who]
        for who in cards:
            span = self._open.get(who)
            if span is None:
                span = self._open[who] = [t, end]
                self.spans.setdefault(who, []).append(span)
            span[1] = end
        self.duration = max(self.duration, end)

    def held(self, end: float) -> None:
        """A frame not drawn (the clock ran late): what shows goes on showing."""
        for span in self._open.values():
            span[1] = end
        self.duration = max(self.duration, end)

    def write(self, directory: Path) -> None:
        data = {"duration": round(self.duration, 3), "cards": self.spans}
        path = directory / CARDS
        part = path.with_name(f".{CARDS}.part")
        part.write_text(json.dumps(data), encoding="utf-8")
        os.replace(part, path)


def _camera_times(path: Path, offset: float) -> list[float]:
    """The times of a camera file's frames on the recording's clock (packets, not decoded)."""
    times = []
    with av.open(str(path)) as container:
        stream = container.streams[0]
        for packet in container.demux(stream):
            if packet.pts is not None and packet.time_base is not None and packet.size:
                times.append(offset + float(packet.pts * packet.time_base))
    times.sort()
    return times


def _within(spans: list[list[float]], t: float, starts: list[float]) -> bool:
    index = bisect.bisect_right(starts, t) - 1
    return index >= 0 and spans[index][0] <= t <= spans[index][1]


def check(directory: Path) -> Quality:
    """Check `directory`'s live programme against its camera tracks. RecordingError:
    no_cards (the programme left no log: it cannot be vouched for), or the plan's errors."""
    directory = Path(directory)
    try:
        log = json.loads((directory / CARDS).read_text(encoding="utf-8"))
        shown_until = float(log["duration"])
        cards = {str(k): [[float(a), float(b)] for a, b in v] for k, v in log["cards"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise RecordingError("no_cards", f"the live programme left no card log: {error}") from None
    plan = read_plan(directory)
    cameras: dict[str, list[float]] = {}
    for track in plan.tracks:
        if track.kind == "video" and track.source == "camera":
            try:
                times = _camera_times(track.path, track.offset)
            except (OSError, av.FFmpegError) as error:
                logger.warning("track %s not checked: %s", track.file, error)
                continue
            cameras.setdefault(track.participant, []).extend(times)
    for times in cameras.values():
        times.sort()
    for spans in cards.values():
        spans.sort()
    starts = {who: [span[0] for span in spans] for who, spans in cards.items()}
    lost = 0
    steps = int(plan.duration / STEP)
    for step in range(steps):
        t = step * STEP
        for who, times in cameras.items():
            # A frame in [t - STALE, t - GRACE]: this camera was sending a picture then.
            first = bisect.bisect_left(times, t - STALE)
            if first >= len(times) or times[first] > t - GRACE:
                continue
            if t > shown_until or _within(cards.get(who, []), t, starts.get(who, [])):
                lost += 1
                break
    duration = max(plan.duration, STEP)
    seconds = lost * STEP
    return Quality(seconds, min(1.0, seconds / duration))


def write(directory: Path, quality: Quality) -> None:
    path = Path(directory) / QUALITY
    part = path.with_name(f".{QUALITY}.part")
    part.write_text(json.dumps(asdict(quality)), encoding="utf-8")
    os.replace(part, path)


def read(directory: Path) -> Quality | None:
    """The check's result kept beside the recording; None when it was never checked."""
    try:
        data = json.loads((Path(directory) / QUALITY).read_text(encoding="utf-8"))
        return Quality(float(data["seconds"]), float(data["share"]), bool(data["re_rendered"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
