"""The HTTP and signaling edges hold against a careful attacker and an unlucky operator (issue 11):
malformed frames, huge polling bodies, odd dates and text, chunked bodies, key guessing,
sessions, file modes and /metrics — each against a real server on loopback with a real SQLite
file."""

import asyncio
import json
import logging
import stat
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from server.config import Settings
from tests.apiclient import bearer, call
from tests.conftest import LiveServer, start_server
from tests.sio_client import Client, invite, make_meeting

ENGINE = "/socket.io/?EIO=4&transport="


# --- row 6: malformed socket.io frames ---------------------------------------------------------


async def _engine_socket(http: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    """A raw Engine.IO websocket with the /meeting namespace connected."""
    ws = await http.ws_connect(url.replace("http", "ws", 1) + ENGINE + "websocket")
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{"), opened
    await ws.send_str("40/meeting,")
    connected = await ws.receive_str(timeout=5)
    assert connected.startswith("40/meeting,"), connected
    return ws


MALFORMED = [
    '42/meeting,["chat", {"text": "unclosed"}',
    "42/meeting,{not json",
    "49/meeting,[]",
    '43/meeting,7["ack"',
    "4x",
    '45-/meeting,{"_placeholder":true',
    '44/meeting,{"message":"a client does not send errors"}',
]


async def test_a_malformed_frame_closes_its_connection_with_one_short_log_line(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with aiohttp.ClientSession() as http:
        for frame in MALFORMED:
            ws = await _engine_socket(http, live_server.url)
            caplog.clear()
            await ws.send_str(frame)
            # The connection is closed at once: a client that sends garbage is broken or hostile.
            while True:
                message = await asyncio.wait_for(ws.receive(), 3)
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
                # Engine.IO's close ("1"), a ping, or socket.io's disconnect ("41"), nothing else.
                assert message.type == aiohttp.WSMsgType.TEXT, (frame, message)
                assert message.data in ("1", "2") or message.data.startswith("41"), (frame, message)
            await ws.close()
            await asyncio.sleep(0.05)
            records = [r for r in caplog.records if r.levelno >= logging.WARNING]
            logged = "".join(r.getMessage() for r in records)
            assert all(r.exc_info is None for r in records), (frame, logged)
            assert "Traceback" not in caplog.text and len(logged) < 400, (frame, logged)
    # Everyone else is still served.
    client = await Client.open(live_server.url)
    assert (await client.call("chat", {"text": "hi"}))["error"]["code"] == "not_joined"
    await client.close()


async def test_engine_io_garbage_is_logged_in_a_line_at_most_once_a_second(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    url = live_server.url.replace("http", "ws", 1) + ENGINE + "websocket"
    async with aiohttp.ClientSession() as http:
        # A message Engine.IO cannot decode at all closes the connection (before: a 2 KB
        # traceback and an HTTP 500 written into the websocket).
        for garbage in ("x", ""):
            ws = await http.ws_connect(url)
            await ws.receive_str(timeout=5)
            caplog.clear()
            await ws.send_str(garbage)
            message = await asyncio.wait_for(ws.receive(), 3)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), message
            await ws.close()
            assert "Traceback" not in caplog.text and len(caplog.text) < 400, caplog.text
        # An unknown packet type, a hundred times: Engine.IO goes on reading; its complaint is
        # one line a second, not a traceback each.
        ws = await http.ws_connect(url)
        await ws.receive_str(timeout=5)
        caplog.clear()
        for _ in range(100):
            await ws.send_str("9")
        await asyncio.sleep(0.3)
        await ws.close()
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(records) <= 2 and all(r.exc_info is None for r in records), caplog.text
    assert "Traceback" not in caplog.text


# --- row 8: a polling POST of 50 MB ------------------------------------------------------------


async def _polling_sid(url: str) -> str:
    status, text, _ = await call(url, "GET", ENGINE + "polling")
    assert status == 200 and text.startswith("0{"), text
    return str(json.loads(text[1:])["sid"])


async def _post_endlessly(url: str, path: str, headers: str, chunk: bytes) -> bytes:
    """Send a POST whose body goes on and on; return what the server answered (b'' for a
    closed connection) within 5 s."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())

    async def send() -> None:
        for _ in range(50 * 1024 * 1024 // len(chunk)):
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.ensure_future(send())
    try:
        answer = await asyncio.wait_for(reader.read(4096), 5)
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return answer


async def test_a_huge_polling_post_is_refused_at_once(live_server: LiveServer) -> None:
    sid = await _polling_sid(live_server.url)
    path = f"{ENGINE}polling&sid={sid}"
    kind = "Content-Type: text/plain;charset=UTF-8\r\n"
    announced = await _post_endlessly(
        live_server.url, path, f"{kind}Content-Length: {50 * 1024 * 1024}\r\n", b"x" * 65536
    )
    assert announced.startswith(b"HTTP/1.1 413"), announced[:200]
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    chunked = await _post_endlessly(
        live_server.url, path, f"{kind}Transfer-Encoding: chunked\r\n", chunk
    )
    assert chunked.startswith(b"HTTP/1.1 413"), chunked[:200]
    # A polling client that keeps to the limits still talks.
    fine = await _polling_sid(live_server.url)
    status, text, _ = await call(
        live_server.url, "POST", f"{ENGINE}polling&sid={fine}", data="40/meeting,"
    )
    assert (status, text) == (200, "OK")


# --- row 9: dates at the ends of the calendar, lone surrogates, control characters ------------


def raw_json(text: str) -> dict[str, Any]:
    """A body sent exactly as written (escapes such as \\ud800 reach the server's parser)."""
    return {"data": text.encode(), "headers": {"Content-Type": "application/json"}}


async def test_odd_dates_and_text_are_refused_or_cleaned_never_a_500(
    live_server: LiveServer,
) -> None:
    for starts_at in (
        "9999-12-31T23:00:00-05:00",
        "0001-01-01T00:30:00+01:00",
        "9999-12-31T23:59:59",
        "0001-01-01T00:00:00Z",
    ):
        status, body = await live_server.api(
            "POST", "/api/meetings", json={"title": "x", "starts_at": starts_at}
        )
        assert (status, body["error"]["code"]) == (400, "invalid"), (starts_at, body)
    assert (await live_server.api("GET", "/api/meetings"))[1] == {"meetings": []}

    # A lone surrogate and control characters (NUL, ESC, BEL, C1) are dropped from every
    # text field; the rest of the text is kept.
    status, meeting = await live_server.api(
        "POST",
        "/api/meetings",
        **raw_json(
            '{"title": "Board\\ud800 \\u0000meet\\u001b[31ming\\u0085", '
            '"settings": {"recording_notice": "On\\u0007 air\\udfff"}, '
            '"host": {"name": "Olga\\u0000", "school": "No.\\u00001", "region": "\\u009bNorth"}}'
        ),
    )
    assert status == 201, meeting
    assert meeting["title"] == "Board meet[31ming"
    assert meeting["settings"]["recording_notice"] == "On air"
    status, roster = await live_server.api("GET", f"/api/meetings/{meeting['id']}/roster")
    (host,) = roster["roster"]
    assert (host["name"], host["school"], host["region"]) == ("Olga", "No.1", "North")
    status, changed = await live_server.api(
        "PATCH", f"/api/meetings/{meeting['id']}", **raw_json('{"title": "\\ud83d\\ude00\\ud800"}')
    )
    assert (status, changed["title"]) == (200, "\U0001f600")
    status, _ = await live_server.api(
        "PATCH", f"/api/meetings/{meeting['id']}", **raw_json('{"title": "\\u0000\\ud800"}')
    )
    assert status == 400
    stored = await live_server.store.get_meeting(meeting["id"])
    assert stored is not None and stored.title == "\U0001f600"


async def _raw_status(url: str, request: bytes) -> int:
    """The status of one request written byte for byte (headers that no client library sends)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    line = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    return int(line.split()[1])


async def test_credentials_of_bytes_that_are_not_utf8_are_refused_not_a_500(
    live_server: LiveServer,
) -> None:
    for path, header, expected in (
        ("/api/meetings", b"Authorization: Bearer \xff\xfe", 401),
        ("/api/meetings", b"Cookie: veche_admin=\xff", 401),
        ("/meetings", b"Cookie: veche_admin=\xed\xa0\x80", 302),
        ("/whep/x", b"Authorization: Bearer \xc3", 404),  # no such meeting, said first
    ):
        method = b"POST" if path.startswith("/whep") else b"GET"
        request = method + b" " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + header
        request += b"\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
        assert await _raw_status(live_server.url, request) == expected, (path, header)


# --- row 10: a JSON body in small chunks -------------------------------------------------------


async def test_a_json_body_sent_in_small_chunks_is_read_whole(live_server: LiveServer) -> None:
    body = json.dumps({"title": "Chunked " + "x" * 150, "visibility": "public"}).encode()

    async def chunks() -> Any:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]
            await asyncio.sleep(0.005)  # each piece arrives on its own

    status, meeting = await live_server.api(
        "POST", "/api/meetings", data=chunks(), headers={"Content-Type": "application/json"}
    )
    assert status == 201, meeting
    assert meeting["title"] == "Chunked " + "x" * 150 and meeting["visibility"] == "public"

    async def too_much() -> Any:
        yield b'{"title": "'
        for _ in range(70):
            yield b"y" * 1024
            await asyncio.sleep(0.001)
        yield b'"}'

    status, refused = await live_server.api(
        "POST", "/api/meetings", data=too_much(), headers={"Content-Type": "application/json"}
    )
    assert (status, refused["error"]["code"]) == (413, "too_large")


# --- row 11: guessing keys ---------------------------------------------------------------------


async def request_from(
    address: str, method: str, url: str, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """One request from a chosen loopback address: on Linux all of 127.0.0.0/8 is loopback, so
    127.0.0.2 is another address to the server, as another machine would be."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    async with (
        aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar()) as http,
        http.request(method, url, allow_redirects=False, **kwargs) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json(), response
        return response.status, await response.text(), response


async def test_key_guessing_is_throttled_per_address(live_server: LiveServer) -> None:
    api = live_server.url + "/api/meetings"
    limit = live_server.settings.guess_limit
    right = bearer(live_server.settings.api_key)
    for i in range(limit):
        status, _, _ = await request_from("127.0.0.1", "GET", api, headers=bearer(f"guess{i}"))
        assert status == 401
    # A forged JWT counts as a miss like a wrong key.
    status, body, response = await request_from(
        "127.0.0.1", "GET", api, headers=bearer("eyJhbGciOiJIUzI1NiJ9.e30.forged")
    )
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # Even the right key is refused from the guessing address, and works from another.
    assert (await request_from("127.0.0.1", "GET", api, headers=right))[0] == 429
    assert (await request_from("127.0.0.2", "GET", api, headers=right))[0] == 200
    # The login form counts its misses the same way (here from a third address).
    login = live_server.url + "/login"
    for i in range(limit):
        status, _, _ = await request_from("127.0.0.3", "POST", login, data={"key": f"k{i}"})
        assert status == 401
    status, _, response = await request_from(
        "127.0.0.3", "POST", login, data={"key": live_server.settings.api_key}
    )
    assert status == 429 and int(response.headers["Retry-After"]) >= 1
    status, _, response = await request_from(
        "127.0.0.4", "POST", login, data={"key": live_server.settings.api_key}
    )
    assert status == 302 and "veche_admin" in response.cookies


# --- row 12: sessions, files, /metrics ---------------------------------------------------------


async def test_signing_out_ends_the_session_on_the_server(live_server: LiveServer) -> None:
    url = live_server.url
    status, _, response = await call(
        url, "POST", "/login", data={"key": live_server.settings.api_key}, allow_redirects=False
    )
    assert status == 302
    cookie = {"Cookie": f"veche_admin={response.cookies['veche_admin'].value}"}
    assert (await call(url, "GET", "/api/meetings", headers=cookie))[0] == 200
    # A link cannot sign anyone out (a prefetcher or another site's <img> would).
    assert (await call(url, "GET", "/logout", headers=cookie))[0] == 405
    status, _, response = await call(url, "POST", "/logout", headers=cookie, allow_redirects=False)
    assert status == 302 and response.headers["Location"] == "/login"
    # A copy of the old cookie no longer opens anything, not even after a restart.
    status, body, _ = await call(url, "GET", "/api/meetings", headers=cookie)
    assert (status, body["error"]["code"]) == (401, "bad_token")
    status, _, response = await call(url, "GET", "/meetings", headers=cookie, allow_redirects=False)
    assert status == 302 and response.headers["Location"].startswith("/login")


async def test_signed_out_sessions_stay_ended_after_a_restart(settings: Settings) -> None:
    settings = replace(settings, guess_limit=100)
    server, runner = await start_server(settings)
    try:
        status, _, response = await call(
            server.url, "POST", "/login", data={"key": settings.api_key}, allow_redirects=False
        )
        assert status == 302
        cookie = {"Cookie": f"veche_admin={response.cookies['veche_admin'].value}"}
        await call(server.url, "POST", "/logout", headers=cookie, allow_redirects=False)
    finally:
        await runner.cleanup()
    server, runner = await start_server(settings)
    try:
        assert (await call(server.url, "GET", "/api/meetings", headers=cookie))[0] == 401
    finally:
        await runner.cleanup()


def _mode(path: Any) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_data_files_are_private(live_server: LiveServer) -> None:
    data = live_server.settings.data_dir
    meeting = await make_meeting(live_server, title="Private")
    host = await Client.open(live_server.url)
    await host.join(token=await invite(live_server, meeting, "Host", "host"))
    url = f"/api/meetings/{meeting.id}/recording"
    status, rec = await live_server.api("POST", url)
    assert status == 201, rec
    try:
        assert _mode(data) == 0o700
        database = live_server.settings.database_path
        for path in (database, database.with_name(database.name + "-wal")):
            assert _mode(path) == 0o600, path
        for key in ("api_key", "secret_key"):
            assert _mode(data / key) == 0o600
        recording = data / "recordings" / rec["id"]
        assert _mode(recording) == 0o700 and _mode(recording.parent) == 0o700
    finally:
        await live_server.api("DELETE", url)
        await host.close()


async def test_metrics_need_the_token_when_one_is_set(settings: Settings) -> None:
    server, runner = await start_server(replace(settings, metrics_token="scrape-me"))
    try:
        status, body, response = await call(server.url, "GET", "/metrics")
        assert (status, body["error"]["code"]) == (401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await call(server.url, "GET", "/metrics", headers=bearer("wrong")))[0] == 401
        status, text, _ = await call(server.url, "GET", "/metrics", headers=bearer("scrape-me"))
        assert status == 200 and "veche_http_requests" in text
    finally:
        await runner.cleanup()
