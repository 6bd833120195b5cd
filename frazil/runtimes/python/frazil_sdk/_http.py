"""`http`: outbound HTTP through the platform's proxy.

The platform resolves the host, refuses private, loopback, link-local and metadata addresses
(unless its operator allowed them), follows redirects checking every hop, and caps the time
and the response size. At most 50 requests of one instance are in flight; more wait their
turn. A refusal or a failure raises SdkError (types "HttpDenied", "HttpTimeout",
"ResponseTooLarge", "HttpError"); an HTTP error status is not an exception (see `ok` and
`raise_for_status()`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Union
import base64
import json as _json
from urllib.parse import urlencode

from .errors import SdkError

DEFAULT_TIMEOUT_S = 10.0

Headers = Union[Mapping[str, Union[str, int, float]], Iterable[tuple[str, Union[str, int, float]]], None]


class Response:
    """`status`, `headers` (lower-case names), `url` (after redirects), `content` (bytes),
    `text`, `json()`."""

    def __init__(self, status: int, headers: dict[str, str], url: str | None, content: bytes) -> None:
        self.status = status
        self.status_code = status
        self.headers = headers
        self.url = url
        self.content = content

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Response:
        headers = {}
        for name, item in value.get("headers") or ():
            name = name.lower()
            headers[name] = f"{headers[name]}, {item}" if name in headers else item
        if "base64" in value:
            content = base64.b64decode(value["base64"])
        else:
            content = (value.get("text") or "").encode()
        return cls(value["status"], headers, value.get("url"), content)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def encoding(self) -> str:
        for part in self.headers.get("content-type", "").split(";")[1:]:
            key, _, val = part.strip().partition("=")
            if key.lower() == "charset" and val:
                return val.strip('"\' ')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.content)

    def raise_for_status(self) -> Response:
        if self.status >= 400:
            raise SdkError(f"{self.status} from {self.url}", "HttpStatus", self.status)
        return self

    def __repr__(self) -> str:
        return f"<Response [{self.status}] {self.url}>"


def _headers_list(headers):
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    out = []
    for name, value in items:
        if not isinstance(name, str) or not isinstance(value, (str, int, float)):
            raise TypeError(f"header {name!r}: names and values are strings")
        out.append([name, str(value)])
    return out


def _has_header(headers, name):
    return any(k.lower() == name for k, _ in headers)


def _body(data, json, headers):
    """(wire fields, headers) for the request body."""
    if json is not None and data is not None:
        raise TypeError("pass either data= or json=, not both")
    if json is not None:
        if not _has_header(headers, "content-type"):
            headers.append(["Content-Type", "application/json"])
        return {"body": _json.dumps(json, separators=(",", ":"), ensure_ascii=False)}
    if data is None:
        return {}
    if isinstance(data, dict):
        if not _has_header(headers, "content-type"):
            headers.append(["Content-Type", "application/x-www-form-urlencoded"])
        return {"body": urlencode(data, doseq=True)}
    if isinstance(data, str):
        return {"body": data}
    if isinstance(data, (bytes, bytearray, memoryview)):
        return {"body_b64": base64.b64encode(bytes(data)).decode()}
    raise TypeError(f"data must be str, bytes or a dict of form fields, not {type(data).__name__}")


class Http:
    def __init__(self, runner: Any) -> None:
        self._run = runner.run

    def request(self, method: str, url: str, *, headers: Headers = None,
                params: Mapping[str, Any] | None = None, data: str | bytes | Mapping[str, Any] | None = None,
                json: Any = None, timeout: float = DEFAULT_TIMEOUT_S, follow_redirects: bool = True) -> Response:
        """One request; answers a Response (also for 4xx/5xx statuses)."""
        if not isinstance(method, str) or not isinstance(url, str):
            raise TypeError("method and url are strings")
        if params:
            url += ("&" if "?" in url else "?") + urlencode(params, doseq=True)
        wire_headers = _headers_list(headers)
        fields = {"method": method.upper(), "url": url, "timeout": timeout,
                  "follow_redirects": bool(follow_redirects)}
        fields.update(_body(data, json, wire_headers))
        fields["headers"] = wire_headers
        return self._run("http.request", fields, Response.from_wire)

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Response:
        return self.request("DELETE", url, **kwargs)
