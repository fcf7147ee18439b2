"""Track capture without re-encoding: RTP in, Matroska/WebM files out, and the timeline."""

import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from recording import bitstream, names
from recording.capture import Capture
from recording.errors import RecordingError
from recording.rtpframes import parse_rtp
from recording.timeline import FILE_NAME, Timeline, read_events
from recording.trackfile import TrackWriter
from tests.recording_fixtures import (
    PEOPLE,
    SPEAKERS,
    decode_audio,
    decode_video,
    people_media,
    record,
    reorder_a_little,
)

FPS = 15


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("recording")
    record(directory, list(people_media()), speakers=SPEAKERS)
    return directory


def test_every_track_has_a_file_of_the_right_length_that_decodes(recorded: Path) -> None:
    events = read_events(recorded / FILE_NAME)
    started = {e["file"]: e for e in events if e["event"] == "track_started"}
    stopped = {e["file"]: e for e in events if e["event"] == "track_stopped"}
    assert sorted(started) == sorted(
        f"{p.id}-{kind}"
        for p in PEOPLE
        for kind in ("mic.webm", f"cam.{'mkv' if p.codec == 'h264' else 'webm'}")
    )
    for media in people_media():
        person = media.person
        cam = (
            recorded
            / started[f"{person.id}-cam.{'mkv' if person.codec == 'h264' else 'webm'}"]["file"]
        )
        frames = decode_video(cam)
        assert len(frames) == media.video_frames
        assert (frames[0].width, frames[0].height) == (320, 180)
        last = float(frames[-1].time) + 1 / FPS
        assert abs(last - media.video_frames / FPS) <= 1 / FPS
        assert abs(stopped[cam.name]["duration"] - 3.0) <= 1 / FPS
        samples, start = decode_audio(recorded / f"{person.id}-mic.webm")
        assert start == 0.0
        assert abs(len(samples) / 48000 - media.audio_packets * 0.02) <= 0.02
        # The wall-clock mapping: each track starts when its person joined.
        assert started[cam.name]["t"] == pytest.approx(1_764_000_000.0 + person.joins, abs=0.01)
        assert started[cam.name]["clock_rate"] == 90000
    with av.open(str(recorded / "p2-cam.mkv")) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_reordered_packets_make_every_frame_and_a_loss_waits_for_a_keyframe(
    tmp_path: Path,
) -> None:
    media = people_media()[1]  # H.264: STAP-A and FU-A
    writer = TrackWriter(tmp_path / "shuffled.mkv", "h264")
    for data in reorder_a_little(media.video):
        writer.push_rtp(data)
    writer.close()
    assert writer.frames == media.video_frames and writer.lost == 0
    assert len(decode_video(tmp_path / "shuffled.mkv")) == media.video_frames

    # Lose one packet of frame 5: frames 5..14 are dropped, the keyframe at 15 resumes.
    frame_of = [round(at * FPS) for at, _ in media.video]
    lost_at = frame_of.index(5)
    writer = TrackWriter(tmp_path / "lossy.mkv", "h264")
    waited = False
    for index, (at, data) in enumerate(media.video):
        if index != lost_at:
            writer.push_rtp(data, arrival=at)
            waited = waited or (frame_of[index] == 10 and writer.wants_keyframe)
    writer.close()
    assert waited
    assert writer.lost == 1
    assert writer.frames == media.video_frames - 10
    frames = decode_video(tmp_path / "lossy.mkv")
    assert len(frames) == media.video_frames - 10
    # Timestamps keep their place: the frame after the hole is at 1 s.
    assert [round(float(f.time) * FPS) for f in frames][5] == 15


def test_a_pause_keeps_its_place_in_time(tmp_path: Path) -> None:
    media = people_media()[0]
    writer = TrackWriter(tmp_path / "paused.webm", "opus")
    for at, data in media.audio:
        if not 1.0 <= at < 2.0:  # muted for a second
            writer.push_rtp(data)
    writer.close()
    with av.open(str(tmp_path / "paused.webm")) as container:
        times = [float(p.pts * p.time_base) for p in container.demux(audio=0) if p.pts is not None]
    assert max(b - a for a, b in itertools.pairwise(times)) == pytest.approx(1.02, abs=0.001)
    assert times[-1] == pytest.approx(3.0, abs=0.021)


