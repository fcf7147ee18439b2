"""The load tool end to end: `python -m bench` against servers it starts itself.

Each broadcast (baseline, Janus, Veche) is 1 publisher -> 2 viewers for about 4 s; the JSON
line must show video frames and audio packets at every viewer, little loss, and a server CPU
cost per packet.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def tool_json(*args: str) -> dict[str, Any]:
    """Run the tool (args start with the scenario, then --server NAME); its JSON result."""
    done = run_tool(*args, "--seconds", "4", "--settle", "1", "--json", "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    table, line = done.stdout.strip().splitlines()[:-1], done.stdout.strip().splitlines()[-1]
    assert any(args[2] in row for row in table)
    [result] = json.loads(line)["results"]
    assert isinstance(result, dict)
    return result


def broadcast(server: str, codec: str) -> dict[str, Any]:
    return tool_json("broadcast", "--server", server, "--codec", codec, "-m", "2")


def check(result: dict[str, Any]) -> None:
    assert result["viewers"] == 2 and result["publishers"] == 1
    assert result["viewers_without_video"] == 0
    assert result["video_frames"] > 2 * 3 * 20  # two viewers, ~4 s, well below 30 fps
    assert result["audio_packets"] > 2 * 3 * 40  # Opus: 50 packets/s
    assert result["loss_percent"] < 5
    assert result["server_cpu_us_per_packet"] > 0
    assert result["server_rss_mb_per_participant"] is not None
    assert result["join_ms_p50"] is not None and result["join_ms_p50"] < 5000
    assert result["decoder_threads"] == 0  # the viewers' tap stopped aiortc's decoders


def test_baseline_broadcast() -> None:
    result = broadcast("baseline", "vp8")
    check(result)
    assert result["server"] == "baseline"
    # MediaRelay re-encodes: no frame can be matched to its send time.
    assert result["delay_ms_p50"] is None


@pytest.fixture
def janus_installed() -> None:
    if shutil.which("janus") is None or shutil.which("gcc") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must install Janus and gcc: apt-get install -y janus gcc")
        pytest.skip("janus or gcc not installed (apt-get install -y janus gcc)")


@pytest.mark.usefixtures("janus_installed")
def test_janus_broadcast_h264() -> None:
    result = broadcast("janus", "h264")
    check(result)
    assert result["server"] == "janus"
    # Janus forwards payloads untouched: frames match their send times, delay is measured.
    assert result["delay_matched_percent"] > 90
    assert result["delay_ms_p50"] is not None and result["delay_ms_p50"] < 50


@pytest.mark.usefixtures("janus_installed")
def test_janus_meeting_measured_in_one_process() -> None:
    """3 participants each watching the other two, without the source process: the main
    process publishes and its viewers measure the delay."""
    result = tool_json("meeting", "--server", "janus", "-n", "3", "--no-probe")
    assert result["publishers"] == 3 and result["viewers"] == 6
    assert result["viewers_without_video"] == 0
    assert result["loss_percent"] < 5
    assert result["video_frames"] > 6 * 3 * 20
    assert result["delay_matched_percent"] > 90
    assert result["decoder_threads"] == 0


def test_veche_broadcast() -> None:
    """The real `veche serve` as a subprocess, driven through its REST API and socket.io
    signaling: a meeting without lobby, a speaker publishing, two viewers on a guest link, and
    an HLS player (the broadcast programme process runs during the window)."""
    result = tool_json("broadcast", "--server", "veche", "--codec", "vp8", "-m", "2", "--hls")
    check(result)
    assert 0 < result["hls_start_s"] < 10
    assert result["recording_cpu_percent"] > 1  # the programme process decoded and encoded
    assert result["server"] == "veche"
    # Veche forwards payloads untouched: frames match their send times.
    assert result["delay_matched_percent"] > 90
    assert result["delay_ms_p50"] is not None and result["delay_ms_p50"] < 50


def test_veche_meeting() -> None:
    """3 participants on Veche, each one socket that publishes and answers its subscribe
    offers: every participant receives the other two, delays matched per publisher."""
    done = run_tool(
        "meeting",
        "--server",
        "veche",
        "-n",
        "3",
        "--seconds",
        "2",
        "--settle",
        "0.5",
        "--json",
        "--no-progress",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result] = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    assert result["publishers"] == 3 and result["viewers"] == 3 and result["feeds"] == 6
    assert result["viewers_without_video"] == 0
    assert result["loss_percent"] < 5
    assert result["video_frames"] > 6 * 1.5 * 20  # 6 feeds, ~2 s
    assert result["video_fps_min"] > 20  # per video stream, not per subscriber
    assert result["delay_matched_percent"] > 90
    assert result["decoder_threads"] == 0


def test_running_veche_needs_its_key() -> None:
    done = run_tool("broadcast", "--server", "veche", "--url", "http://127.0.0.1:9", timeout=20)
    assert done.returncode != 0
    assert "--api-key" in done.stderr


def test_external_server_needs_urls() -> None:
    done = run_tool("broadcast", "--server", "whip", "-m", "1", timeout=20)
    assert done.returncode != 0
    assert "--whip and --whep" in done.stderr
