"""Platform settings, and every environment variable name frazil reads (STYLE habit 4).

A server setting is one field of `Settings`: its type, default and description are on the field,
and `Settings.from_env()` reads it from `FRAZIL_<FIELD NAME IN CAPITALS>` (pydantic-settings finds
the variable and converts its text; an empty variable counts as unset). A field declared with
`fixed(...)` is not read from the environment: a `frazil server` flag or the code sets it.

Adding a setting is one line in `Settings`, e.g.

    metrics_token: str | None = Field(None, description="bearer token `GET /metrics` demands")

which `FRAZIL_METRICS_TOKEN` sets; then `python scripts/settings_table.py` renders the README's
configuration table again (tests/test_settings.py fails until it does).

Constructing `Settings(...)` directly never looks at the environment, so in-process tests and
tools get exactly the values they pass. Names read outside `Settings` (the CLI client, the test
harness) are constants at the end of this module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, IPvAnyNetwork, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict

ENV_PREFIX = "FRAZIL_"
DEFAULT_URL = "http://127.0.0.1:8080"
ADMIN_KEY_FILE = "admin.key"
DEFAULT_DATA_DIR = ".frazil"

MB = 1024 * 1024
KIB = 1024


@dataclass(frozen=True)
class Tier:
    """A memory tier: the cgroup limits one instance gets."""

    memory_mb: int
    cpu: float  # CPUs, e.g. 0.5 = 50 ms of every 100 ms
    concurrency: int  # running invocations allowed for the whole installation
    io_read_bps: int = 0  # disk bandwidth of one instance, bytes per second (0: unlimited)
    io_write_bps: int = 0


class BadSetting(ValueError):
    """Settings that do not validate. `problems` holds (name, value, reason) for each bad one,
    where name is the environment variable the value came from (or the field, for a value
    passed in code or by a flag); the message is one line naming them all."""

    def __init__(self, problems: list[tuple[str, Any, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{name}={value!r}: {reason}" for name, value, reason in problems))


class Role(str, Enum):
    """What a `frazil server` process does (`--role`; see SPEC "Deployment shapes")."""

    ALL = "all"  # everything in one process: the embedded default, or a self-contained cluster node
    GATEWAY = "gateway"  # HTTP API, console, data tables, deploys (cluster mode only)
    INVOKER = "invoker"  # sandboxes; serves only /healthz and /metrics (cluster mode only)


# A cluster's name goes into NATS subjects, stream and bucket names: one token of these.
CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")

_FIXED = "frazil_fixed"  # marks a field in its json_schema_extra: not read from the environment


def fixed(default: Any, description: str) -> Any:
    """A setting that no environment variable sets (a flag or the code does)."""
    return Field(default, description=description, json_schema_extra={_FIXED: True})


def _from_env(field: FieldInfo) -> bool:
    return not (isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get(_FIXED))


class _FrazilEnv(EnvSettingsSource):
    """pydantic-settings' environment source, told to skip the `fixed` fields (without this,
    `FRAZIL_PORT` or `FRAZIL_TMP_MB` would silently become settings nobody documented)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if not _from_env(field):
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """Everything the server is configured with. Frozen: one instance is shared by every part."""

    # env_ignore_empty: `FRAZIL_X=` means "use the default", as `or None` did for the admin key.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, frozen=True,
                                      extra="forbid")

    # --- set by `frazil server` flags
    data_dir: Path = fixed(Path(DEFAULT_DATA_DIR), "where frazil keeps its data (`--data-dir`)")
    host: str = fixed("127.0.0.1", "address the server listens on (`--host`)")
    port: int = fixed(8080, "port the server listens on (`--port`)")
    role: Role = fixed(Role.ALL, "what this process does (`--role`): all, gateway or invoker")

    # --- the server
    admin_key: str | None = Field(
        None, description="the admin key; unset: one is generated into `<data-dir>/admin.key` (mode 0600) "
                          "at first start")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of another database (e.g. `postgresql+asyncpg://…`); "
                          "unset: SQLite in the data dir")
    server_header_timeout_s: float = Field(
        10.0, gt=0, description="seconds a client has to send a request's headers (from connecting, or from "
                                "the first byte of a later request); then 408 and the connection is closed")
    # Longer than the idle expiry of the usual clients and load balancers in front (httpx 5 s, an
    # AWS load balancer 60 s): a client that would reuse a connection the server is closing at
    # that same moment sees "server disconnected without a response" (CI caught httpx at 5 s).
    server_keep_alive_s: float = Field(75.0, gt=0, description="seconds an idle keep-alive connection stays open "
                                                               "(keep it above the idle timeout of clients and "
                                                               "load balancers in front)")
    server_max_connections: int = Field(
        2000, ge=1, description="open client connections at once (at most half the open-files limit); a "
                                "further one gets 503 and is closed")

    # --- cluster mode (frazil.cluster): on when nats_url is set
    nats_url: str | None = Field(
        None, description="NATS server(s) of the cluster, e.g. `nats://127.0.0.1:4222` (comma-separated for "
                          "several); set: cluster mode, which needs `FRAZIL_DATABASE_URL` on PostgreSQL and "
                          "`FRAZIL_ADMIN_KEY`")
    cluster: str = Field("frazil", description="the cluster's name (letters, digits, `-`, `_`; at most 32): every "
                                               "NATS subject, stream and bucket of the cluster carries it")
    heartbeat_s: float = fixed(1.0, "seconds between two heartbeats of a cluster node")
    node_ttl_s: float = fixed(4.0, "a cluster node whose heartbeat is this old drops out of the registry")
    slot_block: int = Field(4, ge=1, description="tier slots a cluster node leases at least beyond what its "
                                                 "callers need now (as many as it ran at once lately when that "
                                                 "is more), so that its next invocations need no database query")
    slot_idle_s: float = Field(2.0, ge=0, description="seconds a cluster node keeps leased tier slots it does not "
                                                      "use before it gives them back to the cluster")
    slot_lease_s: float = fixed(10.0, "a cluster node's lease on tier slots lasts this long unless renewed "
                                      "(every tenth of it); it stops running on them a quarter of it earlier")

    # --- sandboxes. Cold starts (isolated sandbox): Python instances fork from a zygote that has
    # imported the runtime loop; generic instances are built ahead of time per (runtime, tier), and
    # a cold start only gives one its code. Node instances are pre-started for a tier once it is used.
    # Beyond those floors, as many are kept ready as there were recent cold starts (bursts).
    sandbox: str = Field("isolated", description="`isolated`, or `plain` (no isolation; development only)")
    sandbox_zygote: bool = Field(
        True, description="`0`: each Python instance execs a fresh interpreter instead of forking from "
                          "the zygote")
    sandbox_prebuilt: int = Field(4, ge=0, description="generic Python instances kept built ahead per tier")
    sandbox_prebuilt_node: int = Field(1, ge=0, description="Node instances kept started ahead per tier")
    sandbox_prebuilt_max: int = Field(
        32, ge=0, description="generic instances kept ready per runtime and tier at most, when recent cold starts "
                              "ask for more than `FRAZIL_SANDBOX_PREBUILT(_NODE)` (never more than the tier's limit)")
    sandbox_prebuilt_window_s: float = Field(
        60.0, gt=0, description="seconds of recent cold starts that make the demand for ready generic instances "
                                "(as many as there were cold starts in that time; fewer as they age out)")
    sandbox_prebuilt_memory_mb: int = Field(
        320, ge=0, description="memory all ready generic instances may hold, counted at 3 MB per Python and 8 MB "
                               "per Node instance (their own memory, measured); the default lets one tier's Node "
                               "instances reach `FRAZIL_SANDBOX_PREBUILT_MAX` next to the Python floors")
    sandbox_layer_prebuilt_mb: int = Field(
        256, ge=0, description="memory (MB, measured per layer) that ready Python instances holding a dependency "
                             "layer's packages already imported may take, least recently used layer dropped first; "
                             "a layer's first cold start builds one for the next (0: none)")
    sandbox_freeze_idle: bool = Field(True, description="`0`: idle instances keep running between invocations "
                                                        "instead of being frozen (cgroup freezer)")
    io_read_bps_128: int = Field(50 * MB, ge=0, description="disk reads per instance of a 128 MB function, bytes "
                                                             "per second, on the disks holding the host root, code "
                                                             "and layers (`0`: unlimited)")
    io_write_bps_128: int = Field(50 * MB, ge=0, description="disk writes per instance of a 128 MB function, "
                                                              "likewise")
    io_read_bps_256: int = Field(75 * MB, ge=0, description="disk reads per instance of a 256 MB function, likewise")
    io_write_bps_256: int = Field(75 * MB, ge=0, description="disk writes per instance of a 256 MB function, "
                                                              "likewise")
    tmp_mb: int = fixed(64, "size of each instance's private `/tmp`")
    pids_max: int = fixed(64, "processes (and threads) per instance")

    # --- scheduling
    tier_limit_128: int = Field(100, ge=0, description="running invocations of 128 MB functions, "
                                                       "for the whole installation")
    tier_limit_256: int = Field(10, ge=0, description="running invocations of 256 MB functions, "
                                                      "for the whole installation")
    keep_alive_s: float = Field(600.0, ge=0, description="seconds an idle instance stays warm")
    max_idle_instances: int = Field(2000, ge=0, description="idle instances kept; beyond it the least "
                                                            "recently used one is stopped")
    sync_retry_s: float = Field(2.0, ge=0, description="seconds a sync invocation waits for room in its "
                                                       "tier before the 429")
    async_retry_s: float = Field(300.0, ge=0, description="seconds an async invocation waits for room in "
                                                          "its tier before it is recorded `throttled`")
    async_max_retries: int = Field(2, ge=0, description="retries of an async invocation whose function "
                                                        "failed")
    async_retry_backoff_s: float = Field(1.0, ge=0, description="seconds before the first such retry; "
                                                                "doubled for each next one, at most 60")
    default_timeout_s: float = fixed(10.0, "a function's timeout unless its deploy sets one")
    max_timeout_s: float = fixed(900.0, "the largest timeout a deploy may set")

    # --- sizes and builds
    max_payload_bytes: int = Field(6 * MB, ge=0, description="largest event or result of a sync "
                                                              "invocation")
    max_async_event_bytes: int = Field(256 * KIB, ge=0, description="largest event of an async invocation "
                                                                    "(413 over it)")
    max_json_depth: int = Field(64, ge=1, description="deepest nesting of arrays and objects in an event, a "
                                                      "data record or a filter; deeper is refused with 400")
    max_json_width: int = Field(100_000, ge=1, description="most members of one array or object in an event "
                                                           "or a data record; more is refused with 400")
    log_cap_bytes: int = Field(256 * KIB, ge=0, description="captured stdout and stderr per invocation; "
                                                            "the rest is cut, and marked so")
    max_bundle_bytes: int = Field(50 * MB, ge=0, description="largest uploaded bundle")
    max_unpacked_bytes: int = Field(256 * MB, ge=0, description="largest bundle once unpacked")
    max_bundle_files: int = Field(10_000, ge=0, description="most files in a bundle")
    build_timeout_s: float = Field(300.0, ge=0, description="seconds a deploy's dependency build may take")
    build_memory_mb: int = Field(1024, ge=16, description="memory of a dependency build's sandbox, in MB")
    build_cpu: float = Field(1.0, gt=0, description="CPUs a dependency build's sandbox may use")
    build_pids_max: int = Field(256, ge=8, description="processes (and threads) in a dependency build's sandbox")
    build_registries: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated hosts or URLs that builds may reach through the platform's registry "
                        "proxy, besides PyPI, npm and the hosts of `PIP_INDEX_URL`, `PIP_EXTRA_INDEX_URL` and "
                        "`npm_config_registry`")

    # --- BaaS data store (frazil.data)
    token_ttl_s: float = Field(7 * 24 * 3600.0, ge=0, description="seconds an end user's token stays valid")
    login_max_failures: int = Field(5, ge=0, description="failed logins per (username, client address), "
                                                         "and per address, within the login window; then 429")
    login_window_s: float = Field(60.0, ge=0, description="the login window, in seconds")
    login_delay_s: float = Field(30.0, ge=0, description="a (username, address) past the limit waits this "
                                                         "long, doubled per further failure")
    login_max_delay_s: float = Field(900.0, ge=0, description="the most that wait grows to")
    register_limit: int = Field(20, ge=0, description="registrations per client address (a token bucket) "
                                                      "within the registration window")
    register_window_s: float = Field(600.0, gt=0, description="the registration window, in seconds")
    public_async_limit: int = Field(120, ge=0, description="async invocations without the admin key per "
                                                           "client address within the public async window")
    public_async_window_s: float = Field(60.0, gt=0, description="the public async window, in seconds")
    metrics_token: str | None = Field(None, description="a token that may read `/metrics` (the admin key "
                                                        "may too)")
    max_record_bytes: int = Field(1 * MB, ge=0, description="largest data-table record")

    # --- invocation history (frazil.store.retention)
    retention_s: float = Field(7 * 24 * 3600.0, ge=0, description="seconds a finished invocation's record "
                                                                  "(event, result, logs) is kept; `0`: no age limit")
    retention_max: int = Field(10_000, ge=0, description="finished invocation records kept per function, the "
                                                         "newest; `0`: no count limit")
    retention_interval_s: float = Field(60.0, gt=0, description="seconds between two pruning passes over the "
                                                                "invocation history")
    record_journal: bool = Field(True, description="journal each sync invocation's record in the data dir "
                                                   "before answering, so that a crash loses none "
                                                   "(frazil.store.record_journal); `0`: records not yet "
                                                   "stored are lost if the server dies")

    # --- the SDK's HTTP proxy (frazil.sdk.proxy)
    http_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated `host:port` or CIDR entries the SDK's HTTP proxy (and HTTP_PROXY) "
                        "lets through although loopback or private ranges are denied")
    http_max_in_flight: int = Field(50, ge=0, description="HTTP requests (SDK calls and HTTP_PROXY requests "
                                                          "and tunnels) in flight per invocation; more wait their turn")
    sdk_max_waiting: int = Field(64, ge=0, description="SDK calls of each kind (db, http) an invocation may "
                                                       "have waiting beyond those in flight; more are refused")
    http_max_response_bytes: int = Field(6 * MB, ge=0, description="largest decoded response body; "
                                                                    "larger is an error")
    http_max_request_bytes: int = fixed(6 * MB, "largest request body a function may send")
    http_max_redirects: int = fixed(5, "redirects the proxy follows per request")

    # --- browsers on other origins (frazil.api.cors)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated origins (or `*`) whose pages may call `/fn/*`, `/v1/auth/*` and "
                        "`/v1/tables/*`; empty: no CORS")

    # --- the console's numbers (frazil.console.stats)
    stats_interval_s: float = Field(10.0, gt=0, description="seconds between two samples of the last hour of "
                                                            "numbers the dashboard shows (`/v1/stats/history`)")

    # --- behind a reverse proxy (frazil.api.clientaddr)
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = Field(
        (), description="comma-separated addresses or CIDR ranges of reverse proxies: a request from one of "
                        "them is counted against the client address its `X-Forwarded-For` names (the "
                        "rightmost hop not in this list); empty: the peer address, the header ignored")

    @field_validator("http_allow", "build_registries", "cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _split_allow_list(cls, value: Any) -> Any:
        # The environment gives one comma-separated string (NoDecode keeps pydantic-settings from
        # reading it as JSON); code passes a tuple.
        if isinstance(value, str):
            return tuple(entry.strip() for entry in value.split(",") if entry.strip())
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster_token(cls, value: str) -> str:
        if not CLUSTER_NAME.fullmatch(value):
            raise ValueError("a cluster name is 1 to 32 letters, digits, '-' or '_' (it names NATS subjects "
                             "and buckets)")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Only what the caller passes: `from_env` is the one place that reads the environment.
        return (init_settings,)

    @classmethod
    def env_name(cls, field_name: str) -> str:
        """The variable that sets `field_name` (KeyError for a field no variable sets)."""
        if not _from_env(cls.model_fields[field_name]):
            raise KeyError(f"{field_name} is not read from the environment")
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def env_fields(cls) -> dict[str, FieldInfo]:
        """The fields read from the environment, by field name, in declaration order."""
        return {name: f for name, f in cls.model_fields.items() if _from_env(f)}

    @classmethod
    def from_env(cls, **overrides) -> "Settings":
        """Settings from the FRAZIL_* variables; `overrides` that are not None (the server's flags)
        win. Raises BadSetting naming each variable whose value does not validate."""
        given = {k: v for k, v in overrides.items() if v is not None}
        values = {**_FrazilEnv(cls)(), **given}
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                label = cls.env_name(name) if name in values and name not in given else name
                problems.append((label, error.get("input"), error["msg"]))
            raise BadSetting(problems) from None

    @property
    def tiers(self) -> dict[int, Tier]:
        """The memory tiers by MB. Memory and CPU are the product's (see SPEC); only the
        concurrency and the disk bandwidth are configurable."""
        return {128: Tier(128, 0.5, self.tier_limit_128, self.io_read_bps_128, self.io_write_bps_128),
                256: Tier(256, 0.75, self.tier_limit_256, self.io_read_bps_256, self.io_write_bps_256)}

    @property
    def clustered(self) -> bool:
        """Cluster mode: NATS is configured (frazil.cluster.config checks the rest)."""
        return self.nats_url is not None

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "frazil.db"

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path}"


