"""The one place that picks the sandbox implementation for a running platform."""
from __future__ import annotations

from frazil.sandbox.base import Sandbox, SandboxUnavailable
from frazil.settings import Settings

SANDBOXES = ("isolated", "plain")


def make_sandbox(settings: Settings) -> Sandbox:
    """The configured sandbox; raises SandboxUnavailable saying what the machine lacks."""
    if settings.sandbox == "plain":
        from frazil.sandbox.plain import PlainSandbox

        return PlainSandbox(settings)
    if settings.sandbox == "isolated":
        try:
            from frazil.sandbox.isolated import IsolatedSandbox
        except ImportError as exc:  # until the isolated sandbox lands
            raise SandboxUnavailable(f"the isolated sandbox is not available: {exc}") from exc
        return IsolatedSandbox.probe_and_create(settings)
    raise SandboxUnavailable(f"unknown sandbox {settings.sandbox!r}; choose one of {', '.join(SANDBOXES)}")
