"""Landlock IPC scoping: an instance cannot reach another's abstract Unix sockets or signal
processes outside its own Landlock domain.

Why, on top of the namespaces: each instance already has its own network namespace (so
abstract socket names are its own) and PID namespace (so it sees no other process); Landlock
ABI 6 scopes both kinds of IPC to the instance's own domain as well, a second wall should a
namespace ever be shared. Each instance restricts itself once, so each has its own domain.
When the kernel lacks ABI 6 the namespaces alone separate instances.

Standard library only (runs in the launcher).
"""
from __future__ import annotations

from frazil.sandbox.helper import syscalls as sc

SCOPE_ABI = 6
SCOPES = sc.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | sc.LANDLOCK_SCOPE_SIGNAL


def abi_version() -> int:
    return sc.landlock_abi_version()


def scope_ruleset() -> int | None:
    """A ruleset fd to apply in every instance, or None when the kernel cannot scope IPC."""
    if abi_version() < SCOPE_ABI:
        return None
    return sc.landlock_scope_ruleset(SCOPES)


def restrict_self(ruleset_fd: int) -> None:
    """Enter a new Landlock domain (needs no_new_privs, set here, once unprivileged)."""
    sc.prctl(sc.PR_SET_NO_NEW_PRIVS, 1)
    sc.landlock_restrict_self(ruleset_fd)