_WRITER = """
import pickle, sys, time
from pathlib import Path
from recording.trackfile import TrackWriter
packets = pickle.loads(Path(sys.argv[1]).read_bytes())
writer = TrackWriter(Path(sys.argv[2]), "vp8")
for at, data in packets:
    writer.push_rtp(data)
    if at >= 2.5:
        break
print("written", flush=True)
time.sleep(60)
"""


def test_a_writer_killed_by_sigkill_leaves_a_file_that_decodes(tmp_path: Path) -> None:
    media = people_media()[0]
    (tmp_path / "packets").write_bytes(pickle.dumps(media.video))
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path / "packets"), str(tmp_path / "cut.webm")],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
    )
    assert child.stdout is not None
    with child.stdout:
        try:
            assert child.stdout.readline().strip() == b"written"
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(10)
    frames = decode_video(tmp_path / "cut.webm")
    # Clusters close every second: at most about one second (plus the held frame) is lost.
    assert 1.4 <= float(frames[-1].time) <= 2.5
    assert all(f.width == 320 for f in frames)


def test_a_file_cut_short_decodes_up_to_near_the_cut(tmp_path: Path, recorded: Path) -> None:
    for name in ("p1-cam.webm", "p2-cam.mkv", "p1-mic.webm"):
        data = (recorded / name).read_bytes()
        cut_at = len(data) * 2 // 3
        with av.open(str(recorded / name)) as container:
            whole = [
                float(p.pts * p.time_base)
                for p in container.demux()
                if p.pts is not None and p.pos is not None and p.pos + p.size <= cut_at
            ]
        cut = tmp_path / name
        cut.write_bytes(data[:cut_at])
        if name.endswith("mic.webm"):
            samples, _ = decode_audio(cut)
            assert len(samples) / 48000 >= whole[-1]
        else:
            frames = decode_video(cut)
            assert float(frames[-1].time) >= whole[-1] - 1 / FPS


