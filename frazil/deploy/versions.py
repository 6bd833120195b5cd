"""Changing which version serves without uploading code: a rollback to an older ready version,
and a settings change that makes a new version from the active version's code.

Both end as a deploy does: the catalog forgets the old active version and `on_activated`
retires the instances of others (and starts residents). A deploy that finishes later still
wins over either, as the newest version number (frazil.store.functions.finish_version).
"""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError

from frazil.deploy.config import MAX_TRIGGERS, DeployConfig, Trigger, problems
from frazil.errors import BadRequest, Conflict, NotFound
from frazil.store.catalog import FunctionCatalog
from frazil.store.functions import FunctionStore
from frazil.store.models import Access, FunctionVersion, VersionStatus


class SettingsPatch(BaseModel):
    """The settings `PATCH /v1/functions/{name}` may change; absent ones stay. `env`, when
    given, replaces the whole environment, and `triggers` the whole list (`[]`: none). Code
    settings (runtime, handler) need a deploy."""

    model_config = ConfigDict(extra="forbid")

    memory: Optional[Literal[128, 256]] = None
    timeout: Optional[float] = None
    env: Optional[dict[str, str]] = None
    # Strict: 0 is not false and "2" is not 2 (a client sending them has a bug to hear about).
    resident: Optional[StrictInt] = Field(None)
    access: Optional[Access] = None
    http: Optional[StrictBool] = None
    triggers: Optional[list[Trigger]] = Field(None, max_length=MAX_TRIGGERS)


class Versions:
    def __init__(self, functions: FunctionStore, catalog: FunctionCatalog, on_activated=None):
        self.functions = functions
        self.catalog = catalog
        self.on_activated = on_activated  # async (FunctionVersion) -> None

    async def active(self, name: str) -> FunctionVersion:
        """The active version of `name`; NotFound saying whether the function exists at all."""
        version = await self.functions.active(name)
        if version is None:
            if await self.functions.exists(name):
                raise NotFound(f"function {name!r} has no successfully built version yet")
            raise NotFound(f"function {name!r} does not exist")
        return version

    async def rollback(self, name: str, number: int | None = None) -> FunctionVersion:
        """Make version `number` (default: the newest ready one before the active one) active."""
        active = await self.active(name)
        if number is None:
            number = await self.functions.previous_ready(name, active.number)
            if number is None:
                raise Conflict(f"function {name!r} has no ready version before version {active.number} "
                               "to roll back to")
        target = await self.functions.version(name, number)
        if target is None:
            raise NotFound(f"function {name!r} has no version {number}")
        if target.status is not VersionStatus.READY:
            raise Conflict(f"version {number} of {name!r} is {target.status.value}, not ready: it cannot serve")
        if not await self.functions.activate(name, number):
            raise NotFound(f"function {name!r} does not exist")  # deleted meanwhile
        return await self._activated(name, number)

    async def patch(self, name: str, body: dict) -> FunctionVersion:
        """A new version with the active version's code and these settings changed."""
        try:
            patch = SettingsPatch.model_validate(body)
        except ValidationError as exc:
            raise BadRequest(f"invalid settings: {problems(exc)}") from None
        changes = patch.model_dump(exclude_none=True)
        if not changes:
            raise BadRequest("give at least one setting to change: memory, timeout, env, resident, access, http, "
                             "triggers")
        base = await self.active(name)
        current = {"memory": base.memory_mb, "timeout": base.timeout_s, "env": base.env, "resident": base.resident,
                   "access": base.access, "http": base.http}
        try:  # the deploy's own rules (timeout range, env names, resident bound, triggers)
            config = DeployConfig.model_validate({**current, **changes})
        except ValidationError as exc:
            raise BadRequest(f"invalid settings: {problems(exc)}") from None
        # Unchanged triggers are kept as stored (not checked again against today's rules).
        triggers = ([t.model_dump(mode="json") for t in config.triggers] if patch.triggers is not None
                    else list(base.triggers))
        try:
            number = await self.functions.derive_version(
                base, memory_mb=config.memory, timeout_s=config.timeout, env=config.env, resident=config.resident,
                access=config.resolved_access, http=config.http, triggers=triggers)
        except LookupError:
            raise NotFound(f"function {name!r} does not exist") from None
        return await self._activated(name, number)

    async def _activated(self, name: str, number: int) -> FunctionVersion:
        self.catalog.invalidate(name)
        version = await self.functions.version(name, number)
        if self.on_activated is not None:
            await self.on_activated(version)
        return version
