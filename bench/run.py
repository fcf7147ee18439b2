"""One measured run: publishers join, viewers join, a steady window is measured, all leave.

Numbers come from a steady window that starts after every viewer has its first video frame (or
the join timeout passed) and a short settling time, so joins and keyframe bursts stay out.
"""

import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bench import proc
from bench.clip import Clip
from bench.peers import Publisher, Snapshot, Viewer, decoder_threads
from bench.source import Config, SourceProcess
from bench.stats import TOOL_LAG_LIMIT, TOOL_LIMIT, Result, percentile
from bench.targets import Feed, Leave, Target
from bench.veche import VecheTarget

LAG_TICK = 0.01
LAG_NOTE = 20.0  # ms
CATCH_UP_SLICE = 0.3  # s
CATCH_UP_BUSY = 0.9  # the tool's CPU share below which it has caught up
CATCH_UP_LIMIT = 10.0  # s


@dataclass(frozen=True)
class Plan:
    scenario: str  # "broadcast" or "meeting"
    publishers: int
    viewers_each: int  # viewers per publisher (meeting: publishers - 1)
    seconds: float = 10.0  # steady window
    settle: float = 2.0
    join_timeout: float = 15.0
    join_parallel: int = 8
    record: bool = False  # a Veche meeting recorded during the window
    hls: bool = False  # a Veche broadcast watched by one HLS player (the programme runs)

    def load_watches(self, probe: bool) -> list[tuple[int, int]]:
        """The watches the main process makes: with a source process, each publisher's first
        watch is its probe there."""
        if not probe:
            return self.watches()
        probed: set[int] = set()
        load = []
        for source, watcher in self.watches():
            if source in probed:
                load.append((source, watcher))
            probed.add(source)
        return load

    def watches(self) -> list[tuple[int, int]]:
        """(publisher watched, participant watching); a meeting's participant i watches all
        others, a broadcast's viewers are numbered apart from the publisher."""
        if self.scenario == "meeting":
            n = self.publishers
            return [(p, w) for w in range(n) for p in range(n) if p != w]
        return [(0, w) for w in range(self.viewers_each)]


