"""Token roles and what each may do: admin > reviewer > client."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """The role an API token carries."""

    CLIENT = "client"
    REVIEWER = "reviewer"
    ADMIN = "admin"


_RANK: dict[Role, int] = {Role.CLIENT: 0, Role.REVIEWER: 1, Role.ADMIN: 2}


def role_allows(actual: Role | str, required: Role | str) -> bool:
    """True when a token of role ``actual`` may do what needs ``required``.

    Unknown role names allow nothing, so a corrupt row can never grant access.
    """
    try:
        return _RANK[Role(actual)] >= _RANK[Role(required)]
    except ValueError:
        return False