def test_a_full_disk_stops_that_track_only(tmp_path: Path) -> None:
    media = people_media()[0]
    full = TrackWriter(Path("/dev/full"), "opus")
    fine = TrackWriter(tmp_path / "fine.webm", "opus")
    with pytest.raises(RecordingError) as caught:
        for _, data in media.audio:
            fine.push_rtp(data)
            full.push_rtp(data)
    assert caught.value.code in ("write_failed", "open_failed")
    assert "/dev/full" in caught.value.message or "full" in caught.value.message
    with pytest.raises(RecordingError):
        full.push_rtp(media.audio[0][1])
    for _, data in media.audio[len(media.audio) // 2 :]:
        fine.push_rtp(data)
    fine.close()
    assert fine.frames > 0 and decode_audio(tmp_path / "fine.webm")[0]


def test_bad_input_is_refused_or_counted(tmp_path: Path) -> None:
    with pytest.raises(RecordingError) as caught:
        TrackWriter(tmp_path / "x.webm", "theora")
    assert caught.value.code == "unknown_codec"
    for bad in ("../../etc/passwd", "/etc/passwd", "..", ".hidden", "a/b", "", "x" * 101):
        with pytest.raises(RecordingError) as caught:
            names.check_name(bad)
        assert caught.value.code == "bad_name"
    capture = Capture(tmp_path / "rec")
    track = capture.open_track("p1", "../../etc/passwd", "camera", "vp8")
    assert track.writer.path.parent == tmp_path / "rec" and track.file == "etc_passwd.webm"
    with pytest.raises(RecordingError):
        capture.open_track("p1", "cam", "projector", "vp8")

    # Corrupt packets among good ones: counted, dropped, the file still decodes.
    media = people_media()[0]
    good = [data for _, data in media.video]
    garbage = [b"", b"\x80", b"\x00" * 40, good[3][:14], bytes(12) + b"\xff" * 30]
    broken = bytearray(good[20])
    broken[12:20] = b"\x00" * 8  # a VP8 payload descriptor with no data behind
    for data in garbage:
        track.push_rtp(data)
    for index, data in enumerate(good):
        track.push_rtp(bytes(broken) if index == 20 else data)
    capture.close()
    assert track.writer.malformed >= 3
    assert 0 < len(decode_video(track.writer.path)) < media.video_frames

    # A directory that is not there.
    lost = TrackWriter(tmp_path / "missing" / "x.webm", "opus")
    with pytest.raises(RecordingError) as caught:
        for _, data in people_media()[0].audio:
            lost.push_rtp(data)
    assert caught.value.code == "open_failed" and "x.webm" in caught.value.message
    assert not (tmp_path / "missing").exists()

    # An empty track: no file, no track in the timeline.
    empty = TrackWriter(tmp_path / "empty.webm", "vp8")
    empty.close()
    assert not (tmp_path / "empty.webm").exists() and empty.frames == 0
    with pytest.raises(ValueError):
        parse_rtp(b"\x80\x60\x00")


def test_the_timeline_survives_a_torn_last_line(tmp_path: Path) -> None:
    timeline = Timeline(tmp_path / FILE_NAME)
    timeline.joined("p1", "Анна", t=10.0)
    timeline.chat("p1", "Анна", "привет\nвсем", t=11.0)
    timeline.screen("p1", True, t=12.0)
    # Readable while still open (flushed per event).
    assert [e["event"] for e in read_events(tmp_path / FILE_NAME)] == ["joined", "chat", "screen"]
    timeline.close()
    with (tmp_path / FILE_NAME).open("a", encoding="utf-8") as file:
        file.write(json.dumps({"t": 13.0, "event": "left", "participant": "p1"})[:20])
    events = read_events(tmp_path / FILE_NAME)
    assert [e["event"] for e in events] == ["joined", "chat", "screen"]
    assert events[1]["text"] == "привет\nвсем" and events[0]["name"] == "Анна"
    # Appending after a crash goes on from a fresh line.
    again = Timeline(tmp_path / FILE_NAME)
    again.left("p1", t=14.0)
    again.close()
    assert read_events(tmp_path / FILE_NAME)[-1]["event"] in ("left", "screen")
    assert read_events(tmp_path / "missing.jsonl") == []
    with pytest.raises(RecordingError):
        again.left("p1")


def test_writing_costs_little(tmp_path: Path) -> None:
    media = people_media()[1]
    packets = [data for _, data in media.video] + [data for _, data in media.audio]
    writer_video = TrackWriter(tmp_path / "v.mkv", "h264")
    writer_audio = TrackWriter(tmp_path / "a.webm", "opus")
    begun = time.perf_counter()
    for _, data in media.video:
        writer_video.push_rtp(data)
    for _, data in media.audio:
        writer_audio.push_rtp(data)
    elapsed = time.perf_counter() - begun
    writer_video.close()
    writer_audio.close()
    print(f"capture: {elapsed / len(packets) * 1e6:.1f} µs per packet")


def test_a_new_rtp_stream_on_the_track_continues_the_file(tmp_path: Path) -> None:
    """A publisher restarting its sender (new SSRC, sequence and timestamp spaces) after a
    half-second pause: the file goes on, the pause keeps its length."""
    first, second = people_media()[0], people_media()[2]  # two VP8 streams, other SSRCs
    writer = TrackWriter(tmp_path / "restart.webm", "vp8")
    for at, data in first.video:
        writer.push_rtp(data, arrival=100.0 + at)
    for at, data in second.video:
        writer.push_rtp(data, arrival=100.0 + 3.0 + 0.5 + at)
    writer.close()
    frames = decode_video(tmp_path / "restart.webm")
    assert len(frames) == first.video_frames + second.video_frames
    times = [float(f.time) for f in frames]
    assert max(itertools.pairwise(times), key=lambda ab: ab[1] - ab[0]) == pytest.approx(
        (2.933, 3.5), abs=0.01
    )


def test_picture_sizes_come_from_the_bitstream() -> None:
    for profile, size in (("high", (200, 150)), ("baseline", (1920, 1080)), ("main", (98, 34))):
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = size
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, 30)
        encoder.profile = profile.capitalize()
        encoder.options = {"preset": "ultrafast"}
        frame = av.VideoFrame(*size, "yuv420p")
        frame.pts = 0
        data = b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])
        sps = next(u for u in bitstream.nal_units(data) if u[0] & 0x1F == bitstream.NAL_SPS)
        assert bitstream.h264_sps_size(sps) == size
    with pytest.raises(ValueError):
        bitstream.h264_sps_size(b"\x67\x42")
    assert bitstream.opus_samples(bytes([0xFC])) == 960  # CELT FB 20 ms, one frame
    assert bitstream.opus_samples(bytes([0x1B, 0x02])) == 2 * 2880  # SILK NB 60 ms, code 3 x2
    assert bitstream.opus_samples(b"") == 0
