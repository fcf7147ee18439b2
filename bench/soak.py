"""The soak: a meeting's ordinary life, over and over, for a set time, while the server's RSS,
open files and asyncio tasks are sampled. What a leak looks like is a figure that climbs with
the time; a server that holds returns to its baseline when the meeting is quiet again.

The life, all on loopback and bounded in count: a speaker publishing the clip for the whole
soak; roster participants joining, toggling their screen share, chatting and leaving, one at a
time; WHEP viewers coming (receiving the stage for a few seconds) and going; one recording
started and stopped. A warm-up round of each comes first (first-use allocations are not a
leak), then the baseline is taken with nobody in the meeting, then the soak, then the quiet
figures after everyone has left.
"""

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import aiohttp

from bench import clip, whip
from bench.peers import Publisher, Viewer
from bench.veche import Client, VecheTarget

log = logging.getLogger(__name__)

PARTICIPANTS = 4  # roster entries the churn takes turns with
CHURN_PAUSE = 0.5  # seconds between one participant's leaving and the next one's join
WHEP_WATCH = 3.0  # seconds a WHEP viewer watches
WHEP_PAUSE = 1.0
WARM_UP = 8.0  # seconds of the meeting's life before the baseline, a recording included
QUIET_LIMIT = 20.0  # seconds the quiet figures may take to come back down
# What "back to the baseline" allows: allocator arenas and caches keep some memory.
RSS_MARGIN = 0.15
FILES_MARGIN = 3
TASKS_MARGIN = 3


@dataclass(frozen=True)
class Sample:
    """The server's figures at one moment (seconds since the soak began)."""

    at: float
    rss_kb: int
    open_files: int
    tasks: int

    def line(self, label: str) -> str:
        return (
            f"{label:>9} {self.at:7.0f} s  RSS {self.rss_kb / 1024:7.1f} MB  "
            f"open files {self.open_files:5d}  tasks {self.tasks:5d}"
        )


@dataclass
class Counts:
    """What the soak did."""

    joins: int = 0
    share_toggles: int = 0
    chats: int = 0
    whep_viewers: int = 0
    whep_packets: int = 0
    recordings: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class SoakResult:
    baseline: Sample
    samples: list[Sample]
    quiet: Sample
    counts: Counts

    def held(self) -> bool:
        """Whether the quiet figures came back to the baseline (within the margins)."""
        b, q = self.baseline, self.quiet
        return (
            q.rss_kb <= b.rss_kb * (1 + RSS_MARGIN)
            and q.open_files <= b.open_files + FILES_MARGIN
            and q.tasks <= b.tasks + TASKS_MARGIN
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "baseline": asdict(self.baseline),
            "samples": [asdict(s) for s in self.samples],
            "quiet": asdict(self.quiet),
            "counts": asdict(self.counts),
            "held": self.held(),
        }


def _proc(pid: int) -> tuple[int, int]:
    """(RSS in kB, open files) of a process on this machine."""
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


