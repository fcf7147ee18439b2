"""Settings from VECHE_* environment variables and CLI flags; safe single-machine defaults."""

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Settings:
    """Everything the server reads at start. Each field is also `VECHE_<NAME>`."""

    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    # Base of the links the server hands out; defaults to http://host:port.
    public_url: str = ""
    # Admin key for the REST API and the meetings pages; generated into data_dir when unset.
    api_key: str = ""
    # Signs invite tokens; generated into data_dir when unset so links survive a restart.
    secret_key: str = ""
    log_format: str = "text"  # text | json
    log_level: str = "INFO"
    redis_url: str = ""
    invite_ttl_days: int = 60
    reconnect_grace: float = 30.0
    chat_max_length: int = 1000
    chat_burst: int = 5  # messages allowed at once ...
    chat_per_second: float = 0.5  # ... refilled at this rate
    max_participants: int = 500
    shutdown_notice: float = 1.0  # seconds clients get to hear "server stopping"
    # WebRTC: STUN/TURN URLs (comma-separated) handed to browsers; with turn_secret, TURN
    # credentials are minted per client the way coturn's use-auth-secret expects.
    ice_servers: str = ""
    turn_secret: str = ""
    turn_ttl: int = 86400
    # Local addresses the SFU gathers ICE candidates on (comma-separated; empty: all), the
    # address announced to clients behind NAT, and the UDP port range (0: any).
    rtc_addresses: str = ""
    announce_address: str = ""
    rtc_min_port: int = 0
    rtc_max_port: int = 0
    # Recordings not marked to keep are deleted this many days after they stop (0: never).
    recording_retention_days: int = 30
    # The live programme of a recording: canvas and frame rate. The recording process's CPU
    # grows with both (docs/recording.md has figures).
    programme_size: str = "1280x720"
    programme_fps: int = 30
    # The broadcast's HLS programme (the stage, composed in a process of its own while anyone
    # watches over HLS; docs/broadcast.md): canvas, frame rate, and how long it keeps going
    # after the last player asked for the playlist (0: no HLS programme; HLS then only while
    # the meeting is recorded, from the recording's programme).
    hls_size: str = "640x360"
    hls_fps: int = 25
    hls_idle: float = 60.0
    # Keep one recording/programme process started ahead, imports done (~1-2 s saved at each
    # start; about 80 MB of memory while it waits).
    egress_standby: bool = True
    # The public door (docs/security.md, "The public door"): seats for people outside the
    # roster, anonymous joins per address, WHIP/WHEP sessions, and how long a WebRTC connection
    # may take to complete ICE before it is closed. Roster members and crew are never refused
    # `full`.
    max_viewers: int = 1000  # anonymous and guest viewers seated or waiting in one meeting
    anonymous_joins_burst: int = 20  # anonymous joins from one address at once ...
    anonymous_joins_per_second: float = 2.0  # ... refilled at this rate
    webrtc_sessions_max: int = 1000  # WHIP + WHEP sessions in this process
    webrtc_sessions_per_meeting: int = 500
    webrtc_sessions_per_address: int = 50
    ice_connect_timeout: float = 10.0
    # HTTP and API edges (docs/security.md, "Limits and settings — HTTP and API"): wrong keys
    # and tokens an address may send in a minute before it gets 429 (/login, Bearer), and the
    # Bearer token /metrics asks for (empty: /metrics is open, for a scraper on a private
    # network).
    guess_limit: int = 10
    metrics_token: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def database_path(self) -> Path:
        return self.data_dir / "veche.sqlite3"


PROGRAMME_SIZE = re.compile(r"([0-9]{2,4})x([0-9]{2,4})")
LARGEST_PROGRAMME = (3840, 2160)


def from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, then `overrides` (CLI flags; None means not given)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        raw = environ.get(f"VECHE_{f.name.upper()}")
        if raw is not None and raw != "":
            values[f.name] = _convert(f.name, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = Settings(**values)
    if settings.log_format not in ("text", "json"):
        raise ValueError("VECHE_LOG_FORMAT must be 'text' or 'json'")
    if not _programme_size_ok(settings.programme_size):
        raise ValueError("VECHE_PROGRAMME_SIZE must be WIDTHxHEIGHT, e.g. 1280x720")
    if not 1 <= settings.programme_fps <= 60:
        raise ValueError("VECHE_PROGRAMME_FPS must be between 1 and 60")
    if not _programme_size_ok(settings.hls_size):
        raise ValueError("VECHE_HLS_SIZE must be WIDTHxHEIGHT, e.g. 640x360")
    if not 1 <= settings.hls_fps <= 60:
        raise ValueError("VECHE_HLS_FPS must be between 1 and 60")
    if settings.hls_idle < 0:
        raise ValueError("VECHE_HLS_IDLE must be 0 or more seconds")
    if settings.guess_limit < 1:
        raise ValueError("VECHE_GUESS_LIMIT must be 1 or more tries a minute")
    for name in (
        "max_viewers",
        "webrtc_sessions_max",
        "webrtc_sessions_per_meeting",
        "webrtc_sessions_per_address",
    ):
        if getattr(settings, name) < 0:
            raise ValueError(f"VECHE_{name.upper()} must be 0 or more (0: no cap)")
    for name in ("anonymous_joins_burst", "anonymous_joins_per_second", "ice_connect_timeout"):
        if getattr(settings, name) <= 0:
            raise ValueError(f"VECHE_{name.upper()} must be more than 0")
    return settings


def _programme_size_ok(text: str) -> bool:
    """WIDTHxHEIGHT from 64x36 (room for a name on a tile) up to 3840x2160."""
    match = PROGRAMME_SIZE.fullmatch(text)
    if match is None:
        return False
    width, height = int(match[1]), int(match[2])
    return 64 <= width <= LARGEST_PROGRAMME[0] and 36 <= height <= LARGEST_PROGRAMME[1]


def _convert(name: str, raw: str) -> Any:
    default = getattr(Settings(), name)
    try:
        if isinstance(default, bool):
            return raw.lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"VECHE_{name.upper()} must be a number, not {raw!r}") from None
    if isinstance(default, Path):
        return Path(raw)
    return raw


def with_secrets(settings: Settings) -> Settings:
    """Fill in the API and signing keys from data_dir, creating them on first start."""
    api_key = settings.api_key or _stored_secret(settings.data_dir / "api_key")
    secret_key = settings.secret_key or _stored_secret(settings.data_dir / "secret_key")
    return replace(settings, api_key=api_key, secret_key=secret_key)


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    # Created 0600 so other users of the machine cannot read it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value
