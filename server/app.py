"""The app factory: wires settings, the store, tokens, REST, signaling and pages."""

import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from aiohttp import web

from rooms.meeting import now
from rooms.sqlite_store import SqliteStore
from server.api.routes import setup_api
from server.auth import Tokens
from server.config import Settings
from server.context import METRICS, SETTINGS, STORE, TOKENS
from server.errors import json_errors
from server.guesses import setup_guesses, throttle_guesses
from server.health import READY, setup_health
from server.hls import setup_hls
from server.metrics import Metrics
from server.pages import setup_pages
from server.programmes import setup_programmes
from server.recordings import setup_recordings
from server.signaling import setup_signaling
from server.whip import setup_whip

log = logging.getLogger(__name__)


async def _store(app: web.Application) -> AsyncIterator[None]:
    private_data_dir(app[SETTINGS].data_dir)
    store = await SqliteStore.open(app[SETTINGS].database_path)
    closed = await store.close_open_stays(now())
    if closed:
        log.info("closed %d attendance records left open by an earlier stop", closed)
    app[TOKENS].sessions_ended(await store.ended_sessions(now()))
    app[STORE] = store
    yield
    await store.close()


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False


def private_data_dir(data_dir: Path) -> None:
    """The data directory holds the database, the keys and every recording: 0700, and what
    the process and its recording processes create from now on is 0600/0700 (umask 077). The
    directory's own mode is set again at each start, for data dirs made by older versions."""
    os.umask(0o077)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application; `settings` must already carry its keys (with_secrets)."""
    if not settings.api_key or not settings.secret_key:
        raise ValueError("settings need api_key and secret_key (see config.with_secrets)")
    # The throttle goes first: it must see the 401 that json_errors makes of a bad credential.
    app = web.Application(middlewares=[throttle_guesses, json_errors], client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[TOKENS] = Tokens(settings.secret_key, timedelta(days=settings.invite_ttl_days))
    setup_guesses(app)
    app.cleanup_ctx.append(_store)
    setup_health(app)
    setup_api(app)
    setup_signaling(app)
    setup_recordings(app)
    setup_programmes(app)
    setup_whip(app)
    setup_hls(app)
    setup_pages(app)
    app.cleanup_ctx.append(_readiness)
    return app
