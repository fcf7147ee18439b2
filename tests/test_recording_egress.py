"""The recording process against a real server: aiortc publishers in a live meeting, the egress
(`python -m recording.egress`, started by server/recorder.py) joined as a hidden subscriber,
track files checked with PyAV, the timeline read back."""

import asyncio
import itertools
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import av
import jwt
import pytest

from recording.layout import Participant, Tile, layout
from recording.renderer import render
from recording.timeline import read_events
from rooms.meeting import Meeting, new_id
from rooms.recordings import Recording, RecordingStatus
from server.config import Settings
from server.context import LIVE
from server.namespace import MeetingNamespace
from server.recorder import Egress
from tests.conftest import LiveServer
from tests.media_clients import MeetingPeer, wait_for
from tests.media_clip import Clip
from tests.recording_fixtures import (
    PEOPLE,
    KnownPeer,
    close_to,
    decode_audio,
    decode_video,
    known_clip,
    rgb_at,
    tone_power,
)
from tests.sio_client import Client, invite, make_meeting

Joiner = Callable[..., Awaitable[MeetingPeer]]
FPS = 25  # the programme's (the egress's default)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
async def meeting(live_server: LiveServer) -> Meeting:
    made: Meeting = await make_meeting(live_server, settings={"lobby": False})
    return made


@pytest.fixture
async def join(
    live_server: LiveServer, meeting: Meeting, media_clip: Clip
) -> AsyncIterator[Joiner]:
    peers: list[MeetingPeer] = []

    async def joiner(name: str, role: str = "participant", **kwargs: Any) -> MeetingPeer:
        client = await Client.open(live_server.url)
        peer = MeetingPeer(client, media_clip, **kwargs)
        peers.append(peer)
        peer.token = await invite(live_server, meeting, name, role)
        ack = await client.join(token=peer.token)
        assert ack == {"ok": True, "status": "joined"}, ack
        return peer

    yield joiner
    for peer in peers:
        await peer.close()


def clean_keyframes(peer: MeetingPeer) -> None:
    """Answer keyframe requests by starting the clip's pictures over at its own keyframe (the
    timestamps go on). The test clip's ready-made answer is a frame of another encoding,
    after which its inter frames do not decode cleanly; a browser's encoder has no such
    problem, and these tests decode every frame the recorder wrote."""
    assert peer.publisher is not None
    track = peer.publisher.video
    original = track.recv
    frames = track._packets
    shift = 0

    async def recv() -> Any:
        nonlocal shift
        if track._keyframe_wanted:
            track._keyframe_wanted = False
            shift = track._index % len(frames)
        packet = await original()
        data = frames[(track._index - 1 - shift) % len(frames)].data
        clean = av.Packet(data)
        clean.pts, clean.time_base = packet.pts, packet.time_base
        return clean

    track.recv = recv  # type: ignore[method-assign]


LOOP = 2.4  # seconds of a known clip: LEAD dark and silent, then colour and tone


def edges(values: list[tuple[float, bool]]) -> list[float]:
    """The times at which `values` turn on, after having been off."""
    return [t for (_, was), (t, now) in itertools.pairwise(values) if now and not was]


