"""REST routes under /api (stub; filled by the REST API work)."""

from aiohttp import web


def setup_api(app: web.Application) -> None:
    pass
