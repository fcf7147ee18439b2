"""One run's numbers, and how they are printed: a table for people, a JSON line for scripts."""

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

TOOL_LIMIT = 90.0  # % of one core: above it the tool, not the server, may be the limit
# ms, p99 of how late the tool's 10 ms timer fired: above it other work held the tool's core
TOOL_LAG_LIMIT = 50.0


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Result:
    server: str
    scenario: str
    codec: str
    publishers: int
    viewers: int  # viewer sessions (receive-only peer connections)
    feeds: int  # publishers watched, summed over the viewer sessions
    seconds: float  # length of the steady window
    server_cpu_us_per_packet: float | None
    server_cpu_percent: float | None  # of one core
    server_cpu_percent_per_viewer: float | None
    server_rss_mb_per_participant: float | None  # per peer connection, above the idle server
    forwarded_pps: float
    forwarded_mbps: float
    loss_percent: float
    video_loss_percent: float
    video_fps: float  # mean over viewers
    video_fps_min: float
    clip_fps: int
    video_frames: int
    audio_packets: int
    viewers_without_video: int
    join_ms_p50: float | None
    join_ms_p95: float | None
    delay_ms_p50: float | None
    delay_ms_p95: float | None
    delay_matched_percent: float  # frames whose send time was found (0: server re-encodes)
    tool_cpu_percent: float
    tool_limited: bool
    tool_lag_ms_p99: float  # how late the tool's event loop ran a 10 ms timer
    tool_lag_ms_max: float
    decoder_threads: int
    notes: list[str] = field(default_factory=list)
    # With the meeting recorded (--record): the server's child processes (the recording
    # process) in % of a core, and seconds from the stop until the playback MP4 was ready.
    recording_cpu_percent: float | None = None
    recording_ready_s: float | None = None
    # With an HLS player (--hls): seconds from the first playlist request to a listed segment;
    # the programme process's CPU is then recording_cpu_percent (the server's children).
    hls_start_s: float | None = None
    # Veche's own count of the RTP packets it forwarded (/metrics), the recording process's
    # feeds included, and the forwarding process's CPU per such packet.
    server_forwarded_pps: float | None = None
    forwarding_cpu_us_per_packet: float | None = None

    def held(self, max_loss: float = 1.0, min_fps_ratio: float = 0.95) -> bool:
        """Loss at most `max_loss`% and every viewer at `min_fps_ratio` of the clip's rate."""
        return (
            self.viewers_without_video == 0
            and self.loss_percent <= max_loss
            and self.video_fps_min >= min_fps_ratio * self.clip_fps
        )

    def disturbed(self) -> bool:
        """The tool, not the server, may have limited this run."""
        return self.tool_limited or self.tool_lag_ms_p99 > TOOL_LAG_LIMIT

    def as_json(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _scenario(r: Result) -> str:
    if r.scenario == "meeting":
        recorded = ", recorded" if r.recording_cpu_percent is not None else ""
        return f"meeting {r.publishers} ({r.viewers} subscr., {r.feeds} feeds{recorded})"
    hls = " + HLS" if r.hls_start_s is not None else ""
    return f"{r.scenario} {r.publishers}->{r.viewers}{hls}"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


COLUMNS = (
    ("server", lambda r: r.server),
    ("scenario", lambda r: _scenario(r)),
    ("codec", lambda r: r.codec),
    ("µs CPU/pkt", lambda r: _num(r.server_cpu_us_per_packet)),
    ("server CPU %", lambda r: _num(r.server_cpu_percent)),
    ("%/viewer", lambda r: _num(r.server_cpu_percent_per_viewer, 2)),
    ("pkt/s", lambda r: _num(r.forwarded_pps, 0)),
    ("Mbit/s", lambda r: _num(r.forwarded_mbps)),
    ("loss %", lambda r: _num(r.loss_percent, 2)),
    ("fps mean/min", lambda r: f"{r.video_fps:.1f}/{r.video_fps_min:.1f}"),
    ("join ms p50/p95", lambda r: f"{_num(r.join_ms_p50, 0)}/{_num(r.join_ms_p95, 0)}"),
    ("delay ms p50/p95", lambda r: f"{_num(r.delay_ms_p50)}/{_num(r.delay_ms_p95)}"),
    ("RSS MB/peer", lambda r: _num(r.server_rss_mb_per_participant, 2)),
    ("tool CPU %", lambda r: _num(r.tool_cpu_percent, 0) + (" LIMIT" if r.tool_limited else "")),
)


def table(results: list[Result]) -> str:
    rows = [[name for name, _ in COLUMNS]]
    rows += [[cell(r) for _, cell in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [" | ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"  {r.server} {r.scenario}: {n}" for r in results for n in r.notes]
    notes += [
        f"  {r.server} {r.scenario}: recording process {_num(r.recording_cpu_percent)}% of a "
        f"core; playback MP4 ready {_num(r.recording_ready_s)} s after the stop; forwarding "
        f"process {_num(r.forwarding_cpu_us_per_packet)} µs per packet it forwarded "
        f"({_num(r.server_forwarded_pps, 0)} pkt/s, the recorder's feeds included)"
        for r in results
        if r.recording_cpu_percent is not None and r.hls_start_s is None
    ]
    notes += [
        f"  {r.server} {r.scenario}: HLS programme process {_num(r.recording_cpu_percent)}% "
        f"of a core; first playlist with a segment {_num(r.hls_start_s)} s after the first "
        f"request; forwarding process {_num(r.forwarding_cpu_us_per_packet)} µs per packet "
        f"it forwarded ({_num(r.server_forwarded_pps, 0)} pkt/s, the programme's feeds included)"
        for r in results
        if r.hls_start_s is not None
    ]
    return "\n".join(lines + notes)


def json_line(results: list[Result], **extra: Any) -> str:
    return json.dumps({"results": [r.as_json() for r in results], **extra})
