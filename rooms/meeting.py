"""A scheduled meeting and its settings, with the checks every writer goes through."""

import base64
import secrets
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rooms.errors import Invalid

TITLE_MAX = 200
NOTICE_MAX = 500
DEFAULT_NOTICE = "This meeting is being recorded."
# A meeting's time, with room on both sides for any UTC offset.
EARLIEST_YEAR = 1970
LATEST_YEAR = 9998


class Visibility(StrEnum):
    PUBLIC = "public"  # anyone may watch the broadcast without an account
    INVITE = "invite"  # only people holding a link


@dataclass(frozen=True)
class MeetingSettings:
    lobby: bool = True
    viewers_allowed: bool = True
    recording_notice: str = DEFAULT_NOTICE

    def as_dict(self) -> dict[str, Any]:
        return {
            "lobby": self.lobby,
            "viewers_allowed": self.viewers_allowed,
            "recording_notice": self.recording_notice,
        }


@dataclass(frozen=True)
class Meeting:
    id: str
    title: str
    starts_at: datetime
    visibility: Visibility = Visibility.INVITE
    settings: MeetingSettings = field(default_factory=MeetingSettings)
    created_at: datetime = field(default_factory=lambda: now())

    @property
    def public(self) -> bool:
        return self.visibility is Visibility.PUBLIC

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "starts_at": iso(self.starts_at),
            "visibility": self.visibility.value,
            "settings": self.settings.as_dict(),
            "created_at": iso(self.created_at),
        }


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def new_id(size: int = 10) -> str:
    """A random id of lowercase letters and digits: safe in URLs, file names and as a CLI
    argument (never starting with '-'). Ten bytes make a meeting id unguessable."""
    return base64.b32encode(secrets.token_bytes(size)).decode().rstrip("=").lower()


def parse_time(value: object) -> datetime:
    if not isinstance(value, str):
        raise Invalid("starts_at must be an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("starts_at must be an ISO 8601 date-time string") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # 0001-01-01T00:00+01:00 or 9999-12-31T23:00-05:00 parse, but have no UTC moment.
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise Invalid(f"starts_at must be between the years {EARLIEST_YEAR} and {LATEST_YEAR}")
    return moment.astimezone(UTC)


def printable(value: str) -> str:
    """`value` without control characters (C0 and C1: NUL, escape sequences) and lone
    surrogates, which no page should show and SQLite or a JSON encoder may refuse."""
    return "".join(c for c in value if unicodedata.category(c) not in ("Cc", "Cs"))


def clean_text(value: object, name: str, *, limit: int, required: bool = True) -> str:
    """A one-line text field as it is kept: whitespace runs become one space, control
    characters go."""
    if not isinstance(value, str):
        raise Invalid(f"{name} must be a string")
    text = " ".join(printable(" ".join(value.split())).split())
    if required and not text:
        raise Invalid(f"{name} must not be empty")
    if len(text) > limit:
        raise Invalid(f"{name} is longer than {limit} characters")
    return text


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false")
    return value


def apply_changes(meeting: Meeting, changes: dict[str, Any]) -> Meeting:
    """The meeting with `changes` (a JSON object from a client) applied, or Invalid."""
    allowed = {"title", "starts_at", "visibility", "settings"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    updated = meeting
    if "title" in changes:
        updated = replace(updated, title=clean_text(changes["title"], "title", limit=TITLE_MAX))
    if "starts_at" in changes:
        updated = replace(updated, starts_at=parse_time(changes["starts_at"]))
    if "visibility" in changes:
        value = changes["visibility"]
        if value not in {v.value for v in Visibility}:
            raise Invalid("visibility must be 'public' or 'invite'")
        updated = replace(updated, visibility=Visibility(value))
    if "settings" in changes:
        updated = replace(updated, settings=_apply_settings(updated.settings, changes["settings"]))
    return updated


def _apply_settings(settings: MeetingSettings, changes: object) -> MeetingSettings:
    if not isinstance(changes, dict):
        raise Invalid("settings must be an object")
    unknown = set(changes) - {"lobby", "viewers_allowed", "recording_notice"}
    if unknown:
        raise Invalid(f"unknown settings: {', '.join(sorted(unknown))}")
    if "lobby" in changes:
        settings = replace(settings, lobby=_flag(changes["lobby"], "settings.lobby"))
    if "viewers_allowed" in changes:
        allowed = _flag(changes["viewers_allowed"], "settings.viewers_allowed")
        settings = replace(settings, viewers_allowed=allowed)
    if "recording_notice" in changes:
        notice = clean_text(
            changes["recording_notice"], "settings.recording_notice", limit=NOTICE_MAX
        )
        settings = replace(settings, recording_notice=notice)
    return settings


def new_meeting(fields: dict[str, Any]) -> Meeting:
    """A meeting from a client's JSON object; `title` is required, the rest has defaults."""
    if not isinstance(fields, dict):
        raise Invalid("a meeting must be a JSON object")
    if "title" not in fields:
        raise Invalid("title is required")
    base = Meeting(id=new_id(), title="-", starts_at=now())
    return apply_changes(base, fields)
