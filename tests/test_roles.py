"""The roles table: every role x permission, who may assign what, and docs/roles.md kept true."""

from pathlib import Path

import pytest

from rooms.errors import RoomError
from rooms.roles import PERMISSIONS, Permission, Role, can, may_assign, parse_role

R, P = Role, Permission
ALL = set(Permission)
PUBLISH = {P.PUBLISH_AUDIO, P.PUBLISH_VIDEO, P.PUBLISH_SCREEN}

# Written out by hand, not derived from rooms.roles, so a change there must be made here too.
EXPECTED: dict[Role, set[Permission]] = {
    R.HOST: ALL,
    R.MODERATOR: ALL - {P.MANAGE_MEETING},
    R.SPEAKER: PUBLISH | {P.CHAT, P.RAISE_HAND, P.ON_STAGE, P.RUN_HALL},
    R.PARTICIPANT: PUBLISH | {P.CHAT, P.RAISE_HAND},
    R.VIEWER: {P.RAISE_HAND},
}

DOC = Path(__file__).parent.parent / "docs" / "roles.md"


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("permission", list(Permission))
def test_permission_matrix(role: Role, permission: Permission) -> None:
    assert can(role, permission) is (permission in EXPECTED[role])


# (actor, target's current role, new role) -> allowed; every combination is listed.
def expected_assign(actor: Role, target: Role, new: Role) -> bool:
    if actor is R.HOST:
        return True
    if actor is R.MODERATOR:
        return target in (R.SPEAKER, R.PARTICIPANT, R.VIEWER) and new is not R.HOST
    return False


@pytest.mark.parametrize("actor", list(Role))
@pytest.mark.parametrize("target", list(Role))
@pytest.mark.parametrize("new", list(Role))
def test_may_assign(actor: Role, target: Role, new: Role) -> None:
    assert may_assign(actor, target, new) is expected_assign(actor, target, new)


def test_parse_role() -> None:
    assert parse_role("speaker") is R.SPEAKER
    for bad in ("boss", "", None, 1, ["host"]):
        with pytest.raises(RoomError) as caught:
            parse_role(bad)
        assert caught.value.code == "invalid"


def roles_table() -> str:
    """The table docs/roles.md must contain, generated from rooms.roles."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for permission in Permission:
        marks = ["yes" if permission in PERMISSIONS[r] else "-" for r in roles]
        lines.append(f"| `{permission.value}` | " + " | ".join(marks) + " |")
    return "\n".join(lines)


def test_roles_doc_has_the_table() -> None:
    assert roles_table() in DOC.read_text(encoding="utf-8"), (
        "docs/roles.md is out of date; put this table in it:\n" + roles_table()
    )
