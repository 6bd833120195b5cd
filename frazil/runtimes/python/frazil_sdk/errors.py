"""The one exception type of the SDK."""
from __future__ import annotations


class SdkError(Exception):
    """A call the platform refused or could not carry out.

    `type` names the reason (e.g. "NotFound", "BadRequest", "HttpDenied", "HttpTimeout",
    "CredentialRefused"); `status` is the matching HTTP status when there is one.
    """

    def __init__(self, message: str, type: str = "SdkError", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.type = type
        self.status = status

    def __repr__(self) -> str:
        return f"SdkError({self.message!r}, type={self.type!r})"
