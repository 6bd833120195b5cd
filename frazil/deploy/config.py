"""The deploy settings a user may give (HTTP `config` part, CLI flags, frazil.toml)."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from frazil.errors import BadRequest

NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_ENV_BYTES = 4096
MAX_RESIDENT = 100
RESERVED_ENV_PREFIXES = ("FRAZIL_",)


def check_name(name: str) -> str:
    if not NAME_RE.match(name or ""):
        raise BadRequest(f"invalid function name {name!r}: use 1-63 characters a-z, 0-9 and '-', "
                         "starting with a letter")
    return name


class DeployConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    runtime: Optional[Literal["python3.11", "nodejs20"]] = None  # None: detected from the files
    handler: str = "index.main"
    memory: Literal[128, 256] = 128
    timeout: float = Field(10.0, gt=0, le=900)
    env: dict[str, str] = Field(default_factory=dict)
    resident: int = Field(0, ge=0, le=MAX_RESIDENT)
    public: bool = False

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