class Progress:
    """One live line on stderr."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._last = ""

    def show(self, text: str) -> None:
        if self.enabled:
            line = f"\r[{self.label}] {text}"
            sys.stderr.write(line + " " * max(0, len(self._last) - len(line)))
            sys.stderr.flush()
            self._last = line

    def done(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._last = ""


async def measure(
    target: Target,
    plan: Plan,
    clip: Clip,
    server_pid: int | None,
    progress: Progress,
    probe: bool = True,
) -> Result:
    """Run `plan`; with `probe`, the publishers and a probe viewer of each run in a source
    process (bench/source.py) and the delay is the probes'."""
    idle = proc.usage(server_pid) if server_pid else None
    publishers: list[Publisher] = []
    viewers: list[Viewer] = []
    leaves: list[Leave] = []
    notes: list[str] = []
    source: SourceProcess | None = None
    # On Veche a meeting participant's one subscribe connection carries every other
    # participant's tracks: each publisher also watches, and nobody else joins.
    together = isinstance(target, VecheTarget) and plan.scenario == "meeting"
    stoppers: list[Callable[[], object]] = []  # background work to end with the run
    try:
        feeds: list[Feed] = []
        if probe:
            progress.show(f"publishing {plan.publishers} in the source process")
            config = Config(target.spec(), clip.codec, clip.spec.bitrate, plan.publishers, together)
            source = await SourceProcess.start(config)
            feeds = source.feeds
            progress.show("probe viewers joining")
            await source.ready()
        else:
            publishers = [Publisher(clip) for _ in range(plan.publishers)]
            for index, publisher in enumerate(publishers):
                progress.show(f"publishing {index + 1}/{len(publishers)}")
                if isinstance(target, VecheTarget) and together:
                    viewers.append(Viewer(None, clip.codec))
                    feed, leave = await target.participate(f"p{index}", publisher, viewers[-1])
                else:
                    feed, leave = await target.publish(f"p{index}", publisher)
                feeds.append(feed)
                leaves.append(leave)
            await asyncio.sleep(0.5)  # let the server see the first packets before viewers ask

        if plan.record:
            if not isinstance(target, VecheTarget):
                raise ValueError("--record: only a Veche server records")
            progress.show("starting the recording")
            await target.start_recording()

        hls_start = None
        if plan.hls:
            if not isinstance(target, VecheTarget):
                raise ValueError("--hls: only a Veche server makes an HLS programme")
            progress.show("starting the HLS programme (the first playlist request)")
            hls_start = await target.start_hls()
            player = asyncio.ensure_future(target.hls_player())
            stoppers.append(player.cancel)

        gate = asyncio.Semaphore(plan.join_parallel)
        watches = [] if together else plan.load_watches(probe)

        async def join(index: int) -> None:
            async with gate:
                viewer = Viewer(None if source else publishers[index].times, clip.codec)
                viewers.append(viewer)
                leaves.append(await target.watch(feeds[index], viewer))

        joining = asyncio.gather(*(join(index) for index, _ in watches))
        deadline = time.monotonic() + plan.join_timeout + len(watches) * 0.2
        while not joining.done() or not all(v.first_frame_at for v in viewers):
            with_video = sum(1 for v in viewers if v.first_frame_at)
            progress.show(f"joining: {len(viewers)}/{len(watches)} joined, {with_video} with video")
            if time.monotonic() > deadline:
                if not joining.done():
                    joining.cancel()
                    notes.append("join timeout: some viewers never got an answer")
                break
            if joining.done() and joining.exception() is not None:
                raise joining.exception()  # type: ignore[misc]
            await asyncio.sleep(0.1)
        await asyncio.sleep(plan.settle)
        await _caught_up(progress, notes)
        # A full collection over every peer's objects stalls the loop for tens of ms; objects
        # that exist now live until the end, so keep them out of the window's collections.
        gc.collect()
        gc.freeze()
        expected = plan.publishers if together else len(plan.watches())
        counter = target.forwarded_mark if isinstance(target, VecheTarget) else None
        result = await _window(
            plan, clip, source, viewers, server_pid, idle, progress, notes, expected, counter
        )
        if plan.record and isinstance(target, VecheTarget):
            progress.show("stopping the recording, waiting for the playback MP4")
            result.recording_ready_s = await target.stop_recording()
        result.hls_start_s = hls_start
        return result
    finally:
        for stop in stoppers:
            stop()
        if plan.record and isinstance(target, VecheTarget):
            await target.abandon_recording()
        gc.unfreeze()
        progress.show("leaving")
        await asyncio.gather(*(leave() for leave in leaves), return_exceptions=True)
        await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
        if source is not None:
            await source.close()
        progress.done()


