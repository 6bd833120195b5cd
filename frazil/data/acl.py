"""Who is calling, what a table allows, and the one function that decides (`authorize`).

Semantics (the same for every route and for the SDK):
- The admin principal (the admin key, and every cloud function through the SDK) bypasses ACLs.
- `public`: anyone, with or without a token. `authenticated`: any logged-in user.
  `owner`: logged-in users, and only the records they created: reads are filtered to them, an
  update or delete touches only them, an insert records the caller as `created_by`.
  `admin`: only the admin principal.
- Refusals: no token where one is needed → 401 (Unauthorized); a user whose token is valid but
  whom the mode does not admit → 403 (Forbidden). A bad or expired token is refused with 401
  before any ACL is looked at (see frazil.api.auth), even on a public table.
- A record outside an owner-scoped caller's reach does not exist for them: 404, never 403,
  so ids of other users' records cannot be probed.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from frazil.errors import BadRequest, Forbidden, Unauthorized


class PrincipalKind(str, enum.Enum):
    ADMIN = "admin"
    USER = "user"
    ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Principal:
    """The caller of a data operation; `user_id` is set exactly when kind is USER."""

    kind: PrincipalKind
    user_id: str | None = None

    def __post_init__(self):
        if (self.kind is PrincipalKind.USER) != (self.user_id is not None):
            raise ValueError("a user principal needs a user_id, and only a user principal has one")

    @classmethod
    def user(cls, user_id: str) -> "Principal":
        return cls(PrincipalKind.USER, user_id)

    @property
    def is_admin(self) -> bool:
        return self.kind is PrincipalKind.ADMIN


ADMIN = Principal(PrincipalKind.ADMIN)
ANONYMOUS = Principal(PrincipalKind.ANONYMOUS)


class AclMode(str, enum.Enum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    OWNER = "owner"
    ADMIN = "admin"

    @classmethod
    def parse(cls, value, what: str) -> "AclMode":
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise BadRequest(f"acl.{what} must be one of {choices}, not {value!r}") from None


class Action(str, enum.Enum):
    READ = "read"
    WRITE = "write"


@dataclass(frozen=True)
class Acl:
    read: AclMode = AclMode.ADMIN
    write: AclMode = AclMode.ADMIN

    @classmethod
    def parse(cls, body) -> "Acl":
        """From `{"read": "...", "write": "..."}`; a missing mode is `admin` (closed by default)."""
        if body is None:
            return cls()
        if isinstance(body, Acl):
            return body
        if not isinstance(body, dict):
            raise BadRequest('acl must be an object like {"read": "public", "write": "owner"}')
        unknown = set(body) - {"read", "write"}
        if unknown:
            raise BadRequest(f"acl has unknown keys: {', '.join(sorted(unknown))} (only read and write)")
        return cls(read=AclMode.parse(body.get("read", "admin"), "read"),
                   write=AclMode.parse(body.get("write", "admin"), "write"))

    def mode(self, action: Action) -> AclMode:
        return self.read if action is Action.READ else self.write

    def view(self) -> dict:
        return {"read": self.read.value, "write": self.write.value}


@dataclass(frozen=True)
class Scope:
    """What an admitted caller may touch: every record, or only those created by `owner`."""

    owner: str | None = None

    @property
    def everything(self) -> bool:
        return self.owner is None


EVERYTHING = Scope()


def authorize(mode: AclMode, principal: Principal, action: Action, table: str) -> Scope:
    """The ACL decision, for every caller and every operation: the scope, or a refusal."""
    if principal.is_admin or mode is AclMode.PUBLIC:
        return EVERYTHING
    what = f"{action.value} table {table!r}"
    if mode is AclMode.ADMIN:
        if principal.kind is PrincipalKind.ANONYMOUS:
            raise Unauthorized(f"only the admin key may {what}")
        raise Forbidden(f"only the admin key may {what}")
    if principal.kind is PrincipalKind.ANONYMOUS:
        raise Unauthorized(f"log in to {what}: send 'Authorization: Bearer <token>'")
    if mode is AclMode.OWNER:
        return Scope(owner=principal.user_id)
    return EVERYTHING  # AUTHENTICATED, and the principal is a user


def require_admin(principal: Principal, what: str) -> None:
    """Table management (create, change the ACL, drop, list) is for the admin principal only."""
    if principal.is_admin:
        return
    if principal.kind is PrincipalKind.ANONYMOUS:
        raise Unauthorized(f"only the admin key may {what}")
    raise Forbidden(f"only the admin key may {what}")
