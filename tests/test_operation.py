"""What an operator checks: health endpoints, metrics, JSON logs, settings from the environment."""

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from server.config import from_env
from server.logs import JsonFormatter
from tests.conftest import LiveServer


async def test_livez_and_readyz_answer_when_running(live_server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path, expected in (("/livez", "ok"), ("/readyz", "ready")):
            async with http.get(live_server.url + path) as response:
                assert response.status == 200
                assert (await response.json())["status"] == expected


async def test_metrics_are_prometheus_text_with_the_documented_names(
    live_server: LiveServer,
) -> None:
    async with aiohttp.ClientSession() as http:
        await http.get(live_server.url + "/api/meetings")  # unauthenticated: counted as an error
        async with http.get(live_server.url + "/metrics") as response:
            assert response.status == 200
            assert response.content_type == "text/plain"
            text = await response.text()
    for name in (
        "veche_meetings_live",
        "veche_participants",
        "veche_tracks",
        "veche_forwarded_packets_total",
        "veche_forwarded_bytes_total",
        "veche_errors_total",
    ):
        assert f"\n{name}" in text or text.startswith(name) or f"# TYPE {name}" in text, name
    assert 'veche_http_requests_total{status="4xx"}' in text


def test_json_log_lines_parse_and_carry_the_message() -> None:
    record = logging.LogRecord("veche.test", logging.WARNING, __file__, 1, "room %s", ("a1",), None)
    record.meeting = "a1"
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert entry["message"] == "room a1"
    assert entry["level"] == "warning"
    assert entry["meeting"] == "a1"


def test_settings_come_from_veche_variables_and_flags_override_them() -> None:
    env = {"VECHE_PORT": "9000", "VECHE_HOST": "0.0.0.0", "VECHE_DATA_DIR": "/tmp/x"}
    settings = from_env(env)
    assert settings.port == 9000
    assert settings.data_dir == Path("/tmp/x")
    assert settings.base_url == "http://127.0.0.1:9000"
    assert from_env(env, port=9100).port == 9100
    with pytest.raises(ValueError, match="VECHE_PORT"):
        from_env({"VECHE_PORT": "eighty"})
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        from_env({"VECHE_LOG_FORMAT": "xml"})
    assert from_env({"VECHE_PROGRAMME_SIZE": "640x360"}).programme_size == "640x360"
    for size in ("640", "10x10", "640x360x2", "../x", "99999x360"):
        with pytest.raises(ValueError, match="PROGRAMME_SIZE"):
            from_env({"VECHE_PROGRAMME_SIZE": size})
    with pytest.raises(ValueError, match="PROGRAMME_FPS"):
        from_env({"VECHE_PROGRAMME_FPS": "0"})
    assert from_env({"VECHE_HLS_SIZE": "1280x720"}).hls_size == "1280x720"
    for name, value in (("HLS_SIZE", "big"), ("HLS_FPS", "61"), ("HLS_IDLE", "-1")):
        with pytest.raises(ValueError, match=name):
            from_env({f"VECHE_{name}": value})
    assert from_env({"VECHE_HLS_IDLE": "0"}).hls_idle == 0
