"""Roles and what each may do: the one table the server enforces and docs/roles.md mirrors."""

from enum import StrEnum

from rooms.errors import Invalid


class Role(StrEnum):
    HOST = "host"
    MODERATOR = "moderator"
    SPEAKER = "speaker"
    PARTICIPANT = "participant"
    VIEWER = "viewer"


class Permission(StrEnum):
    SKIP_LOBBY = "skip_lobby"
    MODERATE = "moderate"  # admit, deny, remove, lock, ask to mute, end the meeting
    ASSIGN_ROLES = "assign_roles"
    MANAGE_MEETING = "manage_meeting"  # edit the meeting, its roster and links (REST)
    RECORD = "record"
    PUBLISH_AUDIO = "publish_audio"
    PUBLISH_VIDEO = "publish_video"
    PUBLISH_SCREEN = "publish_screen"
    CHAT = "chat"
    RAISE_HAND = "raise_hand"
    ON_STAGE = "on_stage"  # shown on the broadcast by default
    # The entry's personal link also opens the hall's projector (docs/hall.md), which receives
    # every track but the entry's own: not for viewers or participants, who see less.
    RUN_HALL = "run_hall"


_P = Permission
_PUBLISH = {_P.PUBLISH_AUDIO, _P.PUBLISH_VIDEO, _P.PUBLISH_SCREEN}

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.HOST: frozenset(Permission),
    Role.MODERATOR: frozenset(set(Permission) - {_P.MANAGE_MEETING}),
    Role.SPEAKER: frozenset(_PUBLISH | {_P.CHAT, _P.RAISE_HAND, _P.ON_STAGE, _P.RUN_HALL}),
    Role.PARTICIPANT: frozenset(_PUBLISH | {_P.CHAT, _P.RAISE_HAND}),
    Role.VIEWER: frozenset({_P.RAISE_HAND}),
}

# Higher outranks lower: nobody changes the role of someone of their own rank or above,
# nor grants a role above their own.
RANK: dict[Role, int] = {
    Role.VIEWER: 0,
    Role.PARTICIPANT: 1,
    Role.SPEAKER: 2,
    Role.MODERATOR: 3,
    Role.HOST: 4,
}


_ROLE_NAMES = frozenset(r.value for r in Role)


def can(role: Role, permission: Permission) -> bool:
    return permission in PERMISSIONS[role]


def may_assign(actor: Role, target: Role, new: Role) -> bool:
    """Whether `actor` may change someone's role from `target` to `new`."""
    if not can(actor, Permission.ASSIGN_ROLES):
        return False
    if actor is Role.HOST:
        return True
    return RANK[target] < RANK[actor] and RANK[new] <= RANK[actor]


def parse_role(value: object) -> Role:
    if not isinstance(value, str) or value not in _ROLE_NAMES:
        raise Invalid(f"role must be one of {', '.join(r.value for r in Role)}")
    return Role(value)
