"""The demo meeting `veche serve --demo` creates once and reuses on later starts."""

from dataclasses import dataclass

from rooms.errors import RoomError
from rooms.meeting import Meeting, new_meeting
from rooms.roles import Role
from rooms.roster import RosterEntry, new_entry
from rooms.store import Store
from server.api.guard import valid_id
from server.api.links import admin_url, invite_link, watch_url
from server.auth import Tokens
from server.config import Settings

DEMO_TITLE = "Veche demo meeting"
HOST_NAME = "Host"


@dataclass(frozen=True)
class Demo:
    meeting: Meeting
    host: RosterEntry
    created: bool  # False when an earlier start's demo meeting was reused

    def lines(self, settings: Settings, tokens: Tokens) -> list[str]:
        """What `serve --demo` prints: the meeting's pages and the host's personal link."""
        mid = self.meeting.id
        state = "created" if self.created else "reused"
        return [
            f"Demo meeting ({state}): {self.meeting.title} [{mid}]",
            f"  Admin page:  {admin_url(settings, mid)}",
            f"  Host link:   {invite_link(settings, tokens, self.host)['url']}",
            f"  Viewer page: {watch_url(settings, mid)}",
        ]


async def ensure_demo(store: Store, settings: Settings) -> Demo:
    """The demo meeting named in data_dir/demo_meeting if it still exists, else a new one."""
    marker = settings.data_dir / "demo_meeting"
    if marker.exists():
        meeting_id = marker.read_text().strip()
        meeting = await store.get_meeting(meeting_id) if _plausible(meeting_id) else None
        if meeting is not None:
            return Demo(meeting, await _host(store, meeting), created=False)
    meeting = new_meeting({"title": DEMO_TITLE, "visibility": "public"})
    await store.create_meeting(meeting)
    host = await _host(store, meeting)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(meeting.id + "\n")
    return Demo(meeting, host, created=True)


def _plausible(meeting_id: str) -> bool:
    try:
        valid_id(meeting_id, "meeting")
    except RoomError:
        return False
    return True


async def _host(store: Store, meeting: Meeting) -> RosterEntry:
    # Someone may have edited the roster since: reuse any host, else add "Host" again.
    for entry in await store.list_roster(meeting.id):
        if entry.role is Role.HOST:
            return entry
    entry = new_entry(meeting.id, {"name": HOST_NAME, "role": "host"})
    await store.add_entry(entry)
    return entry
