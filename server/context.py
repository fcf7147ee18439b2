"""Typed application keys shared by the server's modules."""

from aiohttp import web

from rooms.store import Store
from server.auth import Tokens
from server.config import Settings
from server.metrics import Metrics

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", Tokens)
METRICS = web.AppKey("metrics", Metrics)
