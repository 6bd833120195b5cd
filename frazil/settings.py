"""Platform settings and every environment variable name frazil reads.

All env-var names live here (STYLE habit 4). `Settings.from_env()` is the only place
that reads them for the server; client-side names are used by `frazil.cli.client`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

# --- environment variable names -------------------------------------------------------
ENV_ADMIN_KEY = "FRAZIL_ADMIN_KEY"
ENV_URL = "FRAZIL_URL"
ENV_TOKEN = "FRAZIL_TOKEN"
ENV_HTTP_ALLOW = "FRAZIL_HTTP_ALLOW"
ENV_SANDBOX = "FRAZIL_SANDBOX"  # "isolated" (default) or "plain" (no isolation; development only)
ENV_SANDBOX_ZYGOTE = "FRAZIL_SANDBOX_ZYGOTE"  # "0": Python instances exec a fresh interpreter each
ENV_SANDBOX_PREBUILT = "FRAZIL_SANDBOX_PREBUILT"  # generic Python instances kept ready per tier
ENV_SANDBOX_PREBUILT_NODE = "FRAZIL_SANDBOX_PREBUILT_NODE"  # pre-started Node instances per tier
ENV_KEEP_ALIVE_S = "FRAZIL_KEEP_ALIVE_S"
ENV_MAX_IDLE_INSTANCES = "FRAZIL_MAX_IDLE_INSTANCES"
ENV_TIER_LIMIT_128 = "FRAZIL_TIER_LIMIT_128"
ENV_TIER_LIMIT_256 = "FRAZIL_TIER_LIMIT_256"
ENV_SYNC_RETRY_S = "FRAZIL_SYNC_RETRY_S"
ENV_ASYNC_RETRY_S = "FRAZIL_ASYNC_RETRY_S"
ENV_ASYNC_MAX_RETRIES = "FRAZIL_ASYNC_MAX_RETRIES"
ENV_ASYNC_RETRY_BACKOFF_S = "FRAZIL_ASYNC_RETRY_BACKOFF_S"
ENV_MAX_PAYLOAD_BYTES = "FRAZIL_MAX_PAYLOAD_BYTES"
ENV_LOG_CAP_BYTES = "FRAZIL_LOG_CAP_BYTES"
ENV_BUILD_TIMEOUT_S = "FRAZIL_BUILD_TIMEOUT_S"
ENV_MAX_BUNDLE_BYTES = "FRAZIL_MAX_BUNDLE_BYTES"
ENV_MAX_UNPACKED_BYTES = "FRAZIL_MAX_UNPACKED_BYTES"
ENV_MAX_BUNDLE_FILES = "FRAZIL_MAX_BUNDLE_FILES"
ENV_DATABASE_URL = "FRAZIL_DATABASE_URL"
ENV_REQUIRE_SERVICES = "FRAZIL_REQUIRE_SERVICES"  # tests only: fail instead of skip
ENV_TOKEN_TTL_S = "FRAZIL_TOKEN_TTL_S"  # BaaS end-user tokens
ENV_LOGIN_MAX_FAILURES = "FRAZIL_LOGIN_MAX_FAILURES"
ENV_LOGIN_WINDOW_S = "FRAZIL_LOGIN_WINDOW_S"
ENV_MAX_RECORD_BYTES = "FRAZIL_MAX_RECORD_BYTES"
ENV_HTTP_MAX_IN_FLIGHT = "FRAZIL_HTTP_MAX_IN_FLIGHT"  # SDK http: requests in flight per instance
ENV_HTTP_MAX_RESPONSE_BYTES = "FRAZIL_HTTP_MAX_RESPONSE_BYTES"

DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN_KEY_FILE = "admin.key"
DEFAULT_DATA_DIR = ".frazil"

MB = 1024 * 1024


@dataclass(frozen=True)
class Tier:
    """A memory tier: the cgroup limits one instance gets."""

    memory_mb: int
    cpu: float  # CPUs, e.g. 0.5 = 50 ms of every 100 ms
    concurrency: int  # running invocations allowed for the whole installation


def _default_tiers() -> dict[int, Tier]:
    return {128: Tier(128, 0.5, 100), 256: Tier(256, 0.75, 10)}


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    host: str = "127.0.0.1"
    port: int = 8080
    admin_key: str | None = None
    database_url: str | None = None  # default: sqlite under data_dir
    sandbox: str = "isolated"
    # Cold starts (isolated sandbox): Python instances fork from a zygote that has imported the
    # runtime loop; generic instances are built ahead of time per (runtime, tier), and a cold
    # start only gives one its code. Node instances are pre-started for a tier once it is used.
    sandbox_zygote: bool = True
    sandbox_prebuilt: int = 4
    sandbox_prebuilt_node: int = 1
    tiers: dict[int, Tier] = field(default_factory=_default_tiers)
    keep_alive_s: float = 600.0
    max_idle_instances: int = 2000
    sync_retry_s: float = 2.0
    async_retry_s: float = 300.0
    async_max_retries: int = 2
    async_retry_backoff_s: float = 1.0
    max_payload_bytes: int = 6 * MB
    max_bundle_bytes: int = 50 * MB
    max_unpacked_bytes: int = 256 * MB
    max_bundle_files: int = 10_000
    log_cap_bytes: int = 256 * 1024
    tmp_mb: int = 64
    pids_max: int = 64
    default_timeout_s: float = 10.0
    max_timeout_s: float = 900.0
    build_timeout_s: float = 300.0
    http_allow: tuple[str, ...] = ()
    # BaaS data store (frazil.data)
    token_ttl_s: float = 7 * 24 * 3600.0
    login_max_failures: int = 5  # failed logins per username and per client address ...
    login_window_s: float = 60.0  # ... within this window, then 429
    max_record_bytes: int = 1 * MB
    # The SDK's HTTP proxy (frazil.sdk.proxy)
    http_max_in_flight: int = 50  # per instance; more wait their turn
    http_max_response_bytes: int = 6 * MB  # decoded body; larger is an error
    http_max_request_bytes: int = 6 * MB
    http_max_redirects: int = 5

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "frazil.db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        env = os.environ
        base = cls()
        tiers = dict(base.tiers)
        for mb, name in ((128, ENV_TIER_LIMIT_128), (256, ENV_TIER_LIMIT_256)):
            if name in env:
                tiers[mb] = replace(tiers[mb], concurrency=int(env[name]))
        values = dict(
            admin_key=env.get(ENV_ADMIN_KEY) or None,
            database_url=env.get(ENV_DATABASE_URL) or None,
            sandbox=env.get(ENV_SANDBOX, base.sandbox),
            sandbox_zygote=env.get(ENV_SANDBOX_ZYGOTE, "1").strip().lower() not in ("0", "false", "no", "off"),
            sandbox_prebuilt=int(env.get(ENV_SANDBOX_PREBUILT, base.sandbox_prebuilt)),
            sandbox_prebuilt_node=int(env.get(ENV_SANDBOX_PREBUILT_NODE, base.sandbox_prebuilt_node)),
            tiers=tiers,
            keep_alive_s=float(env.get(ENV_KEEP_ALIVE_S, base.keep_alive_s)),
            max_idle_instances=int(env.get(ENV_MAX_IDLE_INSTANCES, base.max_idle_instances)),
            sync_retry_s=float(env.get(ENV_SYNC_RETRY_S, base.sync_retry_s)),
            async_retry_s=float(env.get(ENV_ASYNC_RETRY_S, base.async_retry_s)),
            async_max_retries=int(env.get(ENV_ASYNC_MAX_RETRIES, base.async_max_retries)),
            async_retry_backoff_s=float(env.get(ENV_ASYNC_RETRY_BACKOFF_S, base.async_retry_backoff_s)),
            max_payload_bytes=int(env.get(ENV_MAX_PAYLOAD_BYTES, base.max_payload_bytes)),
            log_cap_bytes=int(env.get(ENV_LOG_CAP_BYTES, base.log_cap_bytes)),
            build_timeout_s=float(env.get(ENV_BUILD_TIMEOUT_S, base.build_timeout_s)),
            max_bundle_bytes=int(env.get(ENV_MAX_BUNDLE_BYTES, base.max_bundle_bytes)),
            max_unpacked_bytes=int(env.get(ENV_MAX_UNPACKED_BYTES, base.max_unpacked_bytes)),
            max_bundle_files=int(env.get(ENV_MAX_BUNDLE_FILES, base.max_bundle_files)),
            http_allow=tuple(x.strip() for x in env.get(ENV_HTTP_ALLOW, "").split(",") if x.strip()),
            token_ttl_s=float(env.get(ENV_TOKEN_TTL_S, base.token_ttl_s)),
            login_max_failures=int(env.get(ENV_LOGIN_MAX_FAILURES, base.login_max_failures)),
            login_window_s=float(env.get(ENV_LOGIN_WINDOW_S, base.login_window_s)),
            max_record_bytes=int(env.get(ENV_MAX_RECORD_BYTES, base.max_record_bytes)),
            http_max_in_flight=int(env.get(ENV_HTTP_MAX_IN_FLIGHT, base.http_max_in_flight)),
            http_max_response_bytes=int(env.get(ENV_HTTP_MAX_RESPONSE_BYTES, base.http_max_response_bytes)),
        )
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "data_dir" in values:
            values["data_dir"] = Path(values["data_dir"])
        return cls(**values)
