"""The one exception type of the SDK."""


class SdkError(Exception):
    """A call the platform refused or could not carry out.

    `type` names the reason (e.g. "NotFound", "BadRequest", "HttpDenied", "HttpTimeout",
    "CredentialRefused"); `status` is the matching HTTP status when there is one.
    """

    def __init__(self, message, type="SdkError", status=None):
        super().__init__(message)
        self.message = message
        self.type = type
        self.status = status

    def __repr__(self):
        return f"SdkError({self.message!r}, type={self.type!r})"