def _shown(field_name: str, default: Any) -> str:
    """A default as an operator would write it in the variable."""
    if default is None or default == ():
        return "unset"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    if field_name.endswith("_bytes"):
        for unit, size in (("MiB", MB), ("KiB", KIB)):
            if default >= size and default % size == 0:
                return f"`{default}` ({default // size} {unit})"
    return f"`{default}`"


def env_table(settings_cls: type[Settings] = Settings) -> str:
    """The README's configuration table: one row per variable, rendered from the fields."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, f in settings_cls.env_fields().items():
        rows.append(f"| `{settings_cls.env_name(name)}` | {_shown(name, f.default)} | {f.description} |")
    return "\n".join(rows) + "\n"


# --- names read outside Settings --------------------------------------------------------
ENV_HTTP_ALLOW = Settings.env_name("http_allow")  # quoted in the proxy's refusals
ENV_URL = "FRAZIL_URL"  # client side (frazil.cli.client): the server to talk to
ENV_TOKEN = "FRAZIL_TOKEN"  # client side: the key or token to send
# `frazil server --data-dir`'s default, and where the client looks for admin.key: one variable, so
# a shell that sets it talks to its own server with that server's key.
ENV_DATA_DIR = "FRAZIL_DATA_DIR"
ENV_REQUIRE_SERVICES = "FRAZIL_REQUIRE_SERVICES"  # tests: "1" fails instead of skipping for a missing service
ENV_TEST_SANDBOX = "FRAZIL_TEST_SANDBOX"  # tests: the sandbox test servers use (default: isolated if it works)
ENV_TEST_POSTGRES_URL = "FRAZIL_TEST_POSTGRES_URL"  # tests: the PostgreSQL server the data tests use
ENV_TEST_NATS_URL = "FRAZIL_TEST_NATS_URL"  # tests: the NATS server (with JetStream) the cluster tests use
ENV_VM_SLOWDOWN = "FRAZIL_VM_SLOWDOWN"  # tests: how much slower the machine is (the VM runner sets it); stretches servers' start waits
