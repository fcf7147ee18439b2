"""After the stop a recording checks its live programme against its tracks; one that fell short
is rendered again from the tracks before it is ready, the room sees the progress and the API
the check (`quality`); one that did not is ready at once. Real server, SQLite, the real render
process, track files written by the real capture path (tests/recording_fixtures.py).

The recording process has done its part here already: its files are made beforehand (a live
programme, and a card log that says when it showed whom as a name card), and the service
finishes the recording as when the process has exited cleanly."""

import json
from datetime import UTC, datetime
from typing import Any

from recording.quality import CARDS
from recording.renderer import render
from rooms.meeting import Meeting, new_id
from rooms.recordings import Recording, RecordingStatus
from server.context import RECORDINGS
from server.recordings import Recordings, _Active
from tests.conftest import LiveServer
from tests.recording_fixtures import people_media, record
from tests.sio_client import Client, invite, make_meeting
from tests.test_pages import admin_cookie, get


class Exited:
    """The handle of a recording process that has exited cleanly (status 0)."""

    running = False

    async def stop(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 (the contract's)
        return 0


async def finished(server: LiveServer, meeting: Meeting, cards: dict[str, Any]) -> str:
    """A recording of `meeting` whose process has just left its files: three people's tracks,
    a live programme (here rendered from them) and `cards` as its card log; then finished by
    the service as after a stop. Returns its id."""
    rec = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.FINISHING,
        started_at=datetime.now(UTC),
        stopped_at=datetime.now(UTC),
    )
    directory = server.settings.data_dir / "recordings" / rec.id
    record(directory, list(people_media()))
    render(directory, width=320, height=180, fps=15, preset="ultrafast")
    (directory / CARDS).write_text(json.dumps({"duration": 3.7, "cards": cards}))
    await server.store.add_recording(rec)
    service = server.app[RECORDINGS]
    assert isinstance(service, Recordings)
    service._watched[rec.id] = meeting.id
    await service._finish(_Active(rec, Exited(), ""), failed=False)
    return rec.id


async def test_a_programme_that_fell_short_is_rendered_from_the_tracks_before_it_is_ready(
    live_server: LiveServer,
) -> None:
    meeting: Meeting = await make_meeting(live_server, settings={"lobby": False})
    host = await Client.open(live_server.url)
    try:
        await host.join(token=await invite(live_server, meeting, "Ольга", "host"))
        # p1's camera held pictures all along, yet the live programme showed a card for 2 s.
        rid = await finished(live_server, meeting, {"p1": [[1.0, 3.0]]})
        status, body = await live_server.api("GET", f"/api/recordings/{rid}")
        assert body["status"] == "rendering" and body["progress"] is not None, body

        def rendering(data: dict[str, Any]) -> bool:
            return data.get("id") == rid and isinstance(data.get("rendering"), int)

        first = await host.until("recording", rendering, wait=20)
        assert first["on"] is False, first
        last = await host.until("recording", lambda d: d.get("rendering", 0) is None, wait=60)
        assert last == {"on": False, "id": rid, "notice": "", "error": None, "rendering": None}
    finally:
        await host.close()
    status, body = await live_server.api("GET", f"/api/recordings/{rid}")
    assert status == 200 and body["status"] == "ready", body
    quality = body["quality"]
    assert quality["re_rendered"] is True and 1.6 <= quality["seconds"] <= 2.4, quality
    assert 0.4 < quality["share"] < 0.7, quality
    assert body["error"] == "" and body["duration"] > 3, body
    # The render from the tracks is the programme now (1280x720, not the live 320x180).
    directory = live_server.settings.data_dir / "recordings" / rid
    assert json.loads((directory / "render.json").read_text())["state"] == "done"
    # The admin's list says so.
    cookie = await admin_cookie(live_server)
    page = f"{live_server.url}/meetings/{meeting.id}/recordings?lang=ru"
    status, html, _ = await get(page, cookies=cookie)
    assert status == 200 and "заново собрана из дорожек" in html


async def test_a_programme_that_showed_everyone_is_ready_at_once(live_server: LiveServer) -> None:
    meeting: Meeting = await make_meeting(live_server, settings={"lobby": False})
    # Cards only before each camera began: nothing was lost.
    rid = await finished(live_server, meeting, {"p2": [[0.0, 0.3]], "p3": [[0.0, 0.6]]})
    status, body = await live_server.api("GET", f"/api/recordings/{rid}")
    assert status == 200 and body["status"] == "ready", body
    assert body["quality"] == {"seconds": 0.0, "share": 0.0, "re_rendered": False}, body
    directory = live_server.settings.data_dir / "recordings" / rid
    assert not (directory / "render.json").exists()
