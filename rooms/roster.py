"""The roster: the people invited to a meeting, each with a pre-assigned role."""

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rooms.errors import Invalid
from rooms.meeting import clean_text, iso, new_id, now
from rooms.roles import Role, parse_role

NAME_MAX = 100
FIELD_MAX = 200


@dataclass(frozen=True)
class RosterEntry:
    id: str
    meeting_id: str
    name: str
    role: Role
    school: str = ""
    region: str = ""
    created_at: datetime = field(default_factory=now)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "meeting_id": self.meeting_id,
            "name": self.name,
            "role": self.role.value,
            "school": self.school,
            "region": self.region,
            "created_at": iso(self.created_at),
        }


def apply_entry_changes(entry: RosterEntry, changes: dict[str, Any]) -> RosterEntry:
    if not isinstance(changes, dict):
        raise Invalid("a roster entry must be a JSON object")
    unknown = set(changes) - {"name", "role", "school", "region"}
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    if "name" in changes:
        entry = replace(entry, name=clean_text(changes["name"], "name", limit=NAME_MAX))
    if "role" in changes:
        entry = replace(entry, role=parse_role(changes["role"]))
    if "school" in changes:
        entry = replace(entry, school=_optional(changes["school"], "school"))
    if "region" in changes:
        entry = replace(entry, region=_optional(changes["region"], "region"))
    return entry


def _optional(value: object, name: str) -> str:
    return clean_text(value, name, limit=FIELD_MAX, required=False)


def new_entry(meeting_id: str, fields: dict[str, Any]) -> RosterEntry:
    """A roster entry from a client's JSON object; `name` and `role` are required."""
    if not isinstance(fields, dict):
        raise Invalid("a roster entry must be a JSON object")
    for required in ("name", "role"):
        if required not in fields:
            raise Invalid(f"{required} is required")
    base = RosterEntry(id=new_id(5), meeting_id=meeting_id, name="-", role=Role.PARTICIPANT)
    return apply_entry_changes(base, fields)
