"""What each scenario asks for, and when a sweep step counts as held."""

from dataclasses import replace

from bench.cli import parser, plans
from bench.run import Plan
from bench.stats import Result, percentile, table


def test_meeting_is_everyone_watching_everyone_else() -> None:
    [plan] = plans(parser().parse_args(["meeting", "-n", "4"]))
    watches = plan.watches()
    assert len(watches) == 4 * 3
    assert all(source != watcher for source, watcher in watches)
    assert {source for source, _ in watches} == {0, 1, 2, 3}


def test_source_process_takes_each_publishers_first_watch() -> None:
    [plan] = plans(parser().parse_args(["meeting", "-n", "3"]))
    load = plan.load_watches(probe=True)
    assert len(load) == len(plan.watches()) - 3
    assert sorted(source for source, _ in load) == [0, 1, 2]
    [broadcast] = plans(parser().parse_args(["broadcast", "-m", "5"]))
    assert len(broadcast.load_watches(probe=True)) == 4
    assert broadcast.load_watches(probe=False) == broadcast.watches()


def test_broadcast_and_sweep_plans() -> None:
    [plan] = plans(parser().parse_args(["broadcast", "-m", "7", "--seconds", "3"]))
    assert plan == Plan("broadcast", 1, 7, seconds=3, settle=2)
    assert plan.watches() == [(0, w) for w in range(7)]
    sweep = plans(parser().parse_args(["sweep", "--start", "10", "--step", "30", "--max", "100"]))
    assert [p.viewers_each for p in sweep] == [10, 40, 70, 100]


def result(**changes: object) -> Result:
    base = Result(
        server="janus",
        scenario="broadcast",
        codec="vp8",
        publishers=1,
        viewers=10,
        feeds=10,
        seconds=10.0,
        server_cpu_us_per_packet=30.0,
        server_cpu_percent=5.0,
        server_cpu_percent_per_viewer=0.5,
        server_rss_mb_per_participant=0.5,
        forwarded_pps=1600.0,
        forwarded_mbps=11.0,
        loss_percent=0.0,
        video_loss_percent=0.0,
        video_fps=30.0,
        video_fps_min=30.0,
        clip_fps=30,
        video_frames=3000,
        audio_packets=5000,
        viewers_without_video=0,
        join_ms_p50=90.0,
        join_ms_p95=95.0,
        delay_ms_p50=1.0,
        delay_ms_p95=2.0,
        delay_matched_percent=100.0,
        tool_cpu_percent=95.0,
        tool_limited=True,
        tool_lag_ms_p99=1.0,
        tool_lag_ms_max=2.0,
        decoder_threads=0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_held_needs_low_loss_full_rate_and_video_everywhere() -> None:
    assert result().held()
    assert not result(loss_percent=1.5).held()
    assert not result(video_fps_min=28.0).held()
    assert result(video_fps_min=28.6).held()
    assert not result(viewers_without_video=1).held()


def test_table_says_when_the_tool_was_the_limit() -> None:
    text = table([result(), result(server_cpu_us_per_packet=None, tool_limited=False)])
    first, second = text.splitlines()[2:4]
    assert "LIMIT" in first and "LIMIT" not in second
    assert " - " in second or "| -" in second


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0


def test_a_run_is_disturbed_when_the_tools_core_was_not_its_own() -> None:
    assert not result(tool_limited=False, tool_lag_ms_p99=10.0).disturbed()
    assert result(tool_limited=False, tool_lag_ms_p99=80.0).disturbed()
    assert result(tool_limited=True, tool_lag_ms_p99=1.0).disturbed()


def test_a_meeting_row_counts_subscribers_and_feeds() -> None:
    veche = result(server="veche", scenario="meeting", publishers=4, viewers=4, feeds=12)
    janus = result(scenario="meeting", publishers=4, viewers=12, feeds=12)
    rows = table([veche, janus]).splitlines()[2:4]
    assert "meeting 4 (4 subscr., 12 feeds)" in rows[0]
    assert "meeting 4 (12 subscr., 12 feeds)" in rows[1]


def test_veche_options() -> None:
    args = parser().parse_args(
        ["broadcast", "--server", "veche", "--url", "http://127.0.0.1:8080", "--api-key", "k"]
    )
    assert (args.server, args.url, args.api_key) == ("veche", "http://127.0.0.1:8080", "k")