class Soak:
    """One soak against one server (its pid is read for RSS and open files: same machine)."""

    def __init__(self, target: VecheTarget, pid: int, media: clip.Clip) -> None:
        self.target = target
        self.pid = pid
        self.media = media
        self.counts = Counts()
        self._started = time.monotonic()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self._tokens: list[str] = []
        self._whep: whip.Endpoint | None = None

    async def sample(self) -> Sample:
        rss, files = _proc(self.pid)
        async with self._http.get(f"{self.target.url}/readyz") as response:
            ready = await response.json(content_type=None)
        return Sample(round(time.monotonic() - self._started, 1), rss, files, int(ready["tasks"]))

    async def prepare(self) -> None:
        for index in range(PARTICIPANTS):
            entry = await self.target._api(
                "POST",
                f"/meetings/{self.target.meeting}/roster",
                {"name": f"Soak {index}", "role": "participant"},
            )
            self._tokens.append(str(entry["token"]))
        _, self._whep = await self.target.whip_whep_endpoints()
        self._speaker = str(
            (
                await self.target._api(
                    "POST",
                    f"/meetings/{self.target.meeting}/roster",
                    {"name": "Soak speaker", "role": "speaker"},
                )
            )["token"]
        )

    # the meeting's life

    async def participant_visit(self, index: int) -> None:
        """Join, share and stop sharing, chat, leave."""
        client = Client(self.target.url, None)
        try:
            await client.join(self._tokens[index % PARTICIPANTS])
            self.counts.joins += 1
            for on in (True, False):
                await client.call("state", {"screen": on})
                self.counts.share_toggles += 1
            await client.call("chat", {"text": f"soak message {self.counts.chats}"})
            self.counts.chats += 1
        finally:
            await client.close()

    async def whep_visit(self) -> None:
        """A WHEP player watches the stage for a while, then DELETEs its session."""
        assert self._whep is not None
        viewer = Viewer(None)
        viewer.add_receivers()
        resource: whip.Resource | None = None
        try:
            answer, resource = await whip.exchange(
                self._http, self._whep, "stage", await viewer.offer()
            )
            await viewer.accept(answer)
            self.counts.whep_viewers += 1
            await asyncio.sleep(WHEP_WATCH)
            self.counts.whep_packets += sum(s.packets for s in viewer.streams.values())
        finally:
            if resource is not None:
                with contextlib.suppress(aiohttp.ClientError, whip.WhipError):
                    await resource.delete(self._http)
            await viewer.close()

    async def publish(self, end: float) -> None:
        """The speaker publishes the clip until `end` (a monotonic time)."""
        client = Client(self.target.url, None)
        publisher = Publisher(self.media)
        try:
            await client.join(self._speaker)
            await client.publish(publisher)
            await asyncio.sleep(max(0.0, end - time.monotonic()))
        finally:
            await client.close()
            await publisher.close()

    async def _repeat(
        self, visit: Callable[[int], Awaitable[None]], pause: float, end: float
    ) -> None:
        index = 0
        while time.monotonic() < end:
            try:
                await visit(index)
            except Exception as exc:  # counted and shown: a soak goes on
                self.counts.errors.append(f"{type(exc).__name__}: {exc}"[:200])
                log.warning("soak: %s: %s", type(exc).__name__, exc)
            index += 1
            await asyncio.sleep(pause)

    async def record(self, start: float, stop: float) -> None:
        """One recording, started at `start` and stopped at `stop` (monotonic times)."""
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        try:
            await self.target.start_recording()
            await asyncio.sleep(max(0.0, stop - time.monotonic()))
            await self.target.stop_recording()
            self.counts.recordings += 1
        except Exception as exc:
            self.counts.errors.append(f"recording: {type(exc).__name__}: {exc}"[:200])
            await self.target.abandon_recording()

    async def life(self, seconds: float, recording: bool) -> None:
        """Everything at once for `seconds`."""
        begin = time.monotonic()
        end = begin + seconds
        work = [
            self.publish(end),
            self._repeat(self.participant_visit, CHURN_PAUSE, end),
            self._repeat(lambda _: self.whep_visit(), WHEP_PAUSE, end),
        ]
        if recording:
            work.append(self.record(begin + seconds * 0.2, begin + seconds * 0.6))
        await asyncio.gather(*work)

    async def quiet(self, baseline: Sample) -> Sample:
        """The figures once the meeting is quiet: polled until they are back (or the limit)."""
        deadline = time.monotonic() + QUIET_LIMIT
        while True:
            now = await self.sample()
            back = SoakResult(baseline, [], now, self.counts).held()
            if back or time.monotonic() >= deadline:
                return now
            await asyncio.sleep(0.5)

    async def close(self) -> None:
        await self._http.close()


async def soak(
    target: VecheTarget,
    pid: int,
    media: clip.Clip,
    seconds: float,
    interval: float,
    out: Callable[[str], None] = print,
) -> SoakResult:
    """Warm up, take the baseline, run the meeting's life for `seconds` with a sample every
    `interval`, then take the quiet figures."""
    runner = Soak(target, pid, media)
    try:
        await runner.prepare()
        out(f"soak: warming up (one of everything, {WARM_UP:.0f} s or so)")
        await runner.life(WARM_UP, recording=True)
        await asyncio.sleep(1.0)
        baseline = await runner.sample()
        out(baseline.line("baseline"))
        runner.counts = Counts()  # what the soak itself did
        samples: list[Sample] = []

        async def sampler() -> None:
            while True:
                await asyncio.sleep(interval)
                samples.append(await runner.sample())
                out(samples[-1].line("sample"))

        sampling = asyncio.ensure_future(sampler())
        try:
            await runner.life(seconds, recording=True)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        quiet = await runner.quiet(baseline)
        out(quiet.line("quiet"))
        result = SoakResult(baseline, samples, quiet, runner.counts)
        c = runner.counts
        out(
            f"soak: {c.joins} joins and leaves, {c.share_toggles} share toggles, {c.chats} chat "
            f"messages, {c.whep_viewers} WHEP viewers ({c.whep_packets} packets), "
            f"{c.recordings} recording(s), {len(c.errors)} errors; "
            + ("back to the baseline" if result.held() else "NOT back to the baseline")
        )
        for error in c.errors[:5]:
            out(f"soak error: {error}")
        return result
    finally:
        await runner.close()
