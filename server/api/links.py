"""The links Veche hands out: personal invites, guest links and meeting pages."""

from datetime import UTC, datetime
from typing import Any

import jwt

from rooms.errors import Invalid
from rooms.meeting import Meeting, iso
from rooms.roles import Role
from rooms.roster import RosterEntry
from server.auth import Tokens
from server.config import Settings


def join_url(settings: Settings, token: str) -> str:
    return f"{settings.base_url}/j/{token}"


def admin_url(settings: Settings, meeting_id: str) -> str:
    return f"{settings.base_url}/meetings/{meeting_id}"


def watch_url(settings: Settings, meeting_id: str) -> str:
    return f"{settings.base_url}/watch/{meeting_id}"


def meeting_urls(settings: Settings, meeting: Meeting) -> dict[str, str]:
    return {
        "admin_url": admin_url(settings, meeting.id),
        "watch_url": watch_url(settings, meeting.id),
    }


def _link(settings: Settings, token: str) -> dict[str, Any]:
    # Read the expiry back from the token itself so the reply states exactly what it carries.
    claims = jwt.decode(token, options={"verify_signature": False})
    expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
    return {"url": join_url(settings, token), "token": token, "expires_at": iso(expires)}


def invite_link(settings: Settings, tokens: Tokens, entry: RosterEntry) -> dict[str, Any]:
    """A fresh personal link for a roster entry: {url, token, expires_at}."""
    return _link(settings, tokens.invite(entry.meeting_id, entry.id))


def guest_link(settings: Settings, tokens: Tokens, meeting_id: str, role: Role) -> dict[str, Any]:
    """A shared link without a roster entry (participant or viewer): {url, token, expires_at}."""
    return _link(settings, tokens.guest(meeting_id, role))


def parse_guest_role(value: object) -> Role:
    if value not in (Role.PARTICIPANT.value, Role.VIEWER.value):
        raise Invalid("role must be 'participant' or 'viewer'")
    return Role(str(value))
