"""socket.io signaling (stub; filled by the signaling work)."""

from aiohttp import web


def setup_signaling(app: web.Application) -> None:
    pass
