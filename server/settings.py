"""Server settings, read once from FAKESCOPE_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

MIB = 1024 * 1024
RATE_UNITS = ("second", "minute", "hour", "day")


# As fakescope.compiled_layers.COMPILE_MODES and fakescope.kernels.nf4_dispatch.POLICIES
# (not imported: those import torch).
COMPILE_MODES = ("auto", "on", "off")
NF4_KERNELS = ("auto", "triton", "bitsandbytes")
# all: one process serves HTTP and runs the model; api: HTTP only, work goes to the job
# queue in SQL; worker: runs the model for the queue's jobs (and answers health checks).
ROLES = ("all", "api", "worker")
IMAGE_STORES = ("files", "database")
LIMITS_STORES = ("memory", "database")


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


def _bool(value: str | None, default: bool = False) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(float(raw))
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _pixel_limit(env: Mapping[str, str]) -> int:
    from fakescope.images import MAX_PIXELS_CEILING

    value = _int(env, "FAKESCOPE_MAX_PIXELS", 64_000_000, 1)
    if value > MAX_PIXELS_CEILING:
        raise SettingsError(f"FAKESCOPE_MAX_PIXELS must be <= {MAX_PIXELS_CEILING}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def parse_retention(text: str | None) -> float | None:
    """Days to keep analysed image bytes: a positive number, `off` (forever); default 30."""
    if text is None or text.strip() == "":
        return 30.0
    if text.strip().lower() in {"off", "never", "none"}:
        return None
    try:
        days = float(text)
    except ValueError as exc:
        raise SettingsError(
            f"FAKESCOPE_IMAGE_RETENTION_DAYS must be a number of days or 'off', got {text!r}"
        ) from exc
    if not days > 0:
        raise SettingsError(f"FAKESCOPE_IMAGE_RETENTION_DAYS must be > 0 (or 'off'), got {text!r}")
    return days


def parse_rate_limit(text: str | None) -> tuple[str, int] | None:
    """`600/minute` → ("minute", 600); empty or `off` → None (no limit)."""
    if text is None or text.strip().lower() in {"", "off", "none", "0"}:
        return None
    count, _, unit = text.strip().partition("/")
    unit = unit.strip().lower().rstrip("s") or "minute"
    if unit not in RATE_UNITS or not count.strip().isdigit():
        raise SettingsError(f"FAKESCOPE_RATE_LIMIT must look like '600/minute', got {text!r}")
    return unit, int(count)


def default_database_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{data_dir.resolve() / 'fakescope.db'}"


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told. Build with `Settings.from_env()` or directly in tests."""

    data_dir: Path = Path("var")
    database_url: str = ""
    model: str | None = None
    quantization: str | None = None
    device: str | None = None
    compile: str | None = None
    nf4_kernel: str | None = None
    # A calibration file (`fakescope eval calibrate`) for the model's p_fake; None: raw p_fake.
    calibration: str | None = None
    max_upload_bytes: int = 25 * MIB
    max_pixels: int = 64_000_000
    queue_size: int = 64
    batch_size: int = 8
    batch_wait_ms: float = 5.0
    request_timeout_s: float = 120.0
    # uvicorn's limit_concurrency: open connections (idle ones too) beyond which every new
    # request is answered 503 by uvicorn itself, before the app (`fakescope serve` only).
    max_connections: int = 1000
    # A request line and headers longer than this get 431, and a request whose headers are not
    # complete this long after its connection opened (or the previous response ended) gets 408
    # (server/http_protocol.py: `fakescope serve` only).
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0
    # A response whose client takes none of it for this long (the socket's buffers full) has
    # its connection dropped (server/http_protocol.py: `fakescope serve` only).
    send_timeout_s: float = 60.0
    cors_origins: tuple[str, ...] = ()
    rate_limit: tuple[str, int] | None = ("minute", 600)
    admin_token: str | None = None
    allow_private_urls: bool = False
    fake_threshold: float = 0.6
    real_threshold: float = 0.4
    require_token: bool = False
    pdq_max_distance: int = 31
    url_fetch_timeout_s: float = 15.0
    max_new_tokens: int = 256
    cache_ttl_s: float = 2.0
    image_retention_days: float | None = 30.0  # None: stored image bytes are kept forever
    role: str = "all"
    job_lease_s: float = 30.0  # a worker silent this long loses its jobs to the others
    job_attempts: int = 3  # claims of one job before it fails (its workers kept dying)
    image_store: str | None = None  # files | database; None: files for role all, else database
    limits_store: str | None = None  # memory | database; None: memory for role all, else database
    admin_session_idle_hours: float = 12.0  # a review page session unused this long ends
    admin_session_max_days: float = 7.0  # and every session ends this long after sign-in
    # Each engine's connection pool (SQLAlchemy's QueuePool): connections kept open, more
    # opened under load, and how long a request waits for one before 503 `database-busy`.
    db_pool_size: int = 5
    db_pool_overflow: int = 10
    db_pool_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", self.role.strip().lower())
        if self.role not in ROLES:
            raise SettingsError(f"FAKESCOPE_ROLE must be all, api or worker, got {self.role!r}")
        if not self.header_timeout_s > 0:
            raise SettingsError(
                f"FAKESCOPE_HEADER_TIMEOUT_S must be > 0, got {self.header_timeout_s!r}"
            )
        if not self.send_timeout_s > 0:
            raise SettingsError(
                f"FAKESCOPE_SEND_TIMEOUT_S must be > 0, got {self.send_timeout_s!r}"
            )
        if not self.db_pool_timeout_s > 0:
            raise SettingsError(
                f"FAKESCOPE_DB_POOL_TIMEOUT_S must be > 0, got {self.db_pool_timeout_s!r}"
            )
        if not self.job_lease_s > 0:
            raise SettingsError(f"FAKESCOPE_JOB_LEASE_S must be > 0, got {self.job_lease_s!r}")
        for name in ("admin_session_idle_hours", "admin_session_max_days"):
            if not getattr(self, name) > 0:
                raise SettingsError(
                    f"FAKESCOPE_{name.upper()} must be > 0, got {getattr(self, name)!r}"
                )
        for name, allowed in (("image_store", IMAGE_STORES), ("limits_store", LIMITS_STORES)):
            value = getattr(self, name)
            if value is None:
                continue
            object.__setattr__(self, name, value.strip().lower())
            if getattr(self, name) not in allowed:
                raise SettingsError(
                    f"FAKESCOPE_{name.upper()} must be {' or '.join(allowed)}, got {value!r}"
                )
        if not self.database_url:
            object.__setattr__(self, "database_url", default_database_url(self.data_dir))
        if not 0.0 <= self.real_threshold <= self.fake_threshold <= 1.0:
            raise SettingsError("thresholds must satisfy 0 <= real <= fake <= 1")
        if self.compile is not None and self.compile.strip().lower() not in COMPILE_MODES:
            raise SettingsError(f"FAKESCOPE_COMPILE must be auto, on or off, got {self.compile!r}")
        if self.calibration is not None:
            self.load_calibration()  # a file that is no calibration is refused at startup
        if self.nf4_kernel is not None and self.nf4_kernel.strip().lower() not in NF4_KERNELS:
            raise SettingsError(
                "FAKESCOPE_NF4_KERNEL must be auto, triton or bitsandbytes, "
                f"got {self.nf4_kernel!r}"
            )

    def load_calibration(self) -> Any:
        """The `fakescope.calibration.Calibration` read from FAKESCOPE_CALIBRATION, or None;
        SettingsError in one line for a file that is not one."""
        if self.calibration is None:
            return None
        from fakescope.calibration import Calibration
        from fakescope.errors import CalibrationError

        try:
            return Calibration.load(self.calibration)
        except CalibrationError as exc:
            raise SettingsError(f"FAKESCOPE_CALIBRATION: {exc}") from exc

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def pool_options(self) -> dict[str, Any]:
        """create_engine's pool arguments (an in-memory SQLite database has no pool to size)."""
        if self.is_sqlite and _sqlite_in_memory(self.database_url):
            return {}
        return {
            "pool_size": self.db_pool_size,
            "max_overflow": self.db_pool_overflow,
            "pool_timeout": self.db_pool_timeout_s,
        }

    @property
    def provenance_only(self) -> bool:
        return not self.model

    @property
    def images_in_database(self) -> bool:
        """Image bytes go to the database: the default once processes are split by role."""
        return (self.image_store or ("files" if self.role == "all" else "database")) == "database"

    @property
    def limits_in_database(self) -> bool:
        """Rate limits and failed logins are counted in the database, across processes."""
        return (self.limits_store or ("memory" if self.role == "all" else "database")) == "database"

    @property
    def image_store_dir(self) -> Path:
        """Where analysed image bytes are kept so that /v1/ask can look at them again."""
        return self.data_dir / "images"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        data_dir = Path(env.get("FAKESCOPE_DATA_DIR") or "var")
        origins = tuple(
            o.strip() for o in (env.get("FAKESCOPE_CORS_ORIGINS") or "").split(",") if o.strip()
        )
        return cls(
            data_dir=data_dir,
            database_url=env.get("FAKESCOPE_DATABASE_URL") or default_database_url(data_dir),
            model=env.get("FAKESCOPE_MODEL") or None,
            quantization=env.get("FAKESCOPE_QUANTIZATION") or None,
            device=env.get("FAKESCOPE_DEVICE") or None,
            compile=env.get("FAKESCOPE_COMPILE") or None,
            nf4_kernel=env.get("FAKESCOPE_NF4_KERNEL") or None,
            calibration=env.get("FAKESCOPE_CALIBRATION") or None,
            max_upload_bytes=_int(env, "FAKESCOPE_MAX_UPLOAD_BYTES", 25 * MIB, 1),
            max_pixels=_pixel_limit(env),
            queue_size=_int(env, "FAKESCOPE_QUEUE_SIZE", 64, 1),
            batch_size=_int(env, "FAKESCOPE_BATCH_SIZE", 8, 1),
            batch_wait_ms=_float(env, "FAKESCOPE_BATCH_WAIT_MS", 5.0),
            request_timeout_s=_float(env, "FAKESCOPE_REQUEST_TIMEOUT_S", 120.0),
            max_connections=_int(env, "FAKESCOPE_MAX_CONNECTIONS", 1000, 1),
            max_header_bytes=_int(env, "FAKESCOPE_MAX_HEADER_BYTES", 64 * 1024, 1024),
            header_timeout_s=_float(env, "FAKESCOPE_HEADER_TIMEOUT_S", 10.0),
            send_timeout_s=_float(env, "FAKESCOPE_SEND_TIMEOUT_S", 60.0),
            cors_origins=origins,
            rate_limit=parse_rate_limit(env.get("FAKESCOPE_RATE_LIMIT", "600/minute")),
            admin_token=env.get("FAKESCOPE_ADMIN_TOKEN") or None,
            allow_private_urls=_bool(env.get("FAKESCOPE_ALLOW_PRIVATE_URLS")),
            fake_threshold=_float(env, "FAKESCOPE_FAKE_THRESHOLD", 0.6),
            real_threshold=_float(env, "FAKESCOPE_REAL_THRESHOLD", 0.4),
            require_token=_bool(env.get("FAKESCOPE_REQUIRE_TOKEN")),
            pdq_max_distance=_int(env, "FAKESCOPE_PDQ_MAX_DISTANCE", 31, 0),
            url_fetch_timeout_s=_float(env, "FAKESCOPE_URL_FETCH_TIMEOUT_S", 15.0),
            max_new_tokens=_int(env, "FAKESCOPE_MAX_NEW_TOKENS", 256, 1),
            cache_ttl_s=_float(env, "FAKESCOPE_CACHE_TTL_S", 2.0),
            image_retention_days=parse_retention(env.get("FAKESCOPE_IMAGE_RETENTION_DAYS")),
            role=env.get("FAKESCOPE_ROLE") or "all",
            job_lease_s=_float(env, "FAKESCOPE_JOB_LEASE_S", 30.0),
            job_attempts=_int(env, "FAKESCOPE_JOB_ATTEMPTS", 3, 1),
            image_store=env.get("FAKESCOPE_IMAGE_STORE") or None,
            limits_store=env.get("FAKESCOPE_LIMITS_STORE") or None,
            admin_session_idle_hours=_float(env, "FAKESCOPE_ADMIN_SESSION_IDLE_HOURS", 12.0),
            admin_session_max_days=_float(env, "FAKESCOPE_ADMIN_SESSION_MAX_DAYS", 7.0),
            db_pool_size=_int(env, "FAKESCOPE_DB_POOL_SIZE", 5, 1),
            db_pool_overflow=_int(env, "FAKESCOPE_DB_POOL_OVERFLOW", 10, 0),
            db_pool_timeout_s=_float(env, "FAKESCOPE_DB_POOL_TIMEOUT_S", 30.0),
        )


def _sqlite_in_memory(url: str) -> bool:
    """Whether SQLAlchemy opens this SQLite URL in memory, with one static connection and no
    pool to size: `sqlite://`, `:memory:`, or a `mode=memory` URI (as its dialect decides)."""
    parsed = make_url(url)
    return parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
