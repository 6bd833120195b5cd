"""The SDK's refusals. Like every `FrazilError` they carry a type and a status; the host turns
them into `{"ok": false, "error": {...}}` replies, which the in-function SDK raises as
`SdkError` with the same type and message."""
from __future__ import annotations

from frazil.errors import FrazilError, PayloadTooLarge, TooManyRequests, Unauthorized


class CredentialRefused(Unauthorized):
    """The call's sdk_token is not the running invocation's (it ended, or it never was)."""

    type = "CredentialRefused"


class HttpDenied(FrazilError):
    """The destination is not allowed (scheme, or an address in a denied range)."""

    status = 403
    type = "HttpDenied"


class HttpFailed(FrazilError):
    """The destination could not be reached or broke the protocol."""

    status = 502
    type = "HttpError"


class EncodingRefused(HttpFailed):
    """The answer's content coding is one the proxy will not decode (two layers, or broken)."""

    type = "EncodingRefused"


class HttpTimeout(FrazilError):
    status = 504
    type = "HttpTimeout"


class ResponseTooLarge(PayloadTooLarge):
    type = "ResponseTooLarge"


class CallAborted(FrazilError):
    """The invocation that made the call ended before the call finished."""

    status = 409
    type = "CallAborted"


class TooManyCalls(TooManyRequests):
    """The invocation has as many calls of this kind running and waiting as it may have."""

    type = "TooManyCalls"