async def _window(
    plan: Plan,
    clip: Clip,
    source: "SourceProcess | None",
    viewers: list[Viewer],
    server_pid: int | None,
    idle: proc.Usage | None,
    progress: Progress,
    notes: list[str],
    expected_viewers: int,
    counter: Callable[[], Awaitable[tuple[float, float]]] | None = None,
) -> Result:
    for v in viewers:
        v.delays.clear()
        v.unmatched = 0
    lags: list[float] = []
    watcher = asyncio.create_task(_watch_lag(lags))
    if source is not None:
        await source.window()
    mark0 = await counter() if counter is not None else None
    before = [(v.snapshot("video"), v.snapshot("audio")) for v in viewers]
    server0 = proc.usage(server_pid) if server_pid else None
    tool0 = proc.own_cpu()
    start = time.monotonic()
    end = start + plan.seconds
    while (now := time.monotonic()) < end:
        packets = sum(v.snapshot("video").packets + v.snapshot("audio").packets for v in viewers)
        packets -= sum(b[0].packets + b[1].packets for b in before)
        elapsed = max(now - start, 1e-3)
        cpu = ""
        if server0 is not None and server_pid:
            used = proc.usage(server_pid).cpu_seconds - server0.cpu_seconds
            cpu = f", server {used / elapsed * 100:.0f}% CPU"
        progress.show(
            f"measuring {elapsed:4.1f}/{plan.seconds:.0f} s: {packets / elapsed:,.0f} pkt/s{cpu}"
        )
        await asyncio.sleep(min(1.0, end - now))
    wall = time.monotonic() - start
    tool_cpu = (proc.own_cpu() - tool0) / wall * 100
    server1 = proc.usage(server_pid) if server_pid else None
    after = [(v.snapshot("video"), v.snapshot("audio")) for v in viewers]
    mark1 = await counter() if counter is not None else None
    watcher.cancel()
    report = await source.report() if source is not None else None
    if report is not None:
        zero = Snapshot(0, 0, 0, 0)
        # The source answers `report` when it gets to it: a busy one counted a little
        # longer than this window. Its counts are scaled to the window.
        scale = min(1.0, wall / report.seconds) if report.seconds > 0 else 1.0
        for probe in report.received:
            before.append((zero, zero))
            after.append((_scaled(probe["video"], scale), _scaled(probe["audio"], scale)))
        tool_cpu += report.cpu_seconds / max(report.seconds, wall) * 100

    # publishers watched, summed over viewers: the viewer connections, or on a Veche meeting
    # (one subscribe connection per participant) the video streams they receive
    feeds = sum(max(1, v1.streams) for _, (v1, _) in zip(before, after, strict=True))
    video_packets = audio_packets = bytes_ = expected = video_expected = 0
    video_received = video_frames = 0
    rates: list[float] = []
    for (v0, a0), (v1, a1) in zip(before, after, strict=True):
        vp, ap = v1.packets - v0.packets, a1.packets - a0.packets
        video_packets += vp
        audio_packets += ap
        bytes_ += v1.bytes - v0.bytes + a1.bytes - a0.bytes
        video_expected += v1.expected - v0.expected
        expected += v1.expected - v0.expected + a1.expected - a0.expected
        video_received += vp
        video_frames += v1.frames - v0.frames
        # per video stream: a meeting's subscriber may receive several publishers' video
        rates.append((v1.frames - v0.frames) / wall / max(1, v1.streams))
    packets = video_packets + audio_packets
    probes = report.probes if report else 0
    cpu_us = cpu_percent = rss_mb = recording_cpu = None
    server_pps = forwarding_us = None
    if mark0 is not None and mark1 is not None and mark1[0] > mark0[0]:
        server_pps = (mark1[1] - mark0[1]) / (mark1[0] - mark0[0])
    if server0 is not None and server1 is not None and idle is not None:
        used = server1.cpu_seconds - server0.cpu_seconds
        cpu_percent = used / wall * 100
        root = server1.root_cpu_seconds - server0.root_cpu_seconds
        if plan.record or plan.hls:  # the recording/programme process is the server's child
            recording_cpu = (used - root) / wall * 100
        if server_pps:
            forwarding_us = root / wall / server_pps * 1e6
        cpu_us = used / packets * 1e6 if packets else None
        peers = plan.publishers + len(viewers) + probes
        rss_mb = (server1.rss_bytes - idle.rss_bytes) / peers / 2**20
    joins = [
        (v.first_frame_at - v.joined_at) * 1000 for v in viewers if v.first_frame_at is not None
    ]
    if report is not None and source is not None:
        joins += source.join_ms
        delays = report.delays_ms
        lookups = len(delays) + report.unmatched
        if report.lag_ms_max > LAG_NOTE:
            notes.append(
                f"the source process stalled up to {report.lag_ms_max:.0f} ms: delays include it"
            )
    else:
        delays = [d * 1000 for v in viewers for d in v.delays]
        lookups = len(delays) + sum(v.unmatched for v in viewers)
    matched = len(delays)
    if lookups and matched / lookups < 0.5:
        notes.append("frames not matched to send times: the server re-encodes, delay not measured")
        delays = []
    limited = tool_cpu > TOOL_LIMIT
    if limited:
        notes.append(f"tool CPU {tool_cpu:.0f}% of a core: the tool may be the limit")
    lag_max = max(lags, default=0.0)
    if lag_max > LAG_NOTE and report is None:
        notes.append(f"the tool's event loop stalled up to {lag_max:.0f} ms: delays include it")
    lag_p99 = percentile(lags, 99) or 0.0
    if lag_p99 > TOOL_LAG_LIMIT:
        # Not its own CPU (see tool CPU %) but other work on its core: the viewers' sockets
        # then fill up while the loop waits, and loss or frame rate may be the tool's.
        notes.append(
            f"the tool's event loop was late by {lag_p99:.0f} ms (p99): other work on its "
            "core; loss and frame rate may be the tool's, not the server's"
        )
    threads = decoder_threads() + (report.decoder_threads if report else 0)
    if threads:
        notes.append(f"{threads} decoder threads alive in the tool: the receiver tap failed")
    return Result(
        server="",
        scenario=plan.scenario,
        codec=clip.codec,
        publishers=plan.publishers,
        viewers=len(viewers) + probes,
        feeds=feeds,
        seconds=round(wall, 2),
        server_cpu_us_per_packet=cpu_us,
        server_cpu_percent=cpu_percent,
        server_cpu_percent_per_viewer=(
            cpu_percent / feeds if cpu_percent is not None and feeds else None
        ),
        server_rss_mb_per_participant=rss_mb,
        forwarded_pps=packets / wall,
        forwarded_mbps=bytes_ * 8 / wall / 1e6,
        loss_percent=_loss(expected, packets),
        video_loss_percent=_loss(video_expected, video_received),
        video_fps=sum(rates) / len(rates) if rates else 0.0,
        video_fps_min=min(rates, default=0.0),
        clip_fps=clip.fps,
        video_frames=video_frames,
        audio_packets=audio_packets,
        viewers_without_video=sum(1 for v in viewers if v.first_frame_at is None)
        + max(0, expected_viewers - len(viewers) - probes)
        + (probes - len(source.join_ms) if source else 0),
        join_ms_p50=percentile(joins, 50),
        join_ms_p95=percentile(joins, 95),
        delay_ms_p50=percentile(delays, 50),
        delay_ms_p95=percentile(delays, 95),
        delay_matched_percent=matched / lookups * 100 if lookups else 0.0,
        tool_cpu_percent=tool_cpu,
        tool_lag_ms_p99=lag_p99,
        tool_lag_ms_max=lag_max,
        tool_limited=limited,
        decoder_threads=threads,
        notes=notes,
        recording_cpu_percent=recording_cpu,
        server_forwarded_pps=server_pps,
        forwarding_cpu_us_per_packet=forwarding_us,
    )


