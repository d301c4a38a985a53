"""Who is making an admin request."""

from __future__ import annotations

from dataclasses import dataclass

from server.admin.roles import Role

BOOTSTRAP_ADMIN_NAME = "bootstrap admin"


@dataclass(frozen=True)
class Principal:
    """An authenticated token holder; ``token_id`` is None for the bootstrap admin token."""

    token_id: int | None
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How the audit log names this principal."""
        if self.token_id is None:
            return f"{self.name} (FAKESCOPE_ADMIN_TOKEN)"
        return f"{self.name} (token #{self.token_id})"
