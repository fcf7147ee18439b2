"""Mounts web/'s pages (stub; filled by the pages work)."""

from aiohttp import web


def setup_pages(app: web.Application) -> None:
    pass
