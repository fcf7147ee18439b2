"""The pages as a person meets them: each renders in ru and en, admin pages need the key, bad
links give a clear page, and names from people are escaped in the HTML the server writes."""

import json
import logging
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from rooms.meeting import Meeting, new_meeting
from rooms.roles import Role
from rooms.roster import RosterEntry, new_entry
from server.config import Settings
from tests.conftest import LiveServer, start_server

EVIL = "<b>x</b><script>alert(1)</script>"


async def get(
    url: str, *, lang: str | None = None, cookies: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, str, aiohttp.ClientResponse]:
    headers = kwargs.pop("headers", {})
    if lang:
        headers["Accept-Language"] = lang
    if cookies:  # sent as a header: a cookie jar would keep what the server sets
        headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.request(
            kwargs.pop("method", "GET"), url, headers=headers, allow_redirects=False, **kwargs
        ) as response,
    ):
        return response.status, await response.text(), response


async def make_meeting(
    server: LiveServer, title: str = "Расширенное совещание", **fields: Any
) -> Meeting:
    meeting = new_meeting({"title": title, **fields})
    await server.store.create_meeting(meeting)
    return meeting


async def make_entry(
    server: LiveServer, meeting: Meeting, name: str = "Анна Петрова", role: str = "participant"
) -> RosterEntry:
    entry = new_entry(meeting.id, {"name": name, "role": role, "school": "Школа № 12"})
    await server.store.add_entry(entry)
    return entry


def page_config(html: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="veche-config">(.*?)</script>', html)
    assert found, "the page embeds its config"
    config: dict[str, Any] = json.loads(found.group(1))
    return config


async def admin_cookie(server: LiveServer) -> dict[str, str]:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            server.url + "/login", data={"key": server.settings.api_key}, allow_redirects=False
        ) as response,
    ):
        assert response.status == 302
        return {"veche_admin": response.cookies["veche_admin"].value}


async def test_login_page_speaks_the_chosen_language(live_server: LiveServer) -> None:
    status, html, response = await get(live_server.url + "/login?lang=ru")
    assert status == 200
    assert "Вход" in html and "API-ключ" in html and '<html lang="ru">' in html
    assert response.cookies["veche_lang"].value == "ru"

    status, html, _ = await get(live_server.url + "/login", lang="ru-RU,ru;q=0.9,en;q=0.5")
    assert "API-ключ" in html
    status, html, _ = await get(live_server.url + "/login", lang="de, en;q=0.8")
    assert "Sign in" in html and "API key" in html
    # The cookie set by the switch wins over the browser's language.
    status, html, _ = await get(live_server.url + "/login", lang="ru", cookies={"veche_lang": "en"})
    assert "API key" in html
    # The switch is on the page and keeps the page's own query.
    status, html, _ = await get(live_server.url + "/login?next=/meetings&lang=en")
    assert 'href="/login?next=/meetings&amp;lang=ru"' in html


async def test_wrong_api_key_shows_an_error_and_sets_no_cookie(live_server: LiveServer) -> None:
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            live_server.url + "/login?lang=en", data={"key": "not-the-key"}, allow_redirects=False
        ) as response,
    ):
        html = await response.text()
        assert response.status == 401
        assert "Wrong API key." in html
        assert "veche_admin" not in response.cookies


