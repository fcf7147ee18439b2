"""WebRTC settings: the SFU's ICE configuration and the ICE servers handed to each client."""

from typing import Any

from media.ice import IceServer, IceSettings, turn_credentials
from server.config import Settings


def _urls(settings: Settings) -> list[str]:
    return [u.strip() for u in settings.ice_servers.split(",") if u.strip()]


def _is_turn(url: str) -> bool:
    return url.lower().startswith(("turn:", "turns:"))


def ice_settings(settings: Settings) -> IceSettings:
    """The SFU's own ICE: STUN servers only (a server does not relay through TURN), host
    candidates on `rtc_addresses` in the port range, each also announced at
    `announce_address`."""
    stun = tuple(u for u in _urls(settings) if not _is_turn(u))
    addresses = tuple(a.strip() for a in settings.rtc_addresses.split(",") if a.strip())
    low, high = settings.rtc_min_port, settings.rtc_max_port
    if (low or high) and not 0 < low <= high <= 65535:
        raise ValueError("VECHE_RTC_MIN_PORT and VECHE_RTC_MAX_PORT must be a port range")
    return IceSettings(
        servers=(IceServer(stun),) if stun else (),
        host_addresses=addresses,
        announce_address=settings.announce_address.strip(),
        port_range=(low, high) if low else None,
    )


def client_ice_servers(settings: Settings, user: str) -> list[dict[str, Any]]:
    """RTCIceServer objects for one client; TURN credentials minted for it when
    `turn_secret` is set (coturn's use-auth-secret)."""
    urls = _urls(settings)
    stun = [u for u in urls if not _is_turn(u)]
    turn = [u for u in urls if _is_turn(u)]
    servers: list[dict[str, Any]] = []
    if stun:
        servers.append({"urls": stun})
    if turn:
        server: dict[str, Any] = {"urls": turn}
        if settings.turn_secret:
            username, credential = turn_credentials(settings.turn_secret, user, settings.turn_ttl)
            server |= {"username": username, "credential": credential}
        servers.append(server)
    return servers
