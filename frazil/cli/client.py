"""The one HTTP client the CLI commands use."""
from __future__ import annotations

import os
from pathlib import Path

import httpx

from frazil.settings import ADMIN_KEY_FILE, DEFAULT_DATA_DIR, DEFAULT_URL, ENV_TOKEN, ENV_URL


class CliError(Exception):
    """Shown to the user as one line on stderr; the command exits with `exit_code`."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def default_token() -> str | None:
    if os.environ.get(ENV_TOKEN):
        return os.environ[ENV_TOKEN]
    key_file = Path(DEFAULT_DATA_DIR) / ADMIN_KEY_FILE
    return key_file.read_text().strip() if key_file.exists() else None


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 960.0):
        self.url = (url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")
        token = token or default_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, *, ok=(200, 201, 202), **kwargs) -> tuple[int, dict]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise CliError(f"cannot reach frazil at {self.url}: is `frazil server` running? "
                           f"(set {ENV_URL} to use another address)") from None
        except httpx.TimeoutException:
            raise CliError(f"frazil at {self.url} did not answer in time") from None
        try:
            body = response.json()
        except ValueError:
            body = {"success": False, "message": response.text[:500] or response.reason_phrase}
        if response.status_code not in ok:
            message = body.get("message") if isinstance(body, dict) else None
            raise CliError(f"{message or response.reason_phrase} (HTTP {response.status_code})")
        return response.status_code, body

    def get(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs)[1]

    def close(self) -> None:
        self._http.close()
