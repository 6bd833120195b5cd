"""The deploy settings a user may give (HTTP `config` part, CLI flags, frazil.toml)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional, Union

from cronsim import CronSim, CronSimError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from frazil.data.changes import ChangeOp
from frazil.data.records import TABLE_NAME
from frazil.errors import BadRequest
from frazil.store.models import Access

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_BYTES = 4096
MAX_RESIDENT = 100
MAX_TIMEOUT_S = 900
RESERVED_ENV_PREFIXES = ("FRAZIL_",)


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid function name {name!r}: use 1-63 characters a-z, 0-9 and '-', "
                         "starting with a letter")
    return name


MAX_TRIGGERS = 16


class ScheduleTrigger(BaseModel):
    """`{"type": "schedule", "cron": "*/5 * * * *", "event": {...}}`: 5 cron fields, or 6 with
    seconds first, in UTC (frazil.scheduler.schedules fires it)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["schedule"]
    cron: str
    event: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: str) -> str:
        cron = " ".join(cron.split())
        if len(cron.split(" ")) not in (5, 6):
            raise ValueError(f"cron expression {cron!r} needs 5 fields, or 6 with seconds first")
        try:
            CronSim(cron, datetime.now(timezone.utc))
        except CronSimError as exc:
            raise ValueError(f"cron expression {cron!r} does not parse: {exc}") from None
        return cron


class TableTrigger(BaseModel):
    """`{"type": "table", "table": "orders", "on": ["insert", "update", "delete"]}`: each
    committed change of a record of `table` by one of `on` (default: all three) fires one async
    invocation (frazil.scheduler.table_events). The table need not exist yet."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["table"]
    table: str
    on: list[ChangeOp] = Field(default_factory=lambda: list(ChangeOp), min_length=1, max_length=len(ChangeOp))

    @field_validator("table")
    @classmethod
    def _table(cls, table: str) -> str:
        if not TABLE_NAME.match(table):
            raise ValueError(f"invalid table name {table!r}: use letters, digits and '_', starting "
                             "with a letter, at most 63 characters")
        return table

    @field_validator("on")
    @classmethod
    def _on(cls, ops: list[ChangeOp]) -> list[ChangeOp]:
        if len(set(ops)) != len(ops):
            raise ValueError("names an operation twice")
        return ops


Trigger = Annotated[Union[ScheduleTrigger, TableTrigger], Field(discriminator="type")]
_TRIGGER_TYPES = {"schedule", "table"}
_TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}


def problems(exc: ValidationError) -> str:
    """A config's validation errors, each led by the dotted path of its field as the user wrote
    it: `triggers.0.cron`, not pydantic's `triggers.0.schedule.cron` (the union's tag), and
    `triggers.0.type` for a missing or unknown type."""
    out = []
    for error in exc.errors():
        loc = list(error["loc"])
        if len(loc) >= 3 and loc[0] == "triggers" and loc[2] in _TRIGGER_TYPES:
            del loc[2]
        if error["type"] in _TAG_ERRORS:
            loc.append("type")
        out.append(f"{'.'.join(str(p) for p in loc) or 'config'}: {error['msg']}")
    return "; ".join(out)


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime: Optional[Literal["python3.11", "nodejs20"]] = None  # None: detected from the files
    handler: Optional[str] = None  # None: looked for at deploy (frazil.build.handlers), index.main first
    memory: Literal[128, 256] = 128
    timeout: float = Field(10.0, gt=0, le=MAX_TIMEOUT_S)
    env: dict[str, str] = Field(default_factory=dict,
                               json_schema_extra={"propertyNames": {"pattern": ENV_KEY_RE.pattern}})
    resident: int = Field(0, ge=0, le=MAX_RESIDENT)
    access: Optional[Access] = None  # None: "public" when `public`, else "admin"
    public: bool = False  # the older spelling of access = "public"
    http: bool = False  # also answer at /fn/{name} (frazil.api.endpoints)
    # What fires the function besides calls (SPEC "Who may invoke"): schedules and table changes.
    triggers: list[Trigger] = Field(default_factory=list, max_length=MAX_TRIGGERS)

    @model_validator(mode="after")
    def _access_agrees_with_public(self) -> "DeployConfig":
        if self.public and self.access not in (None, Access.PUBLIC):
            raise ValueError(f"public = true contradicts access = {self.access.value!r}: give one of them")
        return self

    @property
    def resolved_access(self) -> Access:
        if self.access is not None:
            return self.access
        return Access.PUBLIC if self.public else Access.ADMIN

    @field_validator("env")
    @classmethod
    def _env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not ENV_KEY_RE.match(key):
                raise ValueError(f"environment variable name {key!r} is not valid")
            if key.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(f"environment variable {key!r} uses a reserved prefix (FRAZIL_)")
        if sum(len(k) + len(v) for k, v in env.items()) > MAX_ENV_BYTES:
            raise ValueError(f"environment variables exceed {MAX_ENV_BYTES} bytes in all")
        return env