def check_programme(path: Path, speaker: MeetingPeer, strip: list[MeetingPeer]) -> float:
    """Near the end, the layout's colours (the speaker large, the others in the strip in join
    order) and every tone in the sound; returns the A/V offset of the speaker's picture and tone
    starting again at their clip's second loop (the first picture may come later than the
    first onset: video waits for a keyframe)."""
    frames = decode_video(path)
    end = float(frames[-1].time)
    everyone = [speaker, *strip]
    tiles = layout([Participant(p.id, p.id, True) for p in everyone], speaker.id, None, 640, 360)
    colours = {peer.id: person.colour for peer, person in zip(everyone, PEOPLE, strict=True)}

    def shows(frame: Any, tile: Tile, height: int = 5) -> bool:
        x, y = tile.box.x + tile.box.width // 2, tile.box.y + tile.box.height // height
        return close_to(rgb_at(frame, x, y), colours[tile.participant])

    # Everyone's clip has a dark lead-in once a loop, each at their own time: some frame of
    # the last two seconds shows all three.
    last = [f for f in frames if end - 2.0 <= float(f.time)]
    assert any(all(shows(f, tile) for tile in tiles) for f in last), path
    samples, start = decode_audio(path)
    window = samples[int((end - 2.2 - start) * 48000) : int((end - 0.2 - start) * 48000)]
    off = max(tone_power(window, f) for f in (550.0, 800.0, 1200.0))
    for person in PEOPLE:
        assert tone_power(window, person.tone) > 30 * off, (person, path)
    # The speaker published first, alone: their picture and tone turn on together.
    large = next(t for t in tiles if t.large)
    lit = edges([(float(f.time), shows(f, large, 3)) for f in frames])
    step = 240  # 5 ms
    loud = [
        (start + i / 48000, max(abs(v) for v in samples[i : i + step]) > 0.1)
        for i in range(0, len(samples) - step, step)
    ]
    onsets = edges(loud)
    again = onsets[0] + LOOP  # her second loop; her first picture may come after the first
    picture = min(lit, key=lambda t: abs(t - again))
    sound = min(onsets, key=lambda t: abs(t - again))
    return picture - sound


async def add_recording(server: LiveServer, meeting: Meeting) -> Recording:
    recording = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.RECORDING,
        started_at=datetime.now(UTC),
        stopped_at=None,
    )
    await server.store.add_recording(recording)
    return recording


def state(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / "egress.json").read_text()))
    except (OSError, ValueError):
        return {}


def events(directory: Path, name: str) -> list[dict[str, Any]]:
    return [e for e in read_events(directory / "timeline.jsonl") if e["event"] == name]


def started_by(directory: Path) -> dict[str, str]:
    """participant/source -> file of each track_started."""
    return {
        f"{e['participant']}/{e['source']}": e["file"] for e in events(directory, "track_started")
    }


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams[0]) if p.size]


