"""The recordings pages over a real server: the lists show each recording's status, duration and
size; the playback page has the programme (a real MP4 rendered from captured tracks) and its
chapters by speaker; who may watch what; clear pages for unknown ids; both languages."""

import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from recording.renderer import render
from rooms.meeting import Meeting, new_id
from rooms.recordings import Recording, RecordingStatus
from server.recordings import programme_path
from tests.conftest import LiveServer
from tests.recording_fixtures import PEOPLE, make_media, record
from tests.sio_client import invite, make_meeting
from tests.test_pages import admin_cookie, get, page_config

# Each person speaks for 2.2 s: three chapters (the renderer shows the same speakers large).
SPEAKERS = (("p1", 0.0, 2.2), ("p2", 2.2, 4.4), ("p3", 4.4, 6.4))
STARTED = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
_built: list[tuple[Path, float]] = []


def recorded_programme(factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A recording directory (tracks, timeline, programme.mp4) made once per test process
    through the real capture path and renderer; (directory, programme duration)."""
    if not _built:
        directory = factory.mktemp("programme")
        medias = [make_media(person, seconds=6.0) for person in PEOPLE]
        record(directory, medias, speakers=SPEAKERS)
        result = render(directory, width=640, height=360, fps=15, preset="ultrafast")
        _built.append((directory, result.duration))
    return _built[0]


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """(status, body bytes, headers) of a GET with only the given headers."""
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers or {}) as response:
        return response.status, await response.read(), response.headers


@pytest.fixture
def programme(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    return recorded_programme(tmp_path_factory)


async def add_recording(
    server: LiveServer,
    meeting: Meeting,
    source: tuple[Path, float] | None = None,
    **fields: object,
) -> Recording:
    """A catalog row for `meeting`; with `source`, its files copied in and the row ready."""
    rec = Recording(
        id=new_id(),
        meeting_id=meeting.id,
        title=meeting.title,
        status=RecordingStatus.READY if source else RecordingStatus.RECORDING,
        started_at=STARTED,
        stopped_at=STARTED + timedelta(seconds=7) if source else None,
    )
    if source is not None:
        directory, duration = source
        target = programme_path(server.settings, rec).parent
        shutil.copytree(directory, target)
        rec = replace(rec, duration=duration, size=(target / "programme.mp4").stat().st_size)
    rec = replace(rec, **fields)  # type: ignore[arg-type]
    await server.store.add_recording(rec)
    return rec


async def test_a_meetings_recordings_list_shows_status_duration_and_size(
    live_server: LiveServer, programme: tuple[Path, float]
) -> None:
    meeting = await make_meeting(live_server, title="Педсовет <b>№ 3</b>")
    other = await make_meeting(live_server, title="Другая встреча")
    ready = await add_recording(live_server, meeting, programme)
    await add_recording(live_server, meeting, status=RecordingStatus.RENDERING, progress=42)
    await add_recording(
        live_server, meeting, status=RecordingStatus.FAILED, error="the disk is full"
    )
    await add_recording(live_server, other, status=RecordingStatus.RECORDING)
    cookie = await admin_cookie(live_server)

    status, html, _ = await get(
        f"{live_server.url}/meetings/{meeting.id}/recordings?lang=en", cookies=cookie
    )
    assert status == 200
    assert "Педсовет &lt;b&gt;№ 3&lt;/b&gt;" in html and "<b>№ 3" not in html
    assert "Ready" in html and "Rendering 42 %" in html
    assert "Failed" in html and "the disk is full" in html and "Render again" in html
    assert f"0:{round(ready.duration):02d}" in html
    assert f"{ready.size / 1e6:.1f} MB" in html
    assert f'href="/recordings/{ready.id}"' in html
    assert "Другая встреча" not in html
    assert page_config(html)["api"] == f"/api/recordings?meeting={meeting.id}"

    status, html, _ = await get(
        f"{live_server.url}/meetings/{meeting.id}/recordings?lang=ru", cookies=cookie
    )
    assert status == 200
    assert "Готова" in html and "Сборка 42 %" in html and "Ошибка" in html
    assert "Записи этой встречи" in html and "Хранить" in html

    # Across meetings, for the admin; the meetings list and the meeting's page link to them.
    status, html, _ = await get(f"{live_server.url}/recordings?lang=en", cookies=cookie)
    assert status == 200 and "Другая встреча" in html and "Recording now" in html
    assert html.count('class="rec-title"') == 4
    _, html, _ = await get(f"{live_server.url}/meetings?lang=en", cookies=cookie)
    assert 'href="/recordings"' in html
    _, html, _ = await get(f"{live_server.url}/meetings/{meeting.id}?lang=en", cookies=cookie)
    assert f'href="/meetings/{meeting.id}/recordings"' in html


async def test_the_lists_are_for_the_admin_and_the_meetings_host(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server)
    await add_recording(live_server, meeting)
    host = await invite(live_server, meeting, "Ольга", "host")
    member = await invite(live_server, meeting, "Анна", "participant")
    page = f"{live_server.url}/meetings/{meeting.id}/recordings"

    status, html, _ = await get(f"{page}?token={host}&lang=en")
    assert status == 200 and "Recording now" in html
    assert page_config(html)["token"] == host  # the page's API calls carry the host's link
    assert f"?token={host}" in html  # and so do its links to the playback pages

    status, html, _ = await get(f"{page}?token={member}&lang=en")
    assert status == 403 and "Not allowed" in html
    status, _, response = await get(page)
    assert status == 302 and response.headers["Location"].startswith("/login")
    status, _, response = await get(f"{live_server.url}/recordings")
    assert status == 302 and response.headers["Location"].startswith("/login")


async def test_the_playback_page_plays_the_programme_with_chapters(
    live_server: LiveServer, programme: tuple[Path, float]
) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    rec = await add_recording(live_server, meeting, programme)

    status, html, response = await get(f"{live_server.url}/recordings/{rec.id}", lang="ru-RU")
    assert status == 200
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert f'src="/api/recordings/{rec.id}/file"' in html
    assert f'href="/api/recordings/{rec.id}/file?download=1"' in html
    assert "Скачать MP4" in html and "Главы" in html
    chapters = page_config(html)["chapters"]
    assert [c["name"] for c in chapters] == ["Анна", "Boris", "Vera"]
    starts = [c["start"] for c in chapters]
    assert starts[0] == pytest.approx(0.0, abs=0.05)
    assert starts[1] == pytest.approx(2.2, abs=0.05) and starts[2] == pytest.approx(4.4, abs=0.05)
    for chapter in chapters:
        assert f'data-start="{chapter["start"]}"' in html
    assert html.index(">Анна<") < html.index(">Boris<") < html.index(">Vera<")

    status, html, _ = await get(f"{live_server.url}/recordings/{rec.id}?lang=en")
    assert status == 200 and "Download MP4" in html and "Chapters" in html

    # What the <video> asks for: a part of the file, answered with 206 and those bytes.
    status, body, headers = await fetch(
        f"{live_server.url}/api/recordings/{rec.id}/file", {"Range": "bytes=100-199"}
    )
    data = programme_path(live_server.settings, rec).read_bytes()
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"


async def test_an_unfinished_recording_says_so_instead_of_playing(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, visibility="public")
    running = await add_recording(live_server, meeting)
    failed = await add_recording(
        live_server, meeting, status=RecordingStatus.FAILED, error="no readable track"
    )
    status, html, _ = await get(f"{live_server.url}/recordings/{running.id}?lang=en")
    assert status == 200 and "not ready yet" in html and "<video" not in html
    status, html, _ = await get(f"{live_server.url}/recordings/{failed.id}?lang=ru")
    assert status == 200 and "Запись не удалось подготовить" in html
    assert "no readable track" in html and "<video" not in html


async def test_an_invite_only_recording_is_for_its_roster_and_the_admin(
    live_server: LiveServer, programme: tuple[Path, float]
) -> None:
    meeting = await make_meeting(live_server, title="Закрытое совещание")
    other = await make_meeting(live_server)
    rec = await add_recording(live_server, meeting, programme)
    member = await invite(live_server, meeting, "Анна", "participant")
    outsider = await invite(live_server, other, "Борис", "host")
    page = f"{live_server.url}/recordings/{rec.id}"

    for query in ("", f"?token={outsider}", "?token=not-a-token"):
        status, html, _ = await get(page + query, lang="en")
        assert status == 403, query
        assert "This recording is for the meeting" in html and "<video" not in html
        assert "Закрытое совещание" not in html  # not even the title
    status, html, _ = await get(page, lang="ru")
    assert status == 403 and "Эта запись — для участников встречи" in html

    status, html, _ = await get(f"{page}?token={member}")
    assert status == 200
    source = URL(page_config(html)["recording"]["file"])
    assert source.path == f"/api/recordings/{rec.id}/file"
    # The <video> cannot send a header: the member's link rides in the file's URL.
    assert f'src="/api/recordings/{rec.id}/file?token={member}"' in html
    status, body, _ = await fetch(f"{live_server.url}/api/recordings/{rec.id}/file?token={member}")
    assert status == 200 and body[4:8] == b"ftyp"

    status, html, _ = await get(page, cookies=await admin_cookie(live_server))
    assert status == 200 and f'src="/api/recordings/{rec.id}/file"' in html


@pytest.mark.parametrize("rid", ["nosuchrecording", "..%2F..%2Fetc%2Fpasswd", "%00"])
async def test_an_unknown_recording_gets_a_clear_page(live_server: LiveServer, rid: str) -> None:
    status, html, _ = await get(f"{live_server.url}/recordings/{rid}?lang=en")
    assert status == 404 and "Recording not found" in html
    status, html, _ = await get(f"{live_server.url}/recordings/{rid}?lang=ru")
    assert status == 404 and "Запись не найдена" in html
