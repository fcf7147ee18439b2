"""A plain HTTP call to a live server, with only the headers a test gives (no admin key)."""

from typing import Any

import aiohttp


async def call(
    url: str, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any
) -> tuple[int, Any, aiohttp.ClientResponse]:
    """(status, parsed JSON or text, response) for one request."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url + path, headers=headers or {}, **kwargs) as response,
    ):
        if response.content_type == "application/json":
            body: Any = await response.json()
        else:
            body = await response.text()
        return response.status, body, response


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
