"""The app factory: wires settings, the store, tokens, REST, signaling and pages."""

import logging
from collections.abc import AsyncIterator
from datetime import timedelta

from aiohttp import web

from rooms.meeting import now
from rooms.sqlite_store import SqliteStore
from server.api.routes import setup_api
from server.auth import Tokens
from server.config import Settings
from server.context import METRICS, SETTINGS, STORE, TOKENS
from server.errors import json_errors
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
    store = await SqliteStore.open(app[SETTINGS].database_path)
    closed = await store.close_open_stays(now())
    if closed:
        log.info("closed %d attendance records left open by an earlier stop", closed)
    app[STORE] = store
    yield
    await store.close()


async def _readiness(app: web.Application) -> AsyncIterator[None]:
    app[READY]["ready"] = True
    yield
    app[READY]["ready"] = False


def create_app(settings: Settings) -> web.Application:
    """A ready-to-run application; `settings` must already carry its keys (with_secrets)."""
    if not settings.api_key or not settings.secret_key:
        raise ValueError("settings need api_key and secret_key (see config.with_secrets)")
    app = web.Application(middlewares=[json_errors], client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    app[TOKENS] = Tokens(settings.secret_key, timedelta(days=settings.invite_ttl_days))
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
