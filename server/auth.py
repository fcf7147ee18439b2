"""Signed tokens: personal invite links, guest links and admin sessions (HS256, pinned)."""

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from rooms.errors import RoomError
from rooms.roles import Role

ALGORITHM = "HS256"
ISSUER = "veche"


class BadToken(RoomError):
    def __init__(self, message: str) -> None:
        super().__init__("bad_token", message)


@dataclass(frozen=True)
class Grant:
    """What a valid token lets its bearer do."""

    kind: str  # "invite" (a roster entry), "guest" (a role without a roster entry), "admin"
    meeting_id: str = ""
    entry_id: str = ""  # roster entry, for kind "invite"
    # kind "recorder": the recording process (server/recorder.py); entry_id is the recording
    # kind "programme": the broadcast's programme process (server/programmes.py); entry_id is
    # the programme session
    role: Role | None = None  # for kind "guest"


class Tokens:
    """Issues and checks tokens with one secret key."""

    def __init__(self, secret: str, invite_ttl: timedelta) -> None:
        self._secret = secret
        self._ttl = invite_ttl

    def invite(self, meeting_id: str, entry_id: str, ttl: timedelta | None = None) -> str:
        return self._sign({"kind": "invite", "mid": meeting_id, "sub": entry_id}, ttl)

    def guest(self, meeting_id: str, role: Role, ttl: timedelta | None = None) -> str:
        return self._sign({"kind": "guest", "mid": meeting_id, "role": role.value}, ttl)

    def recorder(self, meeting_id: str, recording_id: str, ttl: timedelta | None = None) -> str:
        """The recording process's pass into the meeting it records (server/recorder.py)."""
        return self._sign({"kind": "recorder", "mid": meeting_id, "sub": recording_id}, ttl)

    def programme(self, meeting_id: str, session_id: str, ttl: timedelta | None = None) -> str:
        """The broadcast programme's pass into the meeting (server/programmes.py)."""
        return self._sign({"kind": "programme", "mid": meeting_id, "sub": session_id}, ttl)

    def admin_session(self, ttl: timedelta = timedelta(hours=12)) -> str:
        return self._sign({"kind": "admin"}, ttl)

    def _sign(self, claims: dict[str, Any], ttl: timedelta | None) -> str:
        issued = datetime.now(UTC)
        payload = {**claims, "iss": ISSUER, "iat": issued, "exp": issued + (ttl or self._ttl)}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def check(self, token: object) -> Grant:
        """The grant a token carries, or BadToken saying why it is refused."""
        if not isinstance(token, str) or not token or len(token) > 2048:
            raise BadToken("a token is required")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iss", "kind"]},
            )
        except jwt.ExpiredSignatureError:
            raise BadToken("this link has expired; ask the host for a new one") from None
        except jwt.InvalidTokenError:
            raise BadToken("this link is not valid") from None
        kind = claims.get("kind")
        if kind == "admin":
            return Grant(kind="admin")
        meeting_id = claims.get("mid")
        if not isinstance(meeting_id, str):
            raise BadToken("this link is not valid")
        if kind == "invite" and isinstance(claims.get("sub"), str):
            return Grant(kind="invite", meeting_id=meeting_id, entry_id=claims["sub"])
        if kind in ("recorder", "programme") and isinstance(claims.get("sub"), str):
            return Grant(kind=kind, meeting_id=meeting_id, entry_id=claims["sub"])
        if kind == "guest" and claims.get("role") in ("participant", "viewer"):
            return Grant(kind="guest", meeting_id=meeting_id, role=Role(claims["role"]))
        raise BadToken("this link is not valid")


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of an API key."""
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
