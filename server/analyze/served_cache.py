"""Recently served analyses, kept in memory for a few seconds: cached reads skip the database.

Stored analyses never change except by this process (explanations) or by review decisions.
Decisions committed through this process's sessions drop their entry at once; decisions made
by another process show within `ttl_s` (FAKESCOPE_CACHE_TTL_S, 0 turns the cache off).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from server.db.analyses import Identity

_Key = tuple[str, str, str]


class ServedCache:
    def __init__(self, ttl_s: float, max_entries: int = 20_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[_Key, tuple[float, dict[str, Any]]] = OrderedDict()

    def get(self, sha256: str, identity: Identity) -> dict[str, Any] | None:
        key = (sha256, identity.model_key, identity.prompt_version)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, sha256: str, identity: Identity, served: dict[str, Any]) -> None:
        if self.ttl_s <= 0:
            return
        key = (sha256, identity.model_key, identity.prompt_version)
        self._entries[key] = (time.monotonic() + self.ttl_s, served)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, sha256: str) -> None:
        for key in [k for k in self._entries if k[0] == sha256]:
            del self._entries[key]