async def test_login_sets_a_strict_http_only_cookie_that_opens_the_meetings(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Совет директоров")
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.post(
            live_server.url + "/login",
            data={"key": live_server.settings.api_key, "next": "//evil.example/"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 302
        assert response.headers["Location"] == "/meetings"  # never an open redirect
        raw = response.headers["Set-Cookie"]
        assert "veche_admin=" in raw and "HttpOnly" in raw and "SameSite=Strict" in raw
        cookie = {"veche_admin": response.cookies["veche_admin"].value}

    status, html, _ = await get(live_server.url + "/meetings?lang=ru", cookies=cookie)
    assert status == 200
    assert "Совет директоров" in html and "Новая встреча" in html
    assert f'href="/meetings/{meeting.id}"' in html
    status, html, _ = await get(live_server.url + "/meetings?lang=en", cookies=cookie)
    assert "New meeting" in html and "Create meeting" in html

    status, _, response = await get(live_server.url + "/", cookies=cookie)
    assert (status, response.headers["Location"]) == (302, "/meetings")
    # Signing out is a POST (tests/test_security_http.py checks it ends the session).
    status, _, response = await get(live_server.url + "/logout", cookies=cookie, method="POST")
    assert status == 302 and response.cookies["veche_admin"].value == ""


async def test_admin_pages_need_the_cookie_or_a_host_link(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server)
    host = await make_entry(live_server, meeting, "Ольга Иванова", "host")
    member = await make_entry(live_server, meeting)
    url = live_server.url

    for path in ("/meetings", f"/meetings/{meeting.id}"):
        status, _, response = await get(url + path)
        assert status == 302
        assert response.headers["Location"].startswith("/login?next=")
    forged = {"veche_admin": live_server.tokens.invite(meeting.id, host.id)}
    status, _, _ = await get(url + "/meetings", cookies=forged)
    assert status == 302

    status, html, _ = await get(url + f"/meetings/{meeting.id}?token=garbage", lang="en")
    assert status == 401 and "This link does not work" in html
    member_token = live_server.tokens.invite(meeting.id, member.id)
    status, html, _ = await get(url + f"/meetings/{meeting.id}?token={member_token}", lang="en")
    assert status == 403 and "does not let you manage this meeting" in html
    other = await make_meeting(live_server, title="Другая")
    host_token = live_server.tokens.invite(meeting.id, host.id)
    status, _, _ = await get(url + f"/meetings/{other.id}?token={host_token}")
    assert status == 403

    status, html, _ = await get(url + f"/meetings/{meeting.id}?token={host_token}&lang=ru")
    assert status == 200
    assert "Список участников" in html and "Анна Петрова" in html and "Ольга Иванова" in html
    assert page_config(html)["token"] == host_token  # the page's API calls use it
    assert html.count(f"{live_server.url}/j/") >= 2  # a personal link per roster entry

    cookie = await admin_cookie(live_server)
    status, html, _ = await get(url + f"/meetings/{meeting.id}?lang=en", cookies=cookie)
    assert status == 200
    assert "Roster" in html and "Attendance" in html and "Download CSV" in html
    assert f'href="/api/meetings/{meeting.id}/attendance.csv"' in html
    assert page_config(html)["token"] is None  # the cookie authorizes the calls
    # Where external players and sites watch the broadcast.
    assert f'value="{live_server.url}/hls/{meeting.id}/index.m3u8"' in html
    assert f'value="{live_server.url}/whep/{meeting.id}"' in html
    status, html, _ = await get(url + "/meetings/nope", cookies=cookie, lang="en")
    assert status == 404 and "Meeting not found" in html


async def test_join_page_in_both_languages(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server)
    entry = await make_entry(live_server, meeting)
    token = live_server.tokens.invite(meeting.id, entry.id)

    status, html, _ = await get(live_server.url + f"/j/{token}", lang="ru")
    assert status == 200
    assert "Расширенное совещание" in html and "Войти" in html and "Ваше имя" in html
    assert re.search(r'id="name"[^>]*value="Анна Петрова"[^>]*readonly', html)
    status, html, _ = await get(live_server.url + f"/j/{token}?lang=en")
    assert "Join" in html and "Your name" in html and "Microphone" in html
    assert page_config(html)["room_url"] == f"/j/{token}/room"

    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    status, html, _ = await get(live_server.url + f"/j/{guest}")
    assert status == 200
    assert not re.search(r'id="name"[^>]*readonly', html)  # a guest names themselves


async def test_viewer_links_go_to_the_watch_page(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server)
    viewer = live_server.tokens.guest(meeting.id, Role.VIEWER)
    for path in (f"/j/{viewer}", f"/j/{viewer}/room"):
        status, _, response = await get(live_server.url + path)
        assert status == 302
        assert response.headers["Location"] == f"/watch/{meeting.id}?token={viewer}"
    status, html, _ = await get(live_server.url + f"/watch/{meeting.id}?token={viewer}&lang=ru")
    assert status == 200 and "Трансляция появится здесь" in html and "Чат" in html
    # The viewer page receives media (the same scripts) but has nothing to publish with: the
    # controls wait in a template until a moderator gives the viewer the floor.
    assert "Только звук" in html and "/static/media.js" in html and "/static/tiles.js" in html
    speak = re.search(r'<template id="speak-controls">(.*?)</template>', html, re.S)
    assert speak and "Вам дали слово" in speak[1]
    outside = html.replace(speak[0], "")
    for control in ("mic-toggle", "camera-toggle", "screen-toggle", "devices-toggle"):
        assert f'id="{control}"' in speak[1] and f'id="{control}"' not in outside


async def test_room_page_in_both_languages(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server)
    host = await make_entry(live_server, meeting, "Ольга Иванова", "host")
    token = live_server.tokens.invite(meeting.id, host.id)
    status, html, _ = await get(live_server.url + f"/j/{token}/room?lang=ru")
    assert status == 200
    for words in ("Участники", "Чат", "Поднять руку", "Ждём, когда модератор впустит вас"):
        assert words in html
    assert '<script src="/vendor/socket.io.min.js"></script>' in html
    config = page_config(html)
    assert config["token"] == token and config["namespace"] == "/meeting"
    assert config["admin_url"] == f"/meetings/{meeting.id}?token={token}"
    assert config["strings"]["Raise hand"] == "Поднять руку"
    for words in ("Показать экран", "Устройства", "Только звук"):
        assert words in html
    assert config["strings"]["Video paused: slow connection"] == (
        "Видео приостановлено: медленная связь"
    )
    for script in ("media.js", "devices.js", "tiles.js", "local.js", "room.js"):
        assert f'src="/static/{script}?v=' in html
    status, html, _ = await get(live_server.url + f"/j/{token}/room?lang=en")
    for words in ("Participants", "Chat", "Raise hand", "Waiting for a moderator to let you in"):
        assert words in html
    status, script, _ = await get(live_server.url + "/vendor/socket.io.min.js")
    assert status == 200 and "io" in script


async def test_watch_page_without_a_token(live_server: LiveServer) -> None:
    public = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    closed = await make_meeting(live_server, title="Закрытое")
    status, html, _ = await get(live_server.url + f"/watch/{public.id}?lang=ru")
    assert status == 200 and "Открытое заседание" in html and 'id="name-form"' in html
    status, html, _ = await get(live_server.url + f"/watch/{public.id}?lang=en")
    assert "Watch" in html and "Your name" in html
    status, html, _ = await get(live_server.url + f"/watch/{closed.id}?lang=en")
    assert status == 401 and "needs an invitation" in html and "Закрытое" not in html
    status, html, _ = await get(live_server.url + "/watch/nope?lang=en")
    assert status == 404 and "Meeting not found" in html


@pytest.mark.parametrize("page", ["/j/{token}", "/j/{token}/room"])
async def test_bad_links_give_a_clear_page(live_server: LiveServer, page: str) -> None:
    meeting = await make_meeting(live_server)
    entry = await make_entry(live_server, meeting)
    expired = live_server.tokens.invite(meeting.id, entry.id, ttl=timedelta(seconds=-5))
    status, html, response = await get(live_server.url + page.format(token=expired), lang="en")
    assert status == 401
    assert response.content_type == "text/html"
    assert "This link does not work" in html and "Traceback" not in html
    status, html, _ = await get(live_server.url + page.format(token="x.y.z"), lang="ru")
    assert status == 401 and "Ссылка не работает" in html

    withdrawn = await make_entry(live_server, meeting, "Пётр")
    token = live_server.tokens.invite(meeting.id, withdrawn.id)
    await live_server.store.delete_entry(meeting.id, withdrawn.id)
    status, html, _ = await get(live_server.url + page.format(token=token), lang="en")
    assert status == 401 and "This invitation was withdrawn" in html

    token = live_server.tokens.invite(meeting.id, entry.id)
    await live_server.store.delete_meeting(meeting.id)
    status, html, _ = await get(live_server.url + page.format(token=token), lang="en")
    assert status == 404 and "Meeting not found" in html


async def test_names_are_escaped_in_server_written_html(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title=EVIL)
    entry = await make_entry(live_server, meeting, EVIL, "host")
    token = live_server.tokens.invite(meeting.id, entry.id)
    cookie = await admin_cookie(live_server)
    pages = [
        (f"/j/{token}", None),
        (f"/j/{token}/room", None),
        (f"/meetings/{meeting.id}", cookie),
        ("/meetings", cookie),
    ]
    for path, cookies in pages:
        status, html, response = await get(live_server.url + path, cookies=cookies)
        assert status == 200, path
        assert "<b>x</b>" not in html and "<script>alert" not in html, path
        assert "&lt;b&gt;x&lt;/b&gt;&lt;script&gt;" in html, path
        # A script that slipped past escaping still could not run: only our files may.
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert page_config(html)["lang"] in ("ru", "en")
    status, html, _ = await get(live_server.url + f"/j/{token}/room")
    assert page_config(html)["title"] == EVIL  # the JSON blob is parsed, not HTML


async def test_missing_npm_packages_are_said_plainly(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    empty = tmp_path / "no_node_modules"
    caplog.set_level(logging.WARNING, logger="web.assets")
    server, runner = await start_server(replace(settings, extra={"assets_dir": str(empty)}))
    try:
        assert any("npm ci" in record.getMessage() for record in caplog.records)
        meeting = await make_meeting(server)
        entry = await make_entry(server, meeting)
        token = server.tokens.invite(meeting.id, entry.id)
        status, html, _ = await get(server.url + f"/j/{token}/room?lang=en")
        assert status == 200 and "run npm ci" in html
        status, html, _ = await get(server.url + f"/j/{token}/room?lang=ru")
        assert "выполните npm ci" in html
        status, script, _ = await get(server.url + "/vendor/socket.io.min.js")
        assert status == 404 and "npm ci" in script
    finally:
        await runner.cleanup()
