#!/usr/bin/env bash
# Sets up FakeScope and serves it on its embedded defaults: SQLite under ./var, provenance-only
# unless FAKESCOPE_MODEL names a checkpoint. Listens on 127.0.0.1:8000 (FAKESCOPE_HOST/PORT override).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/setup.sh
. scripts/setup.sh
fakescope db upgrade
exec fakescope serve --host "${FAKESCOPE_HOST:-127.0.0.1}" --port "${FAKESCOPE_PORT:-8000}"
