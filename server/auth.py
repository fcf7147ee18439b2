"""Signed tokens: personal invite links, guest links and admin sessions (HS256, pinned)."""

import hmac
import secrets
from collections.abc import Iterable
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
        # Admin sessions signed out before they expire (ids; the store keeps them too).
        self._ended: set[str] = set()

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
        # The id lets one session be signed out without ending the others.
        return self._sign({"kind": "admin", "sid": secrets.token_urlsafe(16)}, ttl)

    def end_session(self, token: str) -> tuple[str, datetime] | None:
        """Sign an admin session out: (its id, when it would have expired) for the store, or
        None for a token that is not a live admin session."""
        try:
            self.check(token)
            claims = jwt.decode(token, self._secret, algorithms=[ALGORITHM], issuer=ISSUER)
        except (BadToken, jwt.InvalidTokenError):
            return None
        if claims.get("kind") != "admin":
            return None
        self._ended.add(claims["sid"])
        return claims["sid"], datetime.fromtimestamp(int(claims["exp"]), UTC)

    def sessions_ended(self, ids: Iterable[str]) -> None:
        """Sessions signed out earlier (read from the store at start)."""
        self._ended.update(ids)

    def _sign(self, claims: dict[str, Any], ttl: timedelta | None) -> str:
        issued = datetime.now(UTC)
        payload = {**claims, "iss": ISSUER, "iat": issued, "exp": issued + (ttl or self._ttl)}
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def check(self, token: object) -> Grant:
        """The grant a token carries, or BadToken saying why it is refused."""
        if not isinstance(token, str) or not token or len(token) > 2048:
            raise BadToken("a token is required")
        if not token.isascii():  # a JWT is ASCII; headers of other bytes arrive as surrogates
            raise BadToken("this link is not valid")
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
            if not isinstance(claims.get("sid"), str) or claims["sid"] in self._ended:
                raise BadToken("this session has ended; sign in again")
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
    # A header's bytes that are not UTF-8 arrive as surrogates, which do not encode: the
    # surrogateescape handler gives those bytes back, and they are not the key either.
    given_bytes = given.encode("utf-8", "surrogateescape")
    return bool(expected) and hmac.compare_digest(given_bytes, expected.encode())