def decoded(path: Path) -> tuple[str, int, float]:
    """(codec, frames decoded, seconds from the first to the end of the last)."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        count, end = 0, 0.0
        for frame in container.decode(stream):
            count += 1
            assert isinstance(frame, av.VideoFrame | av.AudioFrame) and frame.time is not None
            if isinstance(frame, av.AudioFrame):
                end = max(end, frame.time + frame.samples / frame.sample_rate)
            else:
                end = max(end, frame.time + 1 / 30)
        return stream.codec_context.name, count, end


def programme(path: Path) -> tuple[list[str], int, float]:
    """(codecs, video frames decoded, seconds of video) of a programme file."""
    with av.open(str(path)) as container:
        codecs = sorted(s.codec_context.name for s in container.streams)
        count, end = 0, 0.0
        for frame in container.decode(video=0):
            count += 1
            end = max(end, float(frame.time or 0.0))
        return codecs, count, end


async def start(
    server: LiveServer, meeting: Meeting, prepare: Callable[[Path], None] | None = None
) -> tuple[Egress, Path]:
    recording = await add_recording(server, meeting)
    directory = server.settings.data_dir / "recordings" / recording.id
    if prepare is not None:
        directory.mkdir(parents=True)
        prepare(directory)
    egress = await Egress.start(server.settings, server.tokens, meeting.id, recording.id, directory)
    return egress, directory


async def recording(egress: Egress, directory: Path) -> None:
    """Until the egress has joined and says it records."""

    def log() -> str:
        path = directory / "egress.log"
        return path.read_text()[-2000:] if path.exists() else ""

    await wait_for(
        lambda: state(directory).get("state") == "recording" or not egress.running,
        within=15,
        explain=log,
    )
    assert state(directory) == {"state": "recording", "error": ""}, log()


async def test_egress_records_every_track_as_sent_and_follows_tracks(
    live_server: LiveServer, meeting: Meeting, join: Joiner, media_clip: Clip
) -> None:
    anna = await join("Anna", "host", audio_level=20)  # a loud microphone: she speaks
    boris = await join("Boris")
    egress, directory = await start(live_server, meeting)
    try:
        await recording(egress, directory)
        # Published after the recorder joined: its tracks start at the publishers' first frame.
        for peer in (anna, boris):
            await peer.publish()
            clean_keyframes(peer)
        await wait_for(lambda: len(started_by(directory)) == 4, within=5)
        vera = await join("Vera")  # a late joiner's tracks appear: her screen
        await vera.publish({"0": "microphone", "1": "screen"})
        clean_keyframes(vera)
        await wait_for(lambda: len(started_by(directory)) == 6, within=5)
        assert await anna.client.call("chat", {"text": "Начинаем"}) == {"ok": True}
        await asyncio.sleep(1.5)
        assert await boris.client.call("unpublish", {}) == {"ok": True}  # Boris's tracks end
        await wait_for(lambda: len(events(directory, "track_stopped")) == 2, within=5)
        await asyncio.sleep(2.0)
        assert egress.running
    finally:
        code = await egress.stop(timeout=20)
    assert code == 0, (directory / "egress.log").read_text()[-3000:]
    assert state(directory)["state"] == "done"

    # The recorder is hidden: nobody was told it joined, attendance does not count it.
    joined_ids = [p["id"] for p in anna.client.received["participant_joined"]]
    assert not any(i.startswith("rec-") for i in joined_ids)
    stays = await live_server.store.list_attendance(meeting.id)
    assert sorted(s.name for s in stays) == ["Anna", "Boris", "Vera"]

    timeline = read_events(directory / "timeline.jsonl")
    assert timeline[0]["event"] == "recording_started"
    assert timeline[0]["meeting"] == meeting.id
    assert timeline[-1] == {**timeline[-1], "event": "recording_stopped", "reason": "stopped"}
    names = {e["participant"]: e["name"] for e in events(directory, "joined")}
    assert names == {anna.id: "Anna", boris.id: "Boris", vera.id: "Vera"}
    assert {"participant": anna.id, "on": True}.items() <= events(directory, "speaking")[0].items()
    assert [(e["participant"], e["name"], e["text"]) for e in events(directory, "chat")] == [
        (anna.id, "Anna", "Начинаем")
    ]
    assert [(e["participant"], e["on"]) for e in events(directory, "screen")] == [
        (vera.id, True),
        (vera.id, False),
    ]
    files = started_by(directory)
    assert set(files) == {
        f"{p.id}/{s}" for p in (anna, boris) for s in ("microphone", "camera")
    } | {f"{vera.id}/microphone", f"{vera.id}/screen"}
    reports = {e["file"] for e in events(directory, "sender_report")}
    assert reports <= set(files.values()) and reports, "sender reports are logged per track"
    stopped = {e["file"]: e for e in events(directory, "track_stopped")}
    assert set(stopped) == set(files.values())
    assert all(e["error"] == "" for e in stopped.values())
    # Boris's tracks stopped while the others went on.
    boris_end = max(stopped[files[f"{boris.id}/{s}"]]["t"] for s in ("microphone", "camera"))
    assert boris_end < stopped[files[f"{anna.id}/camera"]]["t"] - 1.5

    # The live programme: H.264 + AAC, fast start (the index before the media), every frame
    # of the recording's span, and HLS closed.
    codecs, frames, seconds = programme(directory / "programme.mp4")
    assert codecs == ["aac", "h264"]
    span = timeline[-1]["t"] - timeline[0]["t"]
    assert abs(seconds - span) < 1.0, (seconds, span)
    assert abs(frames - seconds * 25) <= 3, (frames, seconds)
    head = (directory / "programme.mp4").read_bytes()[:200_000]
    assert 0 < head.find(b"moov") < head.find(b"mdat")
    assert "#EXT-X-ENDLIST" in (directory / "hls" / "index.m3u8").read_text()

    sent = {e.data for e in media_clip.video} | {e.data for e in media_clip.intra}
    for key, name in files.items():
        path = directory / name
        codec, frames, seconds = decoded(path)
        duration = stopped[name]["duration"]
        assert abs(seconds - duration) < 0.1, (key, seconds, duration)
        if not key.endswith("microphone"):
            assert codec == "vp8" and name.endswith(".webm")
            assert abs(frames - duration * 30) <= 4, (key, frames, duration)
            # Never re-encoded: every frame in the file is a frame the publisher sent.
            assert all(p in sent for p in packets(path)), key
        else:
            assert codec == "opus"
            assert abs(frames - duration * 50) <= 4, (key, frames, duration)
        assert duration > (1.5 if boris.id in key else 3.0), (key, duration)


async def test_a_known_meeting_in_the_programme_and_a_re_render_from_its_tracks(
    live_server: LiveServer, meeting: Meeting, tmp_path: Path
) -> None:
    """Three publishers of known colours and tones (VP8, H.264, VP8): the live programme and a
    re-render of the captured tracks both show the layout and hold the tones, in sync."""
    peers: list[KnownPeer] = []
    try:
        for person, level in zip(PEOPLE, (20, None, None), strict=True):
            client = await Client.open(live_server.url)
            peer = KnownPeer(client, known_clip(person), audio_level=level)
            peers.append(peer)
            await client.join(token=await invite(live_server, meeting, person.name, "participant"))
        anna, boris, vera = peers
        egress, directory = await start(live_server, meeting)
        try:
            await recording(egress, directory)
            await anna.publish()  # alone first: her second loop's onset is the sync test's
            await wait_for(lambda: len(started_by(directory)) == 1, within=5)
            await asyncio.sleep(LOOP + 1.2)
            await boris.publish()
            await vera.publish()
            await wait_for(lambda: len(started_by(directory)) == 6, within=5)
            await asyncio.sleep(2.5)
        finally:
            assert await egress.stop(timeout=20) == 0
    finally:
        for peer in peers:
            await peer.close()
    files = started_by(directory)
    assert files[f"{boris.id}/camera"].endswith(".mkv")
    assert decoded(directory / files[f"{boris.id}/camera"])[0] == "h264"
    offset = check_programme(directory / "programme.mp4", anna, [boris, vera])
    assert abs(offset) <= 0.08, offset
    # The same from the track files alone (what recovery after a crash does).
    result = render(directory, tmp_path / "again.mp4", width=640, height=360, fps=FPS)
    offset = check_programme(Path(result.output), anna, [boris, vera])
    assert abs(offset) <= 0.08, offset


async def test_egress_killed_leaves_readable_tracks(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    anna = await join("Anna", "host")
    egress, directory = await start(live_server, meeting)
    await recording(egress, directory)
    await anna.publish()
    clean_keyframes(anna)
    await wait_for(lambda: len(started_by(directory)) == 2, within=5)
    first = min(e["t"] for e in events(directory, "track_started"))
    await asyncio.sleep(3.0)
    os.kill(egress.pid, signal.SIGKILL)
    cut = datetime.now(UTC).timestamp()
    # Killed (asyncio reports 255 instead of -9 if its watcher lost the race to reap it).
    assert await egress.stop(timeout=5) in (-signal.SIGKILL, 255)
    assert not egress.running
    assert not events(directory, "recording_stopped")
    for key, name in started_by(directory).items():
        codec, frames, seconds = decoded(directory / name)
        assert codec in ("vp8", "opus")
        # Readable up to near the cut: at most the last cluster (1 s) and a frame are lost.
        assert seconds > cut - first - 1.6, (key, seconds, cut - first)
        assert frames > 0
    # The programme's fragments are playable up to the last whole one (2 s each).
    codecs, frames, seconds = programme(directory / "programme.fmp4")
    assert codecs == ["aac", "h264"]
    assert seconds > cut - first - 2.5, (seconds, cut - first)


async def test_a_track_that_cannot_be_written_stops_alone_and_the_end_stops_the_egress(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    anna = await join("Anna", "host")

    def unwritable(directory: Path) -> None:
        # Where Anna's camera file goes, a link into nowhere: creating the file fails.
        (directory / f"{anna.id}-cam.webm").symlink_to("/dev/null/nowhere")

    egress, directory = await start(live_server, meeting, unwritable)
    await recording(egress, directory)
    await anna.publish()
    clean_keyframes(anna)
    await wait_for(lambda: f"{anna.id}-cam.webm" in state(directory)["error"], within=5)
    await wait_for(lambda: len(started_by(directory)) == 1, within=5)
    await asyncio.sleep(1.0)
    assert egress.running and state(directory)["state"] == "recording"
    assert await anna.client.call("end", {}) == {"ok": True}
    assert await asyncio.wait_for(egress.wait(), 15) == 0
    assert state(directory)["state"] == "done"
    assert f"{anna.id}-cam.webm" in state(directory)["error"]
    assert events(directory, "recording_stopped")[0]["reason"] == "ended"
    assert list(started_by(directory)) == [f"{anna.id}/microphone"]
    codec, _, seconds = decoded(directory / started_by(directory)[f"{anna.id}/microphone"])
    assert codec == "opus" and seconds > 0.8
    assert (directory / "programme.mp4").stat().st_size > 0


async def test_egress_rejoins_after_its_connection_drops(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    anna = await join("Anna", "host")
    egress, directory = await start(live_server, meeting)
    try:
        await recording(egress, directory)
        await anna.publish()
        clean_keyframes(anna)
        await wait_for(lambda: len(events(directory, "track_started")) == 2, within=5)
        await asyncio.sleep(1.0)
        namespace = live_server.app[LIVE]
        assert isinstance(namespace, MeetingNamespace)
        live = namespace.live_meeting(meeting.id)
        assert live is not None
        await namespace.disconnect(live.sids[f"rec-{directory.name}"])
        # Back in: the tracks continue in new files.
        await wait_for(lambda: len(events(directory, "track_started")) == 4, within=8)
        assert len(events(directory, "track_stopped")) == 2
        await asyncio.sleep(1.0)
    finally:
        assert await egress.stop(timeout=20) == 0
    assert state(directory) == {"state": "done", "error": ""}
    files = [e["file"] for e in events(directory, "track_started")]
    assert sorted(files) == sorted(
        f"{anna.id}-{label}{suffix}.webm" for label in ("cam", "mic") for suffix in ("", "-2")
    )
    assert [e["participant"] for e in events(directory, "joined")] == [anna.id]
    for name in files:
        _, frames, seconds = decoded(directory / name)
        assert frames > 0 and seconds > 0.5, name


async def test_recorder_tokens_are_checked(
    live_server: LiveServer, meeting: Meeting, join: Joiner
) -> None:
    anna = await join("Anna", "host")
    recording = await add_recording(live_server, meeting)
    other = await make_meeting(live_server, title="Another meeting")
    tokens = live_server.tokens
    forged = jwt.encode(
        {
            "kind": "recorder",
            "mid": meeting.id,
            "sub": recording.id,
            "iss": "veche",
            "exp": datetime.now(UTC) + timedelta(hours=1),
        },
        "not the server's secret, but long enough for HS256",
        algorithm="HS256",
    )
    finished = await add_recording(live_server, meeting)
    await live_server.store.update_recording(replace(finished, status=RecordingStatus.READY))
    cases = [
        (tokens.recorder(other.id, recording.id), "bad_token"),  # the recording is not other's
        (tokens.recorder(meeting.id, "no-such-recording"), "bad_token"),
        (tokens.recorder(meeting.id, finished.id), "bad_token"),  # no longer recording
        (forged, "bad_token"),
        (tokens.invite(meeting.id, "rec-" + recording.id), "bad_token"),  # not a roster entry
    ]
    client = await Client.open(live_server.url)
    try:
        for token, code in cases:
            ack = await client.call("join", {"token": token})
            assert ack["error"]["code"] == code, (token, ack)
        # A meeting that is not live has nothing to record.
        other_recording = await add_recording(live_server, other)
        ack = await client.call("join", {"token": tokens.recorder(other.id, other_recording.id)})
        assert ack["error"]["code"] == "not_live", ack
        # The right token works on the same connection afterwards, and stays hidden.
        ack = await client.call("join", {"token": tokens.recorder(meeting.id, recording.id)})
        assert ack == {"ok": True, "status": "joined"}
        snapshot = await client.next("joined")
        assert snapshot["self"] == {"id": f"rec-{recording.id}", "kind": "recorder"}
        assert [p["name"] for p in snapshot["participants"]] == ["Anna"]
        # It may not chat or publish: it has no seat in the room.
        assert "error" in await client.call("chat", {"text": "hello"})
        assert await client.call("leave", {}) == {"ok": True}
    finally:
        await client.close()
    await asyncio.sleep(0.2)
    assert anna.client.unread("participant_joined") == []
    assert anna.client.unread("chat") == []
