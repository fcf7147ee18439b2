"""Track files decoded once, in time order, for the renderer: the picture showing at a time,
and audio samples (48 kHz stereo, float) for a span of the recording's clock."""

from __future__ import annotations

import queue
import threading
from array import array
from collections import deque
from typing import Any

import av

from recording.plan import Track

RATE = 48000
CHANNELS = 2
STALE = 1.0  # seconds without a new picture after which a camera counts as off (card)
SLACK = 960  # samples of timing jitter absorbed before a gap is left or an overlap cut
AHEAD = 8  # pictures a video track decodes (and scales) ahead of the render, in its own thread
_END = None  # what the reader puts last


class VideoSource:
    """A video track decoded forward only: `at(t)` is the latest picture at or before `t`.

    A thread of its own decodes the file ahead and scales each picture to the size its tile
    had last (`size`): the decoders and the scaling of several tracks run on the cores the
    machine has while the render encodes (PyAV lets go of the GIL there)."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self._container: Any = av.open(str(track.path))
        stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        self._frames = self._container.decode(stream)
        self._next: Any = None
        self._next_scaled: Any = None
        self._next_time = 0.0
        self.current: Any = None
        self.current_scaled: Any = None  # `current` at `size`, when the reader scaled it
        self.current_time = -1.0
        self.serial = 0  # bumps when `current` changes (lets the renderer cache its scaling)
        self.size: tuple[int, int] | None = None  # the tile's last size (the reader's hint)
        self._done = False
        self._ahead: queue.Queue[tuple[float, Any, Any] | None] = queue.Queue(AHEAD)
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name=f"decode {track.file}")
        self._reader.start()
        self._pull()

    def _read(self) -> None:
        try:
            for frame in self._frames:
                if self._stopping.is_set():
                    return
                if frame.time is None:
                    continue
                size = self.size
                scaled = None
                if size is not None and (frame.width, frame.height) != size:
                    width, height = size
                    scaled = frame.reformat(
                        width=width, height=height, format="yuv420p", interpolation="BILINEAR"
                    )
                if not self._put((self.track.offset + frame.time, frame, scaled)):
                    return
        except av.FFmpegError:
            pass  # a file cut by a crash ends with a torn cluster: what decoded is what there is
        finally:
            self._put(_END)

    def _put(self, item: tuple[float, Any, Any] | None) -> bool:
        while not self._stopping.is_set():
            try:
                self._ahead.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pull(self) -> None:
        item = self._ahead.get() if not self._done else _END
        if item is _END:
            self._next, self._next_scaled, self._done = None, None, True
            return
        self._next_time, self._next, self._next_scaled = item

    def at(self, t: float, stale: float = STALE) -> Any:
        """The picture to show at `t`, or None (not started, ended, or older than `stale`)."""
        while self._next is not None and self._next_time <= t:
            self.current, self.current_time = self._next, self._next_time
            self.current_scaled = self._next_scaled
            self.serial += 1
            self._pull()
        if self.current is None or t - self.current_time > stale or t > self.track.end + 0.1:
            return None
        return self.current

    def picture(self, size: tuple[int, int]) -> Any:
        """The current picture for a tile of `size` (scaled already when the reader could),
        and `size` remembered for the next ones."""
        self.size = size
        scaled = self.current_scaled
        if scaled is not None and (scaled.width, scaled.height) == size:
            return scaled
        return self.current

    def close(self) -> None:
        self._stopping.set()
        self._reader.join()
        self._container.close()


class Samples:
    """Sound placed on a clock of samples (48 kHz stereo float, interleaved), in chunks: a gap
    stays silent and costs no memory; timing jitter under SLACK is absorbed and an overlap keeps
    the earlier samples. The offline sources and the live programme both keep their sound here."""

    def __init__(self) -> None:
        # Chunks not yet played: (first sample on the clock, samples).
        self._chunks: deque[tuple[int, array[float]]] = deque()
        self.end: int | None = None  # the sample after the last one placed

    def append(self, at: int, chunk: Any) -> int:
        """Place a resampled frame at sample `at`; returns the sample after what was kept."""
        samples = array("f", bytes(chunk.planes[0])[: chunk.samples * CHANNELS * 4])
        end = self.end
        if end is not None and abs(at - end) <= SLACK:
            at = end  # timing jitter: keep the sound continuous
        elif end is not None and at < end:  # overlapping time: keep the earlier samples
            samples = samples[(end - at) * CHANNELS :]
            at = end
        if samples:
            self._chunks.append((at, samples))
            self.end = at + len(samples) // CHANNELS
        return at + len(samples) // CHANNELS

    def read(self, start: int, count: int) -> array[float] | None:
        """Samples [start, start + count) interleaved, or None when there is no sound there;
        what lies before `start` is dropped (played)."""
        stop = start + count
        while self._chunks and self._chunks[0][0] + len(self._chunks[0][1]) // CHANNELS <= start:
            self._chunks.popleft()
        out: array[float] | None = None
        for first, samples in self._chunks:
            if first >= stop:
                break
            if out is None:
                out = array("f", bytes(4 * CHANNELS * count))
            begin = max(first, start)
            end = min(first + len(samples) // CHANNELS, stop)
            out[(begin - start) * CHANNELS : (end - start) * CHANNELS] = samples[
                (begin - first) * CHANNELS : (end - first) * CHANNELS
            ]
        return out


class AudioSource:
    """An audio track decoded forward only, resampled to 48 kHz stereo float, placed by its
    timestamps: gaps (mute) stay silent and cost no memory, jitter under 20 ms is absorbed."""

    def __init__(self, track: Track) -> None:
        self.track = track
        self._container: Any = av.open(str(track.path))
        self._frames = self._container.decode(self._container.streams.audio[0])
        self._resampler = av.AudioResampler(format="flt", layout="stereo", rate=RATE)
        self._samples = Samples()  # decoded, not yet played, on the recording's clock
        self._done = False

    def _fill(self, upto: int) -> None:
        while not self._done and (self._samples.end is None or self._samples.end < upto):
            try:
                frame = next(self._frames)
            except (StopIteration, av.FFmpegError):
                self._done = True
                return
            if frame.time is None:
                continue
            at = round((self.track.offset + frame.time) * RATE)
            for chunk in self._resampler.resample(frame):
                self._samples.append(at, chunk)
                at += chunk.samples  # placed by its own timestamps

    def read(self, start: int, count: int) -> array[float] | None:
        """Samples [start, start + count) interleaved, or None when the track is silent there."""
        self._fill(start + count)
        return self._samples.read(start, count)

    def close(self) -> None:
        self._container.close()


def mix(parts: list[array[float]], count: int) -> array[float]:
    """The sum of interleaved float buffers (the AAC encoder clips); silence for none."""
    if not parts:
        return array("f", bytes(4 * CHANNELS * count))
    if len(parts) == 1:
        return parts[0]
    return array("f", map(sum, zip(*parts, strict=True)))
