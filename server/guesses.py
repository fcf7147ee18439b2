"""Throttling of key guessing: an address that sends too many wrong keys or tokens in a minute
(/login, Bearer on /api, /whip, /whep, /metrics) gets 429 with Retry-After until its misses
age out.

Only misses count, so an admin who uses the right key is never slowed down. While an address is
throttled even the right key is refused from it: otherwise a guesser would learn when it hit."""

import ipaddress
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable

from aiohttp import web

from server.context import METRICS, SETTINGS
from server.errors import error_response

WINDOW = 60.0  # seconds a miss is remembered
# Addresses remembered at once: a flood from many addresses forgets the oldest first rather
# than growing without bound.
MAX_ADDRESSES = 10_000


def address_key(remote: str | None) -> str:
    """Who a miss is held against: the IPv4 address, or the /64 of an IPv6 one (a single host
    usually holds a whole /64)."""
    if not remote:
        return "unknown"
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class GuessThrottle:
    """Misses per address in a sliding window of WINDOW seconds; `limit` misses throttle it."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._clock = clock
        self._misses: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str) -> deque[float]:
        misses = self._misses.get(address)
        if misses is None:
            return deque()
        horizon = self._clock() - WINDOW
        while misses and misses[0] <= horizon:
            misses.popleft()
        if not misses:
            del self._misses[address]
        return misses

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again (0: it may now)."""
        misses = self._recent(address)
        if len(misses) < self._limit:
            return 0
        return max(1, math.ceil(misses[-self._limit] + WINDOW - self._clock()))

    def miss(self, address: str) -> None:
        misses = self._misses.pop(address, None) or deque()
        misses.append(self._clock())
        while len(misses) > self._limit:
            misses.popleft()  # only the last `limit` decide when the address may try again
        self._misses[address] = misses  # most recent last
        while len(self._misses) > MAX_ADDRESSES:
            self._misses.popitem(last=False)


GUESSES = web.AppKey("guesses", GuessThrottle)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _credential_attempt(request: web.Request) -> bool:
    """Requests that present a key or a token the server checks against its secrets."""
    if request.path == "/login" and request.method == "POST":
        return True
    return request.path.startswith(("/api/", "/whip/", "/whep/", "/metrics")) and (
        "Authorization" in request.headers
    )


@web.middleware
async def throttle_guesses(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not _credential_attempt(request):
        return await handler(request)
    guesses = request.app[GUESSES]
    address = address_key(request.remote)
    wait = guesses.retry_after(address)
    if wait:
        request.app[METRICS].error("rate_limited")
        message = f"too many wrong keys from this address; try again in {wait} s"
        if request.path == "/login":  # a person at the sign-in form reads this
            refusal = web.Response(status=429, text=message[0].upper() + message[1:] + ".")
        else:
            refusal = error_response(429, "rate_limited", message)
        refusal.headers["Retry-After"] = str(wait)
        return refusal
    try:
        response = await handler(request)
    except web.HTTPUnauthorized:
        guesses.miss(address)
        raise
    if response.status == 401:
        guesses.miss(address)
    return response


def setup_guesses(app: web.Application) -> None:
    """The throttle; `throttle_guesses` must be the outermost middleware, so that it sees the
    401 that json_errors makes of a refused credential."""
    app[GUESSES] = GuessThrottle(app[SETTINGS].guess_limit)
