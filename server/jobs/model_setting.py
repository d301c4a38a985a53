"""FAKESCOPE_MODEL on an `api` process: ignored, and the log says so.

An `api` process runs no model: it serves by the model of the newest live GPU worker (the
`workers` table says which). A FAKESCOPE_MODEL set on it anyway (a shared environment
file, a worker's settings copied) changes nothing, which is easy to miss. The process
says so once at startup, and once for each model the workers serve that is not the one
named there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("fakescope.server")


class IgnoredModelSetting:
    def __init__(self, configured: str | None) -> None:
        self.configured = configured
        self._told: set[str] = set()  # worker models already reported as different

    def at_startup(self) -> None:
        if self.configured:
            log.warning(
                "FAKESCOPE_MODEL=%s is ignored: an api process (FAKESCOPE_ROLE=api) runs no "
                "model and serves by the model of the newest live GPU worker; set "
                "FAKESCOPE_MODEL on the workers (FAKESCOPE_ROLE=worker)",
                self.configured,
            )

    def workers_serve(self, models: Iterable[dict[str, Any]]) -> None:
        """Note the models the live workers registered (`ModelInfo.to_dict()`)."""
        if not self.configured:
            return
        for described in models:
            served = str(described.get("id"))
            if served == self.configured or served in self._told:
                continue
            self._told.add(served)
            log.warning(
                "GPU workers serve the model %s, not FAKESCOPE_MODEL=%s set on this api "
                "process (which it ignores): analyses and answers come from %s",
                served,
                self.configured,
                served,
            )
