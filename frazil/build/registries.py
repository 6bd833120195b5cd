"""The package registries a dependency build may reach, and the environment it runs with.

A build reaches the network only through the platform's registry proxy (registry_proxy.py),
which lets through the hosts named here and nothing else:
  - pypi.org, files.pythonhosted.org, registry.npmjs.org (DEFAULT_HOSTS);
  - the hosts of PIP_INDEX_URL, PIP_EXTRA_INDEX_URL and npm_config_registry when the
    platform's environment sets them;
  - the hosts in FRAZIL_BUILD_REGISTRIES (`Settings.build_registries`: host names or
    URLs, comma-separated).
Whatever the list says, the proxy never connects to a loopback, private, link-local,
shared, multicast or cloud-metadata address (registry_proxy.denied_range).

Credentials: the build never sees one. Index URLs reach the build with their user info
removed, npm auth settings (`_auth`, `_authToken`, ...) and every other unlisted variable
are dropped, and installers read no configuration file of the platform's (PIP_CONFIG_FILE
and npm's global/user config point at /dev/null). Registries that need credentials are not
supported yet: the proxy would have to add them, which it does not do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from frazil.sandbox.helper.build_jail import PROXY_PORT

DEFAULT_HOSTS = ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org")
DEFAULT_PORTS = frozenset({80, 443})
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
BUILD_PATH = "/usr/local/bin:/usr/bin:/bin"

# Taken from the platform's environment as they are: none can carry a secret.
PASSTHROUGH = frozenset({
    "LANG", "LC_ALL", "LC_CTYPE", "TZ",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "PIP_CERT", "PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "PIP_RETRIES", "PIP_PREFER_BINARY", "PIP_ONLY_BINARY",
    "PIP_NO_BINARY", "PIP_TRUSTED_HOST",
    "npm_config_strict_ssl", "npm_config_cafile", "npm_config_fetch_retries", "npm_config_fetch_timeout",
})
# Index URLs: taken with their user info removed (and their hosts allowed).
PIP_INDEX_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")
NPM_REGISTRY_VARS = ("npm_config_registry", "NPM_CONFIG_REGISTRY")


def strip_userinfo(url: str) -> str:
    """`url` without `user:password@`."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_host_port(url: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname.lower().rstrip("."), port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class Registries:
    """Where builds may fetch packages from, and the index settings they get."""

    hosts: frozenset[str]
    ports: frozenset[tuple[str, int]]  # explicit (host, port) pairs from configured URLs
    pip_index_url: str | None = None  # user info removed
    pip_extra_index_urls: tuple[str, ...] = ()
    npm_registry: str | None = None

    @classmethod
    def configured(cls, extra: tuple[str, ...] = (), environ=None) -> "Registries":
        env = os.environ if environ is None else environ
        hosts, ports = set(DEFAULT_HOSTS), set()
        index = env.get("PIP_INDEX_URL") or None
        extras = tuple((env.get("PIP_EXTRA_INDEX_URL") or "").split())
        npm = next((env[name] for name in NPM_REGISTRY_VARS if env.get(name)), None)
        for entry in (*extra, *([index] if index else []), *extras, *([npm] if npm else [])):
            entry = entry.strip()
            found = url_host_port(entry) if "://" in entry else (entry.lower().rstrip("."), None)
            if found is None or not found[0]:
                continue
            hosts.add(found[0])
            if found[1] is not None:
                ports.add(found)
        return cls(frozenset(hosts), frozenset(ports), strip_userinfo(index) if index else None,
                   tuple(strip_userinfo(u) for u in extras), strip_userinfo(npm) if npm else None)

    def allows(self, host: str, port: int) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts and (port in DEFAULT_PORTS or (host, port) in self.ports)

    def allows_url(self, url: str) -> bool:
        found = url_host_port(url)
        return found is not None and self.allows(*found)

    def describe(self) -> str:
        return ", ".join(sorted(self.hosts))


def build_env(registries: Registries, *, home: str, extra: dict[str, str] | None = None,
              environ=None) -> dict[str, str]:
    """The whole environment of a build (paths as seen inside the sandbox)."""
    env = os.environ if environ is None else environ
    out = {name: value for name, value in env.items() if name in PASSTHROUGH}
    out.update({
        "PATH": BUILD_PATH,
        "HOME": home,
        "TMPDIR": f"{home}/tmp",
        "USER": "frazil-build",
        "LOGNAME": "frazil-build",
        "LANG": out.get("LANG", "C.UTF-8"),
        "NO_COLOR": "1",
        # every client that honours the usual variables goes through the registry proxy
        "HTTP_PROXY": PROXY_URL, "HTTPS_PROXY": PROXY_URL, "http_proxy": PROXY_URL, "https_proxy": PROXY_URL,
        # pip: no configuration file of the platform's (/etc/pip.conf, the interpreter's)
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_PROXY": PROXY_URL,
        # npm: not the global npmrc (under /usr, visible); the user one is in the empty home
        "npm_config_globalconfig": os.devnull,
        "npm_config_userconfig": f"{home}/.npmrc",
        "npm_config_proxy": PROXY_URL,
        "npm_config_https_proxy": PROXY_URL,
        "npm_config_noproxy": "",
    })
    if registries.pip_index_url:
        out["PIP_INDEX_URL"] = registries.pip_index_url
    if registries.pip_extra_index_urls:
        out["PIP_EXTRA_INDEX_URL"] = " ".join(registries.pip_extra_index_urls)
    if registries.npm_registry:
        out["npm_config_registry"] = registries.npm_registry
    out.update(extra or {})
    return out

