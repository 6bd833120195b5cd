"""The one HTTP client the CLI commands use, and where it finds the server and the key.

The server is `FRAZIL_URL` (default http://127.0.0.1:8080). The key sent is, first found:

1. `FRAZIL_TOKEN`;
2. `$FRAZIL_DATA_DIR/admin.key`, when `FRAZIL_DATA_DIR` is set (`frazil server` takes the same
   variable as its `--data-dir`, so a shell that sets it reaches its own server's key);
3. `./.frazil/admin.key`: the key of a server started with the default data dir from here.

Everything that can go wrong between the command and the server becomes one `CliError` line
here: a URL without a scheme, a refused connection, something that answers but is not frazil
(every frazil answer is JSON with a "success" field), and a 401 that says which key was sent
and where the key file was looked for.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx

from frazil.cli.errors import CliError, UsageProblem
from frazil.settings import ADMIN_KEY_FILE, DEFAULT_DATA_DIR, DEFAULT_URL, ENV_DATA_DIR, ENV_TOKEN, ENV_URL

_URL_RE = re.compile(r"^https?://[^/\s]+", re.IGNORECASE)


@dataclass(frozen=True)
class Credentials:
    """The key the client sends, and where it came from (for the message of a 401)."""

    token: str | None
    source: str  # ENV_TOKEN, or the key file's path
    key_file: Path  # where the key file was looked for (absolute)


def key_file_path() -> Path:
    data_dir = os.environ.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR
    return (Path(data_dir) / ADMIN_KEY_FILE).absolute()


def find_credentials() -> Credentials:
    """The key to send, by the lookup order in the module docstring."""
    key_file = key_file_path()
    if os.environ.get(ENV_TOKEN):
        return Credentials(os.environ[ENV_TOKEN], ENV_TOKEN, key_file)
    try:
        token = key_file.read_text().strip() or None
    except FileNotFoundError:
        token = None
    except OSError as exc:
        raise CliError(f"cannot read the admin key {key_file}: {exc.strerror}; set {ENV_TOKEN} instead") from None
    return Credentials(token, str(key_file), key_file)


def default_token() -> str | None:
    return find_credentials().token


def server_url() -> str:
    """`FRAZIL_URL` (or the default), checked to be an http(s) URL."""
    url = os.environ.get(ENV_URL) or DEFAULT_URL
    if not _URL_RE.match(url):
        hint = f"; did you mean http://{url}?" if "://" not in url else ""
        raise UsageProblem(f"{ENV_URL}={url!r} is not an http:// or https:// URL{hint}")
    return url.rstrip("/")


class ApiError(CliError):
    """The server answered with a refusal; `status` and `body` (its JSON) are kept for callers
    that look further (a failed deploy names its version)."""

    def __init__(self, message: str, status: int, body: dict):
        super().__init__(message)
        self.status = status
        self.body = body


class Client:
    def __init__(self, timeout: float = 960.0):
        self.url = server_url()
        self.credentials = find_credentials()
        token = self.credentials.token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, *, ok=(200, 201, 202), **kwargs) -> tuple[int, dict]:
        """The status and JSON body of a frazil answer in `ok`; anything else raises CliError."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise CliError(f"cannot reach frazil at {self.url} ({_reason(exc)}): is `frazil server` running? "
                           f"(set {ENV_URL} to use another address)") from None
        except httpx.TimeoutException:
            raise CliError(f"frazil at {self.url} did not answer in time") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise CliError(f"{self.url} did not answer as an HTTP server ({_reason(exc)}); "
                           f"is {ENV_URL} the address of a frazil server?") from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to {self.url} failed: {_reason(exc)}") from None
        body = _frazil_body(response)
        if body is None:
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise CliError(f"{self.url} does not look like a frazil server: {method} {path} answered "
                           f"HTTP {response.status_code} with {kind}; check {ENV_URL}")
        if response.status_code == 401:
            raise ApiError(self._unauthorized(), 401, body)
        if response.status_code not in ok:
            raise ApiError(f"{_first_line(body.get('message')) or response.reason_phrase} "
                           f"(HTTP {response.status_code})", response.status_code, body)
        return response.status_code, body

    def get(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs)[1]

    def _unauthorized(self) -> str:
        creds = self.credentials
        if creds.token is None:
            return (f"no admin key (HTTP 401): set {ENV_TOKEN}, or {ENV_DATA_DIR} to the server's data dir "
                    f"(no key file at {creds.key_file})")
        if creds.source == ENV_TOKEN:
            return f"the server refused the key in {ENV_TOKEN} (HTTP 401): set it to the server's admin key"
        return (f"the server refused the key from {creds.source} (HTTP 401): that is another server's key; "
                f"set {ENV_TOKEN}, or {ENV_DATA_DIR} to this server's data dir")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _frazil_body(response: httpx.Response) -> dict | None:
    """The answer's JSON object if it is frazil's (it always carries "success"), else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and "success" in body else None


def _first_line(message) -> str:
    """A refusal's first line: one line on the terminal. A failed build's message goes on with
    the installer's output, which the build log printed above it already shows; --json keeps
    the whole body."""
    if not isinstance(message, str):
        return ""
    return message.strip().split("\n", 1)[0].rstrip(":")


def _reason(exc: Exception) -> str:
    """The last line of an httpx error's text (it may nest the socket's own), or its class."""
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