async def _caught_up(progress: Progress, notes: list[str]) -> None:
    """Wait until the tool has worked through what queued in its sockets during the joins
    (its sockets hold seconds of media): a backlog read inside the window would count more
    packets and frames than the window's length carries."""
    deadline = time.monotonic() + CATCH_UP_LIMIT
    while time.monotonic() < deadline:
        cpu0, wall0 = proc.own_cpu(), time.monotonic()
        await asyncio.sleep(CATCH_UP_SLICE)
        busy = (proc.own_cpu() - cpu0) / (time.monotonic() - wall0)
        if busy < CATCH_UP_BUSY:
            return
        progress.show(f"the tool catches up ({busy * 100:.0f}% CPU)")
    notes.append(
        f"the tool was still busy {CATCH_UP_LIMIT:.0f} s after the joins: counts may be high"
    )


async def _watch_lag(lags: list[float]) -> None:
    """How late the tool's event loop wakes a 10 ms timer, in ms: the tool's own stalls."""
    while True:
        start = time.monotonic()
        await asyncio.sleep(LAG_TICK)
        lags.append((time.monotonic() - start - LAG_TICK) * 1000)


def _scaled(counts: dict[str, int], scale: float) -> Snapshot:
    def part(name: str) -> int:
        return round(counts[name] * scale)

    return Snapshot(
        part("packets"), part("bytes"), part("frames"), part("expected"), counts.get("streams", 0)
    )


def _loss(expected: int, received: int) -> float:
    return max(0, expected - received) / expected * 100 if expected > 0 else 100.0
