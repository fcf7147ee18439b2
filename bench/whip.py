"""WHIP (RFC 9725) and WHEP clients: POST an SDP offer, get 201 + Location + answer, DELETE.

The same exchange serves both: WHIP publishes, WHEP watches. Endpoint URLs are templates in
which `{stream}` names the published stream ("p0", "p1", ...), so one tool drives the
baseline's per-stream endpoints as well as a server's `/whip/{meeting}`.
"""

from dataclasses import dataclass
from urllib.parse import urljoin

import aiohttp

SDP = "application/sdp"


class WhipError(Exception):
    pass


@dataclass(frozen=True)
class Endpoint:
    template: str
    token: str | None = None

    def url(self, stream: str) -> str:
        return self.template.replace("{stream}", stream)


@dataclass
class Resource:
    """A session created by POST; DELETE ends it."""

    url: str
    token: str | None

    async def delete(self, http: aiohttp.ClientSession) -> None:
        async with http.delete(self.url, headers=_headers(self.token)) as response:
            if response.status not in (200, 202, 204, 404):
                raise WhipError(f"DELETE {self.url}: HTTP {response.status}")


async def exchange(
    http: aiohttp.ClientSession, endpoint: Endpoint, stream: str, offer: str
) -> tuple[str, Resource]:
    """POST the offer; the answer and the session resource."""
    url = endpoint.url(stream)
    headers = {"Content-Type": SDP, **_headers(endpoint.token)}
    async with http.post(url, data=offer.encode(), headers=headers) as response:
        body = await response.text()
        if response.status != 201:
            raise WhipError(f"POST {url}: HTTP {response.status}: {body[:200]}")
        if not response.content_type.startswith(SDP):
            raise WhipError(f"POST {url}: answer is {response.content_type}, not {SDP}")
        location = response.headers.get("Location")
        if not location:
            raise WhipError(f"POST {url}: 201 without a Location header")
    return body, Resource(urljoin(url, location), endpoint.token)


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}
