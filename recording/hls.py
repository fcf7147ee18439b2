"""The programme's packets segmented for HLS: MPEG-TS files of about two seconds, each starting
with a keyframe, and `index.m3u8` listing the last few while live, every one once it ends (VOD,
with #EXT-X-ENDLIST). The playlist is written by us rather than FFmpeg's hls muxer so that the
live window and the final VOD list come from one record of the segments."""

import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

PLAYLIST = "index.m3u8"
SEGMENT = 2.0  # seconds; the encoder puts a keyframe at each segment start
WINDOW = 6  # segments in the live playlist
# Segments' clocks start here rather than at 0 (as Apple's segmenter does): MPEG-TS cannot
# hold a negative timestamp, and a packet a little before the programme's 0 stays positive.
TS_OFFSET = 10


@dataclass(frozen=True)
class Segment:
    name: str
    start: float  # seconds of programme
    duration: float


class HlsWriter:
    """Writes `directory`/index.m3u8 and its segments from encoded packets of the streams
    `video` and `audio` (the encoder's, as templates); `write` each packet as it is made."""

    def __init__(
        self,
        directory: Path,
        video: Any,
        audio: Any,
        segment: float = SEGMENT,
        window: int = WINDOW,
    ) -> None:
        if segment <= 0 or window < 1:
            raise ValueError("segments need a positive length and a window of at least one")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._templates = (video, audio)
        self._target = segment
        self._window = window
        self.segments: list[Segment] = []  # complete ones
        self._container: Any = None
        self._streams: dict[str, Any] = {}
        self._name = ""
        self._start = 0.0
        self._end = 0.0  # the end of the latest packet in the open segment
        self.closed = False
        # The wall clock at programme time 0: the compositor makes the writer as its clock
        # starts, so #EXT-X-PROGRAM-DATE-TIME tells a player how far behind live it plays.
        self.origin = time.time()

    def write(self, packet: Any) -> None:
        """Add one packet (it is rebased and muxed: the caller has done with it). A video
        keyframe at least a segment after the open segment's start begins the next one."""
        if self.closed:
            raise ValueError("the HLS output is closed")
        kind = packet.stream.type
        at = float(packet.pts * packet.time_base)
        if kind == "video" and packet.is_keyframe:
            if self._container is None:
                self._open(at)
            elif at - self._start >= self._target - 0.01:
                self._close_segment(at)
                self._open(at)
        if self._container is None:
            self._open(at)
        if kind == "video":  # the pictures say how long a segment lasts (sound is padded)
            self._end = max(self._end, at + float((packet.duration or 0) * packet.time_base))
        shift = round(TS_OFFSET / packet.time_base)
        dts = packet.dts
        packet.pts += shift
        if dts is not None:
            packet.dts = dts + shift
        packet.stream = self._streams[kind]
        self._container.mux(packet)

    def close(self) -> None:
        """End the last segment and leave the VOD playlist of every segment."""
        if self.closed:
            return
        self.closed = True
        if self._container is not None:
            self._close_segment(self._end)
        self._write_playlist(final=True)

    def _open(self, at: float) -> None:
        self._name = f"segment-{len(self.segments):05d}.ts"
        self._container = av.open(str(self.directory / self._name), "w", format="mpegts")
        video, audio = self._templates
        self._streams = {
            "video": self._container.add_stream_from_template(video),
            "audio": self._container.add_stream_from_template(audio),
        }
        self._start = self._end = at

    def _close_segment(self, end: float) -> None:
        self._container.close()
        self._container = None
        self.segments.append(Segment(self._name, self._start, max(0.0, end - self._start)))
        self._write_playlist(final=False)

    def _write_playlist(self, final: bool) -> None:
        shown = self.segments if final else self.segments[-self._window :]
        first = len(self.segments) - len(shown)
        longest = max([self._target, *(s.duration for s in shown)])
        lines = [
            "#EXTM3U",
            "#EXT-X-VERSION:3",
            f"#EXT-X-TARGETDURATION:{math.ceil(longest - 0.001)}",
            f"#EXT-X-MEDIA-SEQUENCE:{first}",
        ]
        if final:
            lines.append("#EXT-X-PLAYLIST-TYPE:VOD")
        for segment in shown:
            lines += [
                f"#EXT-X-PROGRAM-DATE-TIME:{_date(self.origin + segment.start)}",
                f"#EXTINF:{segment.duration:.3f},",
                segment.name,
            ]
        if final:
            lines.append("#EXT-X-ENDLIST")
        # A player polling the playlist never reads half of it.
        path = self.directory / PLAYLIST
        temporary = path.with_name(f".{PLAYLIST}.{os.getpid()}")
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        temporary.replace(path)


def _date(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def read_playlist(path: Path) -> tuple[list[tuple[str, Fraction]], dict[str, str]]:
    """(segments as (uri, duration), tags) of a media playlist: for tests and tools."""
    segments: list[tuple[str, Fraction]] = []
    tags: dict[str, str] = {}
    duration: Fraction | None = None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = Fraction(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line.startswith("#"):
            key, _, value = line.partition(":")
            tags[key] = value
        elif line and duration is not None:
            segments.append((line, duration))
            duration = None
    return segments, tags
