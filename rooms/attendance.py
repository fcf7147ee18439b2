"""Who was in a meeting and when: one record per stay, closed when the person leaves."""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.meeting import iso


@dataclass(frozen=True)
class Stay:
    id: int
    meeting_id: str
    person: str  # roster entry id, or a guest's session key
    name: str
    role: str
    school: str
    region: str
    joined_at: datetime
    left_at: datetime | None

    def seconds(self, until: datetime) -> int:
        return int(((self.left_at or until) - self.joined_at).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {
            "person": self.person,
            "name": self.name,
            "role": self.role,
            "school": self.school,
            "region": self.region,
            "joined_at": iso(self.joined_at),
            "left_at": iso(self.left_at) if self.left_at else None,
        }


CSV_COLUMNS = ["name", "school", "region", "role", "joined_at", "left_at", "minutes"]


def to_csv(stays: Iterable[Stay], until: datetime) -> str:
    """CSV a school office opens in a spreadsheet: UTF-8 with a BOM, one row per stay."""
    out = io.StringIO()
    out.write("\ufeff")  # Excel needs the BOM to read Cyrillic names as UTF-8
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for stay in stays:
        writer.writerow(
            [
                _cell(stay.name),
                _cell(stay.school),
                _cell(stay.region),
                stay.role,
                iso(stay.joined_at),
                iso(stay.left_at) if stay.left_at else "",
                round(stay.seconds(until) / 60, 1),
            ]
        )
    return out.getvalue()


def _cell(text: str) -> str:
    # A name starting with = + - @ would run as a formula in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
